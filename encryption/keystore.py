"""Data keys: one AES-256 key per workflow, wrapped by a master key, in a table of their own.

An incident's payloads (its input, Updates, queries, activity arguments and results, failures)
are sealed under the data key of its workflow id (``workflows.names.workflow_id_for``); its
archive child has a key of its own. Keys are made on first use and kept wrapped by the newest
master key in ``payload_data_keys`` (``CR_KEYSTORE_URL``, else the records database), so every
worker and client that reaches the database can open them.

Crypto-shredding: ``destroy(scope)`` keeps a tombstone in place of the key. Every payload sealed
under it is unreadable from then on, and the scope never gets a new key. Processes keep unwrapped
keys in memory for at most ``cache_seconds`` (default 5 minutes): that long after a destroy, no
process can read the payloads any more. Backups of the keystore hold the keys too: keep them
shorter-lived than the promise made to the people in the data, or leave them out.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Column, Text, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, create_engine, select

from encryption.master import KEY_BYTES, MasterKeyError, MasterKeys, SealError, seal, unseal


class DataKeyError(Exception):
    """A data key that cannot be had: missing, destroyed, or not opening under its master key."""


class DataKeyDestroyed(DataKeyError):
    """The scope's key was destroyed (crypto-shredded): its payloads are gone for good."""


class _KeystoreModel(SQLModel, registry=registry()):
    """The keystore's own metadata: its table is created only where the keystore lives."""


class DataKeyRow(_KeystoreModel, table=True):
    __tablename__ = "payload_data_keys"
    scope: str = Field(primary_key=True)  # a workflow id
    key_id: str
    # base64 of the sealed key ("" once destroyed), under master key ``master_key_id``
    wrapped: str = Field(sa_column=Column(Text, nullable=False))
    master_key_id: str
    created_at: datetime
    destroyed_at: datetime | None = None


@dataclass(frozen=True)
class DataKey:
    scope: str
    key_id: str
    secret: bytes = field(repr=False)


def _aad(scope: str, key_id: str) -> bytes:
    """What a wrapped key is bound to: a row's key cannot be moved to another scope."""
    return f"critical-response data key\n{scope}\n{key_id}".encode()


