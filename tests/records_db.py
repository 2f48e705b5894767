"""Shared by the records, audit and report tests: a fresh records database per test, and builders.

SQLite in a temporary directory by default; when ``TEST_DATABASE_URL`` names a PostgreSQL database
(e.g. ``postgresql+psycopg://user@127.0.0.1:5432/cr_test``) every test runs against it instead, with
the records tables dropped and recreated per test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine

from records import store as db
from records import tables
from settings import get_settings
from workflows.models import IncidentState, RecordBatch, SlaClock, TimelineEntry

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PG_URL = os.environ.get("TEST_DATABASE_URL")


def _fresh(url: str) -> None:
    if not url.startswith("sqlite"):
        eng = create_engine(url)
        tables.SQLModel.metadata.drop_all(eng, tables=tables.TABLES)
        eng.dispose()


@pytest.fixture
def records_url(tmp_path, monkeypatch) -> Iterator[str]:
    """Point settings at an empty records database for this test, with its own audit key and
    checkpoint file (a checkpoint file belongs to one database's log)."""
    url = PG_URL or f"sqlite:///{tmp_path / 'records.db'}"
    _fresh(url)
    monkeypatch.setenv("CR_DATABASE_URL", url)
    monkeypatch.setenv("CR_AUDIT_KEY_FILE", str(tmp_path / "audit-key.json"))
    monkeypatch.setenv("CR_AUDIT_CHECKPOINT_FILE", str(tmp_path / "audit-checkpoints.jsonl"))
    get_settings.cache_clear()
    db.reset_engines()
    tables._ready.clear()
    yield url
    db.reset_engines()
    tables._ready.clear()
    get_settings.cache_clear()


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
