"""One way to the API for every `incident` command: the base URL, the signed-in person's token, and
every failure as one line naming what is wrong.

The token is, in this order: ``CR_API_TOKEN``; the file `incident login` wrote in the config
directory (refused if others may read it); the local admin's token the first `make run` wrote in
the data directory, so the two-command start needs no sign-in. A request body is validated here
with the API's own models (``api/bodies.py``) before anything is sent: a malformed request is
refused even when the API is down, and named by the option the person typed.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.request import getproxies

# On import, httpx loads its own command-line tool (click, rich's progress bars, pygments) unless
# that import fails; no `incident` command runs it, and not loading it takes about 25 ms off
# every command's start (`make bench-cli`). httpx then keeps a stub ``httpx.main``.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402
from pydantic import BaseModel, ValidationError  # noqa: E402

from settings import Settings, get_settings  # noqa: E402
from terminal import CliError, printable  # noqa: E402

TOKEN_ENV = "CR_API_TOKEN"
B = TypeVar("B", bound=BaseModel)
# 401 codes after which signing in again is the fix.
SIGN_IN_AGAIN = ("missing", "unknown", "expired", "revoked", "inactive")


@dataclass(frozen=True)
class Credentials:
    token: str
    source: str  # where the token came from: CR_API_TOKEN or a file's path


def token_file(settings: Settings) -> Path:
    """Where `incident login` keeps the token."""
    return settings.effective_config_dir / "token"


def find_credentials(settings: Settings | None = None) -> Credentials:
    """The token to sign in with, or a CliError saying how to get one."""
    settings = settings or get_settings()
    from_env = os.environ.get(TOKEN_ENV, "").strip()
    if from_env:
        return Credentials(from_env, TOKEN_ENV)
    for path in (token_file(settings), settings.local_admin_token_file):
        text = _read_private(path)
        if text:
            return Credentials(text, str(path))
    raise CliError(f"not signed in: run `incident login` (or set {TOKEN_ENV})")


def _read_private(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror or err}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CliError(
            f"{path} may be read by others (mode {stat.S_IMODE(mode):04o}): "
            f"`chmod 600 {path}`, or sign in again"
        )
    return text or None


def body(model: type[B], options: dict[str, str] | None = None, **values: Any) -> B:
    """``values`` as the API's request model; a bad value is a CliError naming the option typed
    (``options`` maps a model field to it; default ``--field-name``)."""
    try:
        return model.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        loc = [str(p) for p in first["loc"]]
        names = {"fields": "--field", "data": "--data", **(options or {})}
        where = names.get(loc[0], "--" + loc[0].replace("_", "-")) if loc else "request"
        if len(loc) > 1:
            where += f" {loc[1]}"
        msg = str(first["msg"])
        raise CliError(f"{where}: {msg[:1].lower()}{msg[1:]}") from None


class Api:
    """The API at ``CR_API_URL`` (default: the embedded stack's), as the signed-in person."""

    def __init__(self, settings: Settings | None = None, token: str | None = None) -> None:
        self.settings = settings or get_settings()
        self.base_url = self.settings.effective_api_url
        self._token = token

    @property
    def tls(self) -> bool:
        """Whether this client loads the certificate store: for an https API, and whenever a
        proxy comes from the environment (it may be https). Not for an http API with no proxy (the
        embedded stack's), whose requests never meet TLS (relative paths, no redirect followed):
        loading the store there cost each command ~40 ms for nothing."""
        return self.base_url.startswith("https://") or bool(getproxies())

    def get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v not in (None, False)}
        return self.request("GET", path, params=query)

    def post(self, path: str, payload: BaseModel) -> Any:
        return self.request("POST", path, json=payload.model_dump(mode="json", exclude_none=True))

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        token = self._token or find_credentials(self.settings).token
        timeout = self.settings.cli_timeout_seconds
        try:
            with httpx.Client(base_url=self.base_url, timeout=timeout, verify=self.tls) as http:
                response = http.request(
                    method, path, headers={"authorization": f"Bearer {token}"}, **kwargs
                )
        except httpx.ConnectError:
            raise CliError(
                f"cannot reach the API at {self.base_url} (connection refused); "
                "is `make run` running?"
            ) from None
        except httpx.TimeoutException:
            raise CliError(
                f"no answer from the API at {self.base_url} within {timeout:.0f}s"
            ) from None
        except httpx.HTTPError as err:
            raise CliError(f"request to the API at {self.base_url} failed: {err}") from None
        if response.is_success:
            return response.json()
        raise CliError(problem(response))


def problem(response: httpx.Response) -> str:
    """The API's JSON error as one line: what was refused and why."""
    try:
        answer = response.json()
        code, message = str(answer["error"]), printable(str(answer["message"]))
    except (ValueError, KeyError, TypeError):
        return f"the API answered {response.status_code}: {printable(response.text[:200])}"
    status = response.status_code
    if status == 401:
        again = "; sign in again with `incident login`" if code in SIGN_IN_AGAIN else ""
        return f"not signed in ({code}): {message}{again}"
    if status == 404:
        return f"not found: {message}"
    if status == 422:
        return f"invalid request: {message}"
    if status >= 500:
        return f"the API failed ({code}): {message}"
    return message if "refused (" in message else f"refused ({code}): {message}"
