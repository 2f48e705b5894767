"""Running the sandbox: a uvicorn server in a background thread (tests, the embedded stack) or in
the foreground (``python -m sandbox``).

The server also owns the "drop the connection" fault: only the server knows the client's
transport, so it hands the app a function that aborts the TCP connection of a given peer. It keeps
the emulators' state in ``CR_SANDBOX_STATE_FILE`` (see ``sandbox.persist``) and releases that file
when it stops; ``running_sandbox`` (tests) keeps it in memory unless given a file.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from sandbox.app import create_app
from settings import Settings, get_settings


class SandboxServer(uvicorn.Server):
    """uvicorn.Server that can abort one client's connection and run in a thread."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.app = create_app(settings, dropper=self.abort_client)
        config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            log_config=None,  # uvicorn's own handlers would bypass logs.configure's redaction
        )
        super().__init__(config)
        self._thread: threading.Thread | None = None

    def abort_client(self, peer: tuple[str, int]) -> bool:
        for conn in list(self.server_state.connections):
            if getattr(conn, "client", None) == peer:
                conn.transport.abort()  # type: ignore[union-attr]
                return True
        return False

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    def start_in_thread(
        self, timeout: float = 10.0, sockets: list[socket.socket] | None = None
    ) -> None:
        """Serve from a daemon thread, on ``sockets`` if given (bound by the caller) or on the
        configured host and port; return once it listens."""
        self._thread = threading.Thread(
            target=self.run, kwargs={"sockets": sockets}, name="sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox did not start on {self.url}")
            time.sleep(0.01)

    def stop(self) -> None:
        self.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.close()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Here, not after run(): on SIGTERM uvicorn re-raises the signal once serve() returns.
        await super().shutdown(sockets)
        self.close()

    def close(self) -> None:
        """Save the emulators' state a last time and release the state file."""
        self.app.state.sandbox.close()


_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, for a server started a little later (tests, the demo).

    It comes from below the kernel's ephemeral range when it can: a port ``bind(0)`` returns is
    an ephemeral one, which any outgoing connection on the machine (a dev server's own, a
    worker's) may take in the seconds before the server binds it. A port is handed out once
    per process, so servers started side by side never get the same one.
    """
    low = _ephemeral_low()
    for _ in range(100):
        port = random.randrange(10_000, low) if low > 11_000 else 0
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no free port found on {host}")


def _ephemeral_low(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> int:
    """The first port of the kernel's ephemeral range (Linux's default when it cannot tell)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


@contextlib.contextmanager
def running_sandbox(
    settings: Settings | None = None, port: int | None = None, state_file: Path | None = None
) -> Iterator[SandboxServer]:
    """Run the sandbox on loopback (a free port unless given) for the duration of the block.

    Its state lives in memory unless ``state_file`` is given, so tests never share (or pick up)
    the state of ``make run`` or of one another by accident.
    """
    settings = (settings or get_settings()).model_copy(
        update={"sandbox_state_file": str(state_file) if state_file else ":memory:"}
    )
    server = SandboxServer(
        settings, settings.sandbox_host, port or free_port(settings.sandbox_host)
    )
    try:
        server.start_in_thread()
        yield server
    finally:
        server.stop()
