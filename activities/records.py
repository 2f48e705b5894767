"""The records database: incident projection, SLA outcomes, the hash-chained audit log, archives.

Written only by the activities below, never by workflow code. The workflow sends each new slice of its
timeline (with a snapshot of its state) to ``records.append``; activity retries may deliver the same
batch twice, so every write is keyed by (incident id, seq) and replays are no-ops. At close the
``ArchiveIncidentWorkflow`` runs ``records.archive_history`` so auditors keep the Temporal history
after the namespace's retention has deleted it.

The audit log is append-only and tamper-evident: each row's hash covers its content, its position,
the previous row of the same incident and the previous row of the whole log. Appends serialise on
the single ``audit_head`` row (an UPDATE takes the write lock on SQLite and a row lock on
PostgreSQL), so the chain never forks under concurrent workers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import Column, Text, UniqueConstraint, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select
from temporalio import activity

from activities import db
from settings import get_settings
from workflows.archive import ArchiveRequest, ArchiveResult
from workflows.daily_report import DailyReportRequest
from workflows.models import IncidentState, RecordBatch, SlaClock, TimelineEntry

SCHEMA_VERSION = 1
GENESIS = "0" * 64  # the "previous hash" of the first row of a chain
ESCALATION_KINDS = ("escalat", "severity_raised", "raise_severity")


class RecordsMeta(SQLModel, table=True):
    """Key/value facts about the database itself; ``schema_version`` is the one that matters."""

    __tablename__ = "records_meta"
    key: str = Field(primary_key=True)
    value: str


class IncidentRecord(SQLModel, table=True):
    """The incident projection: the latest snapshot the workflow sent, flattened for reports."""

    __tablename__ = "incident_records"
    incident_id: str = Field(primary_key=True)
    playbook: str = Field(index=True)
    playbook_hash: str
    workflow_id: str
    run_id: str
    severity: str
    severity_history: str = "[]"  # JSON [[iso time, severity], ...]
    status: str = Field(index=True)
    owner: str
    opened_at: datetime = Field(index=True)
    acknowledged_at: datetime | None = None
    closed_at: datetime | None = None
    resolution: str | None = None
    sla_breached: bool = False
    escalated: bool = False
    runs: int = 1
    last_seq: int = -1  # highest timeline seq this projection reflects (stale batches lose)
    updated_at: datetime


class SlaOutcome(SQLModel, table=True):
    """One SLA clock of one incident (a step's or ``incident.acknowledge``/``incident.resolve``)."""

    __tablename__ = "sla_outcomes"
    incident_id: str = Field(primary_key=True)
    clock: str = Field(primary_key=True)
    scope: str  # "incident" or "step"
    kind: str  # "wall" or "business"
    started_at: datetime
    due_seconds: float
    warn_seconds: float | None = None
    due_at: datetime | None = None
    warned_at: datetime | None = None
    breached_at: datetime | None = None
    stopped_at: datetime | None = None
    paused_seconds: float = 0.0
    paused_since: datetime | None = None
    state: str
    outcome: str  # met / warned / breached / pending, see ``clock_outcome``


class AuditRow(SQLModel, table=True):
    """One timeline entry, forever; ``id`` is its dense position in the whole log."""

    __tablename__ = "audit_log"
    __table_args__ = (UniqueConstraint("incident_id", "seq", name="uq_audit_incident_seq"),)
    id: int = Field(primary_key=True)
    incident_id: str = Field(index=True)
    seq: int
    at: datetime
    actor: str
    role: str | None = None
    action: str
    step: str | None = None
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))
    sla: str | None = None
    due_at: datetime | None = None
    data: str = "{}"  # canonical JSON
    workflow_id: str
    run_id: str
    playbook: str
    playbook_hash: str
    prev_incident_hash: str
    prev_log_hash: str
    row_hash: str


class AuditHead(SQLModel, table=True):
    """The tip of the whole log: the append lock, and a witness against deleting the last row."""

    __tablename__ = "audit_head"
    id: int = Field(default=1, primary_key=True)
    last_id: int = 0
    last_hash: str = GENESIS
    writes: int = 0


class ArchivedRun(SQLModel, table=True):
    """The full history of one closed run of an incident workflow, with its manifest."""

    __tablename__ = "archived_histories"
    workflow_id: str = Field(primary_key=True)
    run_id: str = Field(primary_key=True)
    incident_id: str = Field(index=True)
    playbook: str
    playbook_hash: str
    close_status: str
    event_count: int
    history_sha256: str
    exported_at: datetime
    manifest_json: str = Field(sa_column=Column(Text, nullable=False))
    history_json: str = Field(sa_column=Column(Text, nullable=False))


