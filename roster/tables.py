"""The roster's tables in the records database: people, role grants, group members, rotations,
overrides, declared (non-incident) work and API tokens (only a token's SHA-256 hash, never its secret).

Created on first use by ``roster_engine`` (like ``records.tables.records_engine``); written only by
``roster/service.py`` and ``roster/tokens.py``, which audit every change in the hash-chained log.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from records import store
from settings import get_settings


class Person(SQLModel, table=True):
    """Someone who may act: ``handle`` is the identity every record names (``lena``)."""

    __tablename__ = "roster_people"
    handle: str = Field(primary_key=True)
    display_name: str
    email: str | None = None
    active: bool = True
    created_at: datetime


class RoleGrant(SQLModel, table=True):
    """``person`` holds ``role`` (as the playbooks name roles: ic, legal, lers ...)."""

    __tablename__ = "roster_role_grants"
    person: str = Field(primary_key=True)
    role: str = Field(primary_key=True, index=True)


class GroupMember(SQLModel, table=True):
    """``person`` belongs to ``group`` (e.g. ``child-safety``, who may see restricted playbooks)."""

    __tablename__ = "roster_group_members"
    group: str = Field(primary_key=True, index=True)
    person: str = Field(primary_key=True)


class Rotation(SQLModel, table=True):
    """Who holds ``role`` by schedule: ``people`` take turns of ``shift_seconds``, the first from
    ``start``; hand-overs keep the local wall-clock time of ``start`` in ``timezone``."""

    __tablename__ = "roster_rotations"
    role: str = Field(primary_key=True)
    name: str = Field(primary_key=True)
    people: str = Field(sa_column=Column(Text, nullable=False))  # comma-separated handles, in order
    shift_seconds: float
    start: datetime
    timezone: str = "UTC"
    created_at: datetime


class Override(SQLModel, table=True):
    """``person`` holds ``role`` from ``start`` to ``end`` (before any rotation)."""

    __tablename__ = "roster_overrides"
    id: int | None = Field(default=None, primary_key=True)
    role: str = Field(index=True)
    person: str
    start: datetime
    end: datetime
    reason: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime


class DeclaredWork(SQLModel, table=True):
    """``person`` is booked on work other than incidents from ``start`` to ``end``: ``project``,
    ``training`` or ``leave`` (leave takes them off call: ``insights/coverage.py``)."""

    __tablename__ = "roster_declared_work"
    id: int | None = Field(default=None, primary_key=True)
    person: str = Field(index=True)
    kind: str
    start: datetime
    end: datetime
    note: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime


class ApiToken(SQLModel, table=True):
    """A personal (or service-account) API token; ``secret_sha256`` is all that is kept of it."""

    __tablename__ = "roster_api_tokens"
    id: str = Field(primary_key=True)
    person: str = Field(index=True)
    name: str
    secret_sha256: str = Field(unique=True, index=True)
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    service: bool = False


class Password(SQLModel, table=True):
    """A person's console password (local accounts): only its scrypt hash and salt are kept."""

    __tablename__ = "roster_passwords"
    person: str = Field(primary_key=True)
    scrypt: str  # "n$r$p$salt_b64$hash_b64"
    set_at: datetime


TABLES = [
    SQLModel.metadata.tables[str(t.__tablename__)]
    for t in (Person, RoleGrant, GroupMember, Rotation, Override, DeclaredWork, ApiToken, Password)
]
_ready: dict[str, Engine] = {}


def roster_engine(url: str | None = None) -> Engine:
    """The shared engine for ``url`` (default: settings) with the roster's tables in place."""
    url = url or get_settings().effective_database_url
    eng = store.engine(url)
    if _ready.get(url) is not eng:
        SQLModel.metadata.create_all(eng, tables=TABLES)
        _ready[url] = eng
    return eng
