"""The ports `incident up` serves on, taken before anything else starts.

The dev server, its own services and the workers open many outgoing connections while they start;
each takes a port from the kernel's ephemeral range. A configured port in that range could be
taken that way in the seconds between a check and uvicorn's own bind, and a port another program
holds would only show up as uvicorn's traceback after the dev server had started. So the stack
binds its listening sockets first and hands them to the servers; a taken port stops it at once
with one line naming the setting.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from settings import Settings


class PortTaken(RuntimeError):
    """A configured port cannot be listened on; the message names the setting to change."""


@dataclass
class Listeners:
    """Bound (not yet listening) sockets for the intake, the API and, if used, the emulators."""

    intake: socket.socket
    api: socket.socket
    sandbox: socket.socket | None

    def close(self) -> None:
        for sock in (self.intake, self.api, self.sandbox):
            if sock is not None:
                sock.close()


def reserve(settings: Settings, *, sandbox: bool) -> Listeners:
    """Bind every port the stack serves on, or raise PortTaken (binding none)."""
    wanted = [
        ("CR_INTAKE", settings.intake_host, settings.intake_port),
        ("CR_API", settings.api_host, settings.api_port),
    ]
    if sandbox:
        wanted.append(("CR_SANDBOX", settings.sandbox_host, settings.sandbox_port))
    bound: list[socket.socket] = []
    try:
        for prefix, host, port in wanted:
            bound.append(_bind(prefix, host, port))
    except PortTaken:
        for sock in bound:
            sock.close()
        raise
    return Listeners(bound[0], bound[1], bound[2] if sandbox else None)


def _bind(prefix: str, host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` as uvicorn would bind it (address reuse on; Python's
    sockets are not inherited by child processes), ready for ``uvicorn.Server.serve(sockets=[...])``; ``prefix`` names the settings
    (``CR_API`` for ``CR_API_HOST`` and ``CR_API_PORT``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except socket.gaierror as err:  # an OSError too: first
        sock.close()
        raise PortTaken(
            f"{prefix}_HOST={host}: not an address this machine has ({err.strerror})"
        ) from None
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            why = "is already in use by another program"
        elif err.errno == errno.EACCES:
            why = "needs privileges this user does not have"
        else:
            why = f"cannot be listened on ({err.strerror})"
        raise PortTaken(
            f"{prefix}_PORT={port}: {host}:{port} {why}; set {prefix}_PORT to a free port"
        ) from None
    return sock
