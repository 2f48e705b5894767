"""Signing in: `incident login`, `incident whoami`, `incident logout`.

A person signs in with a token an admin created for them (`incident token create`), or mints a
fresh personal one with the token they already use (``--renew``: e.g. the local admin after the
first `make run`). The token is checked against the API before it is kept, in the config directory
with mode 0600 (the directory 0700), written whole or not at all.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from api.bodies import TokenBody
from client.http import Api, body, find_credentials, token_file
from settings import get_settings
from terminal import CliError, JsonOpt, emit, out

session_app = typer.Typer()


def _store(path: Path, secret: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".token-")  # created 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secret + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_secret() -> str:
    if sys.stdin.isatty():
        return str(typer.prompt("API token", hide_input=True)).strip()
    return sys.stdin.readline().strip()


@session_app.command("login")
def login(
    renew: Annotated[
        bool, typer.Option("--renew", help="Mint a new personal token with the current one.")
    ] = False,
    name: Annotated[str, typer.Option(help="With --renew: what it is for.")] = "cli",
    days: Annotated[int, typer.Option(help="With --renew: its lifetime in days.")] = 90,
    as_json: JsonOpt = False,
) -> None:
    """Sign in: keep a token (read from the prompt or stdin) where every command finds it."""
    settings = get_settings()
    if renew:
        minted = Api(settings).post("/me/tokens", body(TokenBody, {"expires_in_days": "--days"},
                                                       name=name, expires_in_days=days))  # fmt: skip
        secret = str(minted["secret"])
    else:
        secret = _read_secret()
        if not secret:
            raise CliError("no token given: paste the one your admin created for you")
    me = Api(settings, token=secret).get("/me")  # refused here if it does not work
    path = token_file(settings)
    _store(path, secret)
    roles = ", ".join(me["roles"]) or "none"
    emit(as_json, {k: v for k, v in me.items()} | {"token_file": str(path)},
         lambda: out.print(f"signed in as {me['person']} (roles: {roles}) at "
                           f"{settings.effective_api_url}; token kept in {path}", markup=False))  # fmt: skip


@session_app.command("whoami")
def whoami(as_json: JsonOpt = False) -> None:
    """Who your token signs you in as, with the roles and groups you hold now."""
    source = find_credentials().source
    me = Api().get("/me")
    roles, groups = ", ".join(me["roles"]) or "none", ", ".join(me["groups"]) or "none"
    emit(as_json, me | {"token_source": source},
         lambda: out.print(f"{me['person']} (roles: {roles}; groups: {groups}) by {source}",
                           markup=False))  # fmt: skip


@session_app.command("logout")
def logout(as_json: JsonOpt = False) -> None:
    """Sign out: revoke the token `incident login` kept (at the API) and forget it."""
    path = token_file(get_settings())
    if not path.exists():
        raise CliError(f"not signed in with `incident login` (no {path})")
    secret = path.read_text().strip()
    answer = Api(token=secret).request("DELETE", "/me/token")
    path.unlink()
    emit(as_json, answer, lambda: out.print(f"signed out: token {answer['revoked']} revoked"))
