"""Personal and service-account API tokens: the secret is shown once and only its SHA-256 is kept.

``authenticate`` reads the database on every call (no cache), so a revocation, an expiry or a
deactivated person takes effect at once. Creating and revoking a token is audited (never the secret).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from records.tables import iso, utc
from roster import journal
from roster.service import RosterConflict, RosterError, check_text, groups_of, roles_of
from roster.tables import ApiToken, Person, roster_engine

PREFIX = "crt_"
CODES = ("missing", "unknown", "expired", "revoked", "inactive")


@dataclass(frozen=True)
class Principal:
    """Who a request comes from, as the token says at this moment."""

    person: str
    roles: frozenset[str]
    groups: frozenset[str]
    service: bool
    token_id: str


class AuthError(Exception):
    """A refused token: ``code`` is one of ``CODES``, ``message`` one clear line."""

    def __init__(self, code: str, message: str) -> None:
        assert code in CODES, code
        super().__init__(message)
        self.code = code
        self.message = message


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def create_token(
    person: str,
    *,
    name: str,
    expires_in: timedelta | None,
    service: bool = False,
    actor: str,
    url: str | None = None,
    now: datetime | None = None,
) -> str:
    """Create a token for ``person`` and return its secret (shown this once, stored as a hash).

    ``expires_in`` None: it never expires (for service accounts; personal tokens should expire).
    """
    check_text(name, "token name", 100)
    if expires_in is not None and expires_in <= timedelta(0):
        raise RosterError("a token's lifetime must be longer than zero")
    created = utc(now) if now is not None else _now()
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        id="tok_" + secrets.token_hex(6),
        person=person,
        name=name,
        secret_sha256=hash_secret(secret),
        created_at=created,
        expires_at=created + expires_in if expires_in is not None else None,
        service=service,
    )
    with Session(roster_engine(url), expire_on_commit=False) as s:
        owner = s.get(Person, person)
        if owner is None:
            raise RosterError(f"no such person {person!r} (add them with `incident people add`)")
        if not owner.active:
            raise RosterConflict(f"{person} is deactivated: no token can be created for them")
        s.add(token)
        s.commit()
    kind = "service token" if service else "token"
    until = f"expires {iso(token.expires_at)}" if token.expires_at else "never expires"
    journal.record(actor, f"{kind} {token.id} ({name}) created for {person}, {until}", url)
    return secret


def authenticate(
    secret: str | None, *, url: str | None = None, now: datetime | None = None
) -> Principal:
    """The person behind ``secret``, or ``AuthError``; records the token's last use."""
    if not secret or not secret.strip():
        raise AuthError(
            "missing", "no API token: sign in with `incident login` or set CR_API_TOKEN"
        )
    at = utc(now) if now is not None else _now()
    with Session(roster_engine(url), expire_on_commit=False) as s:
        token = s.exec(
            select(ApiToken).where(ApiToken.secret_sha256 == hash_secret(secret.strip()))
        ).first()
        if token is None:
            raise AuthError("unknown", "unknown API token: it was never issued here")
        if token.revoked_at is not None:
            raise AuthError(
                "revoked", f"API token {token.id} was revoked at {iso(token.revoked_at)}"
            )
        if token.expires_at is not None and utc(token.expires_at) <= at:
            raise AuthError("expired", f"API token {token.id} expired at {iso(token.expires_at)}")
        person = s.get(Person, token.person)
        if person is None or not person.active:
            raise AuthError("inactive", f"{token.person} is deactivated: their tokens do not work")
        token.last_used_at = at
        s.add(token)
        s.commit()
    return Principal(
        person=token.person,
        roles=frozenset(roles_of(token.person, url=url)),
        groups=frozenset(groups_of(token.person, url=url)),
        service=token.service,
        token_id=token.id,
    )


def revoke(
    token_id: str, actor: str, *, url: str | None = None, now: datetime | None = None
) -> bool:
    """Revoke a token at once; False if it was already revoked. Unknown ids are a RosterError."""
    with Session(roster_engine(url), expire_on_commit=False) as s:
        token = s.get(ApiToken, token_id)
        if token is None:
            raise RosterError(f"no such token {token_id!r} (see `incident token list`)")
        if token.revoked_at is not None:
            return False
        token.revoked_at = utc(now) if now is not None else _now()
        s.add(token)
        s.commit()
    journal.record(actor, f"token {token_id} ({token.name}) of {token.person} revoked", url)
    return True


def list_tokens(person: str | None = None, *, url: str | None = None) -> list[ApiToken]:
    """Tokens (of ``person``, or everyone's), newest first; never a secret, only metadata."""
    with Session(roster_engine(url)) as s:
        query = select(ApiToken).order_by(col(ApiToken.created_at).desc())
        if person is not None:
            query = query.where(ApiToken.person == person)
        return list(s.exec(query).all())


def describe(token: ApiToken) -> dict[str, object]:
    """A token's metadata (never its secret or hash), as `incident token list` and the API show."""
    return {
        "id": token.id,
        "person": token.person,
        "name": token.name,
        "service": token.service,
        "created_at": iso(token.created_at),
        "expires_at": iso(token.expires_at),
        "revoked_at": iso(token.revoked_at),
        "last_used_at": iso(token.last_used_at),
    }
