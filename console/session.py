"""Who is using the console: a signed session cookie naming a roster person, and a CSRF token
checked on every form.

The cookie (``cr_console``: HttpOnly, SameSite=Lax, Secure over https) carries the person's
handle, when they signed in and the session's CSRF token, signed with HMAC-SHA256 under a key
kept in the data directory (``console-session-key``, 0600). Nothing else is trusted from it: the
person's roles and groups are read from the roster on every request, so a revoked role or a
deactivated person takes effect at once, exactly as for API tokens. Before signing in, a
pre-session cookie carries the sign-in form's CSRF token (and the OpenID Connect state).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from datadir import create_private
from roster import service as roster
from settings import Settings

COOKIE = "cr_console"
PRE_COOKIE = "cr_console_pre"
PATH = "/console"


@dataclass(frozen=True)
class Viewer:
    """The signed-in person (an ``api.authz.Caller``): roles and groups as the roster has them."""

    person: str
    roles: frozenset[str]
    groups: frozenset[str]
    csrf: str
    display_name: str = ""


class SignInRequired(Exception):
    """Not signed in (or the session ended): the page answers with the sign-in form."""


class CsrfRefused(Exception):
    """403: a form without the session's CSRF token."""


def session_key(settings: Settings) -> bytes:
    """The install's cookie-signing key: made once (32 random bytes, 0600), then read."""
    path: Path = settings.data_dir / "console-session-key"
    create_private(path, secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def _sign(key: bytes, value: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(value, sort_keys=True).encode()).decode()
    mac = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def _unsign(key: bytes, cookie: str | None) -> dict[str, Any] | None:
    if not cookie or "." not in cookie:
        return None
    body, _, mac = cookie.rpartition(".")
    good = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(good, mac):
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(body.encode()))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _key(request: Request) -> bytes:
    return request.app.state.console_key  # type: ignore[no-any-return]


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: dict[str, Any],
               max_age: int) -> None:  # fmt: skip
    response.set_cookie(
        name, _sign(_key(request), value), max_age=max_age, path=PATH, httponly=True,
        samesite="lax", secure=_secure(request),
    )  # fmt: skip


def start(request: Request, response: Response, person: str) -> None:
    """Sign ``person`` in on ``response`` (a fresh CSRF token; the pre-session cookie dropped)."""
    hours = request.app.state.settings.console_session_hours
    value = {"p": person, "t": int(time.time()), "c": secrets.token_urlsafe(24)}
    set_cookie(request, response, COOKIE, value, int(hours * 3600))
    response.delete_cookie(PRE_COOKIE, path=PATH)


def end(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH)


def pre_session(request: Request) -> dict[str, Any]:
    """The pre-session's values (its ``c``: the sign-in form's CSRF token), or a new one."""
    return _unsign(_key(request), request.cookies.get(PRE_COOKIE)) or {
        "c": secrets.token_urlsafe(24)
    }


def keep_pre_session(request: Request, response: Response, value: dict[str, Any]) -> None:
    set_cookie(request, response, PRE_COOKIE, value, 1800)


def _person_of(settings: Settings, handle: str) -> tuple[frozenset[str], frozenset[str], str]:
    url = settings.effective_database_url
    person = roster.get_person(handle, url=url)
    if person is None or not person.active:
        raise SignInRequired(f"{handle} is not an active person on the roster")
    roles = frozenset(roster.roles_of(handle, url=url))
    return roles, frozenset(roster.groups_of(handle, url=url)), person.display_name


def viewer(request: Request) -> Viewer:
    """The signed-in person, checked against the roster now (``SignInRequired`` otherwise)."""
    value = _unsign(_key(request), request.cookies.get(COOKIE))
    settings: Settings = request.app.state.settings
    if value is None or not isinstance(value.get("p"), str):
        raise SignInRequired("not signed in")
    if time.time() - float(value.get("t", 0)) > settings.console_session_hours * 3600:
        raise SignInRequired("the session ended; sign in again")
    roles, groups, name = _person_of(settings, value["p"])
    who = Viewer(value["p"], roles, groups, str(value.get("c", "")), name)
    request.state.caller = who  # the API's access log names them on a refusal
    return who


def check_csrf(expected: str, form: Any) -> None:
    """Every form carries the token of the session it was rendered in."""
    given = form.get("csrf") if form is not None else None
    if not expected or not isinstance(given, str) or not hmac.compare_digest(given, expected):
        raise CsrfRefused(
            "csrf: this form's security token is missing or out of date; reload the page and "
            "submit it again"
        )