@dataclass
class KeyStore:
    """Data keys in the database at ``url``, wrapped by ``master``; unwrapped ones cached."""

    master: MasterKeys
    url: str
    cache_size: int = 4096
    cache_seconds: float = 300.0
    _engine: Engine | None = field(default=None, repr=False)
    _cache: OrderedDict[str, tuple[DataKey, float]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- reading and making keys -------------------------------------------------------------

    def cached(self, scope: str) -> DataKey | None:
        """The scope's key if this process holds it unwrapped (no database, no waiting)."""
        with self._lock:
            found = self._cache.get(scope)
            if found is None:
                return None
            if found[1] < time.monotonic():
                del self._cache[scope]
                return None
            self._cache.move_to_end(scope)
            return found[0]

    def data_key(self, scope: str) -> DataKey:
        """The key that seals ``scope``'s payloads: made and stored on first use."""
        key = self.cached(scope)
        if key is not None:
            return key
        with Session(self.engine(), expire_on_commit=False) as s:
            row = s.get(DataKeyRow, scope)
            if row is None:
                row = self._new_row(scope)
                s.add(row)
                try:
                    s.commit()
                except IntegrityError:  # another process made it first: theirs wins
                    s.rollback()
                    row = s.get(DataKeyRow, scope)
                    assert row is not None
        return self._remember(self._unwrap(row))

    def key_for(self, scope: str, key_id: str) -> DataKey:
        """The key a payload names (never made here: a missing key is an error)."""
        key = self.cached(scope)
        if key is not None and key.key_id == key_id:
            return key
        with Session(self.engine()) as s:
            row = s.get(DataKeyRow, scope)
        if row is None:
            raise DataKeyError(
                f"no data key for {scope} in the keystore ({_where(self.url)}): "
                "is this process using the same keystore as the one that sealed it?"
            )
        if row.key_id != key_id and row.destroyed_at is None:
            raise DataKeyError(f"data key {key_id} of {scope} is not in the keystore")
        return self._remember(self._unwrap(row))

    # --- crypto-shredding, listing, rotation ---------------------------------------------------

    def destroy(self, scope: str) -> bool:
        """Shred ``scope``: its key is replaced by a tombstone (and never made again). True if a
        live key was destroyed, False if there was none (a tombstone is left either way)."""
        now = datetime.now(UTC)
        with Session(self.engine()) as s:
            row = s.get(DataKeyRow, scope)
            live = row is not None and row.destroyed_at is None
            if row is None:
                row = DataKeyRow(scope=scope, key_id="", wrapped="", master_key_id="",
                                 created_at=now)  # fmt: skip
            if row.destroyed_at is None:
                row.wrapped, row.destroyed_at = "", now
                s.add(row)
                s.commit()
        with self._lock:
            self._cache.pop(scope, None)
        return live

    def destroyed_at(self, scope: str) -> datetime | None:
        """When ``scope``'s key was destroyed (None: it is live, or was never made)."""
        with Session(self.engine()) as s:
            row = s.get(DataKeyRow, scope)
        return None if row is None else _utc(row.destroyed_at)

    def scopes(self, prefix: str = "", *, destroyed: bool = False) -> list[str]:
        """Scopes with a live key (or, ``destroyed``, with a tombstone) starting with ``prefix``."""
        query = select(DataKeyRow.scope).where(DataKeyRow.scope.startswith(prefix))  # type: ignore[attr-defined]
        if destroyed:
            query = query.where(DataKeyRow.destroyed_at.is_not(None))  # type: ignore[union-attr]
        else:
            query = query.where(DataKeyRow.destroyed_at.is_(None))  # type: ignore[union-attr]
        with Session(self.engine()) as s:
            return sorted(s.exec(query).all())

    def rewrap(self) -> int:
        """Wrap every live key under the newest master key (after a rotation, before an old
        master key is given up); returns how many were rewrapped."""
        newest = self.master.current
        count = 0
        with Session(self.engine()) as s:
            rows = s.exec(select(DataKeyRow).where(DataKeyRow.destroyed_at.is_(None))).all()  # type: ignore[union-attr]
            for row in rows:
                if row.master_key_id == newest.key_id:
                    continue
                key = self._unwrap(row)
                row.wrapped = _b64(seal(newest.secret, key.secret, _aad(row.scope, row.key_id)))
                row.master_key_id = newest.key_id
                s.add(row)
                count += 1
            s.commit()
        return count

    # --- internals ---------------------------------------------------------------------------

    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = _create_engine(self.url)
            return self._engine

    def _new_row(self, scope: str) -> DataKeyRow:
        master = self.master.current
        key_id = f"dk-{secrets.token_hex(6)}"
        wrapped = seal(master.secret, os.urandom(KEY_BYTES), _aad(scope, key_id))
        return DataKeyRow(scope=scope, key_id=key_id, wrapped=_b64(wrapped),
                          master_key_id=master.key_id, created_at=datetime.now(UTC))  # fmt: skip

    def _unwrap(self, row: DataKeyRow) -> DataKey:
        if row.destroyed_at is not None:
            raise DataKeyDestroyed(
                f"the data key of {row.scope} was destroyed {row.destroyed_at:%Y-%m-%d %H:%M} UTC "
                "(crypto-shredded): its payloads can no longer be read"
            )
        try:
            master = self.master.get(row.master_key_id)
            secret = unseal(
                master.secret, base64.b64decode(row.wrapped), _aad(row.scope, row.key_id)
            )
        except (MasterKeyError, SealError) as err:
            raise DataKeyError(
                f"data key {row.key_id} of {row.scope} does not open under master key "
                f"{row.master_key_id}: {err}"
            ) from None
        return DataKey(row.scope, row.key_id, secret)

    def _remember(self, key: DataKey) -> DataKey:
        with self._lock:
            self._cache[key.scope] = (key, time.monotonic() + self.cache_seconds)
            self._cache.move_to_end(key.scope)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return key


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands times back naive: they were written in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _where(url: str) -> str:
    return url.split("@")[-1]  # never a password in an error


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        eng = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(eng, "connect", _sqlite_pragmas)
    else:
        eng = create_engine(_driver_url(url), pool_pre_ping=True)
        if eng.dialect.name == "postgresql":
            event.listen(eng, "connect", _utc_session)
    _KeystoreModel.metadata.create_all(eng)
    return eng


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# As records/store.py does (this floor cannot import it): psycopg 3 for ``postgresql://``, and
# every session in UTC whatever the server's TimeZone.
def _driver_url(url: str) -> str:
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


def _utc_session(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("SET TIME ZONE 'UTC'")
    cursor.close()
    dbapi_connection.commit()
