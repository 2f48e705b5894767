"""Local accounts for the console: a roster person with a password (development, tests, a team
without an identity provider; production signs in through OpenID Connect).

Only an scrypt hash is kept (``hashlib.scrypt``, N=2**14, r=8, p=1, a 16-byte salt per password),
in ``roster_passwords``; setting one is journalled in the audit log's ``_roster`` stream (who set
whose password, never the password). A deactivated person's password signs nobody in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from sqlmodel import Session

from roster import journal
from roster.service import RosterError
from roster.tables import Password, Person, roster_engine

N, R, P = 2**14, 8, 1
MIN_LENGTH = 12


def _hash(password: str, salt: bytes, n: int = N, r: int = R, p: int = P) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024)


def hash_password(password: str) -> str:
    """The stored form: ``n$r$p$salt$hash`` (base64)."""
    salt = secrets.token_bytes(16)
    digest = _hash(password, salt)
    b64 = base64.b64encode
    return f"{N}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def matches(stored: str, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (constant-time compare)."""
    try:
        n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        got = _hash(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, got)


def set_password(handle: str, password: str, *, actor: str, url: str | None = None) -> None:
    """Give ``handle`` a console password (replacing any); at least ``MIN_LENGTH`` characters."""
    if len(password) < MIN_LENGTH:
        raise RosterError(f"password: at least {MIN_LENGTH} characters, got {len(password)}")
    with Session(roster_engine(url)) as s:
        person = s.get(Person, handle)
        if person is None:
            raise RosterError(f"no person {handle!r} on the roster (incident people add)")
        row = s.get(Password, handle)
        stored, now = hash_password(password), datetime.now(UTC)
        if row is None:
            row = Password(person=handle, scrypt=stored, set_at=now)
        else:
            row.scrypt, row.set_at = stored, now
        s.add(row)
        s.commit()
    journal.record(actor, f"console password set for {handle}", url)


def has_password(handle: str, *, url: str | None = None) -> bool:
    with Session(roster_engine(url)) as s:
        return s.get(Password, handle) is not None


def check_password(handle: str, password: str, *, url: str | None = None) -> bool:
    """True when ``handle`` is an active person and ``password`` is theirs."""
    with Session(roster_engine(url)) as s:
        person = s.get(Person, handle)
        row = s.get(Password, handle)
    if person is None or row is None:
        _hash(password, b"0" * 16)  # the same work either way: no timing tells who exists
        return False
    return matches(row.scrypt, password) and person.active
