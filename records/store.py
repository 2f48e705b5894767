"""The project's database: one SQLModel engine per URL (SQLite file by default, PostgreSQL by URL:
``postgresql://`` with psycopg 3, every session in UTC).

Only activities and CLI tools touch it, never workflow code. Tables live beside the code that owns
them (``records/tables.py``, the delivery ledger in ``activities/ledger.py``) and are created on first
use. A SQLite file is created 0600 (its ``-wal`` and ``-shm`` take the database's mode): it holds
every incident's summary, fields and audit log (``datadir.py``).
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, create_engine

from datadir import touch_private
from settings import get_settings

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: settings), with every registered table created."""
    url = url or get_settings().effective_database_url
    with _lock:
        if url not in _engines:
            _engines[url] = _create(url)
        return _engines[url]


def _create(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?", 1)[0]
        if path and path != ":memory:" and not path.startswith("file:"):
            touch_private(Path(path))
        eng = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(eng, "connect", _sqlite_pragmas)
    else:
        eng = create_engine(driver_url(url), pool_pre_ping=True)
        if eng.dialect.name == "postgresql":
            event.listen(eng, "connect", utc_session)
    SQLModel.metadata.create_all(eng)
    return eng


def driver_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` name psycopg 3 (the ``postgresql`` extra), whatever
    SQLAlchemy's default driver for the scheme is (psycopg2 before SQLAlchemy 2.1)."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


def utc_session(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    """Every PostgreSQL session in UTC, whatever the server's ``TimeZone``: a ``timestamp without
    time zone`` column (sqlmodel before 0.0.45 made those) then stores aware times as UTC, not as
    the server's local wall clock, and ``timestamptz`` values come back in UTC."""
    cursor = dbapi_connection.cursor()
    cursor.execute("SET TIME ZONE 'UTC'")
    cursor.close()
    dbapi_connection.commit()


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def reset_engines() -> None:
    """Forget cached engines (tests point DATABASE_URL at a fresh file)."""
    with _lock:
        for eng in _engines.values():
            eng.dispose()
        _engines.clear()