TABLES = [
    SQLModel.metadata.tables[str(t.__tablename__)]
    for t in (RecordsMeta, IncidentRecord, SlaOutcome, AuditRow, AuditHead, ArchivedRun)
]
_ready: dict[str, Engine] = {}


def records_engine(url: str | None = None) -> Engine:
    """The shared engine with this module's tables, schema version and chain head in place."""
    url = url or get_settings().effective_database_url
    eng = db.engine(url)
    if _ready.get(url) is not eng:
        SQLModel.metadata.create_all(eng, tables=TABLES)
        _ensure_meta(eng)
        _ready[url] = eng
    return eng


def _ensure_meta(eng: Engine) -> None:
    """Record the schema version once, refuse a database written by a newer schema."""
    with Session(eng) as s:
        for row in (RecordsMeta(key="schema_version", value=str(SCHEMA_VERSION)), AuditHead()):
            s.add(row)
            try:
                s.commit()
            except IntegrityError:  # another process got there first
                s.rollback()
        stored = s.get(RecordsMeta, "schema_version")
        if stored is not None and int(stored.value) > SCHEMA_VERSION:
            raise RuntimeError(
                f"records schema version {stored.value} is newer than this code "
                f"({SCHEMA_VERSION}); upgrade critical-response before writing"
            )


# --- Time and hashing ---------------------------------------------------------------------


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """Aware UTC (a naive value is taken as UTC): one form for storage, comparison and hashing."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    value = utc(value)
    return None if value is None else value.isoformat(timespec="microseconds")


def row_digest(row: AuditRow) -> str:
    """SHA-256 over a row's content, position and both previous hashes (canonical JSON)."""
    body = {
        "id": row.id,
        "incident_id": row.incident_id,
        "seq": row.seq,
        "at": _iso(row.at),
        "actor": row.actor,
        "role": row.role,
        "action": row.action,
        "step": row.step,
        "detail": row.detail,
        "sla": row.sla,
        "due_at": _iso(row.due_at),
        "data": row.data,
        "workflow_id": row.workflow_id,
        "run_id": row.run_id,
        "playbook": row.playbook,
        "playbook_hash": row.playbook_hash,
        "prev_incident_hash": row.prev_incident_hash,
        "prev_log_hash": row.prev_log_hash,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# --- records.append -------------------------------------------------------------------------


def write_batch(batch: RecordBatch, url: str | None = None) -> dict[str, int]:
    """Append the batch's new entries to the chain and refresh the projection, in one transaction.

    Returns how many entries were written and how many were already there (a redelivery).
    """
    eng = records_engine(url)
    with Session(eng) as s:
        # The first statement is a write so that SQLite takes its write lock before any read.
        s.exec(update(AuditHead).where(col(AuditHead.id) == 1).values(writes=AuditHead.writes + 1))
        head = s.get(AuditHead, 1)
        assert head is not None
        seqs = [e.seq for e in batch.entries]
        existing = set(
            s.exec(
                select(AuditRow.seq).where(
                    AuditRow.incident_id == batch.incident_id, col(AuditRow.seq).in_(seqs)
                )
            ).all()
        )
        prev_incident = _incident_tip(s, batch.incident_id)
        written = 0
        for entry in sorted(batch.entries, key=lambda e: e.seq):
            if entry.seq in existing:
                continue
            row = _audit_row(batch, entry, head.last_id + 1, prev_incident, head.last_hash)
            s.add(row)
            head.last_id, head.last_hash, prev_incident = row.id, row.row_hash, row.row_hash
            existing.add(entry.seq)
            written += 1
        s.add(head)
        if batch.snapshot is not None:
            _project(s, batch, batch.snapshot)
        s.commit()
    return {"written": written, "skipped": len(batch.entries) - written}


def _incident_tip(s: Session, incident_id: str) -> str:
    last = s.exec(
        select(AuditRow.row_hash)
        .where(AuditRow.incident_id == incident_id)
        .order_by(col(AuditRow.id).desc())
        .limit(1)
    ).first()
    return last or GENESIS


def _audit_row(
    batch: RecordBatch, entry: TimelineEntry, row_id: int, prev_incident: str, prev_log: str
) -> AuditRow:
    row = AuditRow(
        id=row_id,
        incident_id=batch.incident_id,
        seq=entry.seq,
        at=utc(entry.at),
        actor=entry.actor,
        role=entry.role,
        action=entry.kind,
        step=entry.step,
        detail=entry.detail,
        sla=entry.sla,
        due_at=utc(entry.due_at),
        data=json.dumps(entry.data, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        workflow_id=batch.workflow_id,
        run_id=batch.run_id,
        playbook=batch.playbook,
        playbook_hash=batch.playbook_hash,
        prev_incident_hash=prev_incident,
        prev_log_hash=prev_log,
        row_hash="",
    )
    row.row_hash = row_digest(row)
    return row


def _project(s: Session, batch: RecordBatch, state: IncidentState) -> None:
    """Upsert the projection and SLA outcomes unless a newer snapshot is already stored."""
    seq = max([e.seq for e in batch.entries] + [e.seq for e in state.timeline] + [-1])
    record = s.get(IncidentRecord, batch.incident_id)
    if record is not None and record.last_seq > seq:
        return  # a late redelivery of an older batch must not roll the projection back
    escalated = _escalated(state, batch.entries) or bool(record and record.escalated)
    values: dict[str, Any] = {
        "playbook": batch.playbook,
        "playbook_hash": batch.playbook_hash,
        "workflow_id": batch.workflow_id,
        "run_id": batch.run_id,
        "severity": state.severity,
        "severity_history": json.dumps([[_iso(t), sev] for t, sev in state.severity_history]),
        "status": state.status,
        "owner": state.owner,
        "opened_at": utc(state.opened_at),
        "acknowledged_at": utc(state.acknowledged_at),
        "closed_at": utc(state.closed_at),
        "resolution": state.resolution,
        "sla_breached": state.sla_breached,
        "escalated": escalated,
        "runs": state.runs,
        "last_seq": seq,
        "updated_at": utc(datetime.now(UTC)),
    }
    if record is None:
        record = IncidentRecord.model_validate({"incident_id": batch.incident_id, **values})
    else:
        for key, value in values.items():
            setattr(record, key, value)
    s.add(record)
    for clock in state.clocks.values():
        _upsert_outcome(s, batch.incident_id, clock)


def _escalated(state: IncidentState, entries: list[TimelineEntry]) -> bool:
    """Severity changed at least once, or an entry shows an escalation (breach escalations)."""
    if len({sev for _, sev in state.severity_history}) > 1:
        return True
    return any(e.kind.startswith(ESCALATION_KINDS) for e in [*entries, *state.timeline])


def clock_outcome(clock: SlaClock) -> str:
    """breached if it ever breached; pending while still running; else warned or met."""
    if clock.breached_at is not None:
        return "breached"
    if clock.stopped_at is None:
        return "pending"
    return "warned" if clock.warned_at is not None else "met"


def _upsert_outcome(s: Session, incident_id: str, clock: SlaClock) -> None:
    values: dict[str, Any] = {
        "scope": "incident" if clock.name.startswith("incident.") else "step",
        "kind": clock.kind,
        "started_at": utc(clock.started_at),
        "due_seconds": clock.due.total_seconds(),
        "warn_seconds": clock.warn_at.total_seconds() if clock.warn_at is not None else None,
        "due_at": utc(clock.due_at),
        "warned_at": utc(clock.warned_at),
        "breached_at": utc(clock.breached_at),
        "stopped_at": utc(clock.stopped_at),
        "paused_seconds": clock.paused_total.total_seconds(),
        "paused_since": utc(clock.paused_since),
        "state": clock.state,
        "outcome": clock_outcome(clock),
    }
    row = s.get(SlaOutcome, (incident_id, clock.name))
    if row is None:
        row = SlaOutcome.model_validate({"incident_id": incident_id, "clock": clock.name, **values})
    else:
        for key, value in values.items():
            setattr(row, key, value)
    s.add(row)


@activity.defn(name="records.append")
async def append(batch: RecordBatch) -> dict[str, int]:
    """Mirror a timeline batch into the records database (idempotent; safe to retry)."""
    return await asyncio.to_thread(write_batch, batch)


@activity.defn(name="records.archive_history")
async def archive_history(request: ArchiveRequest) -> ArchiveResult:
    """Store the closed incident run and its continue-as-new predecessors (retries until closed)."""
    from activities.archive import archive_chain  # imports this module's tables

    return await archive_chain(activity.client(), request)


@activity.defn(name="records.report_summary")
async def report_summary(request: DailyReportRequest) -> str:
    """The daily report's Slack text over the request's look-back window."""
    from playbooks.schema import parse_duration
    from report import build_report, summary_text

    def compute() -> str:
        since = datetime.now(UTC) - parse_duration(request.window)
        return summary_text(build_report(since, request.playbooks), request.window)

    return await asyncio.to_thread(compute)


ACTIVITIES = [append, archive_history, report_summary]
