"""The records database's tables: incident projection, SLA outcomes, the audit log, archived runs.

Written only by activities (``activities/records.py``) and read by the audit and report tools; never
touched by workflow code. ``records_engine`` creates the tables, the schema version and the chain head
on first use.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import Column, Text, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel

from records import store
from settings import get_settings

SCHEMA_VERSION = 1
GENESIS = "0" * 64  # the "previous hash" of the first row of a chain
LOG_ID = "audit_log_id"  # records_meta key: this database's audit log, named in its checkpoints


class RecordsMeta(SQLModel, table=True):
    """Key/value facts about the database itself: ``schema_version``, and ``audit_log_id`` (random,
    set once) which every signed checkpoint of this database's audit log names."""

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


class IncidentBoard(SQLModel, table=True):
    """What an incident waits on now, for the console's lists (``records/board.py``): its running
    steps, who must act, its next deadline and its pending decisions. Ids, roles, handles and
    times only (``records/sealed.py``)."""

    __tablename__ = "incident_board"
    incident_id: str = Field(primary_key=True)
    steps: str = ""  # running step ids, comma-separated
    must_act: str = ""  # ",role,handle," (commas around each, for a LIKE filter)
    attention: bool = False
    next_clock: str | None = None
    next_due_at: datetime | None = Field(default=None, index=True)
    next_warn_at: datetime | None = None
    approvals: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON list


class RequestRecord(SQLModel, table=True):
    """The transparency facts of one law-enforcement request or child-safety report, derived by
    ``records/requests.py`` from the incident's state at each batch: kinds, choices, counts and
    times only, never what the request named (those fields stay in the sealed timeline)."""

    __tablename__ = "request_records"
    incident_id: str = Field(primary_key=True)
    playbook: str
    request_type: str = Field(index=True)  # emergency_disclosure, preservation, legal_process ...
    process_type: str | None = None  # legal process: subpoena, court_order, warrant
    jurisdiction: str  # a declared choice (us, eu, uk, other) or "unknown"
    outcome: str  # disclosed, partially, rejected, withdrawn, preserved, reported, pending
    accounts: int = 0  # accounts the request (or report) named
    opened_at: datetime = Field(index=True)
    responded_at: datetime | None = None  # the answer: data produced, preserved, or rejected
    notice_basis: str | None = None  # user notice delayed under: ndo, emergency, legal_bar
    report_sent_at: datetime | None = None  # child safety: the CyberTipline report submitted


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
    for t in (
        RecordsMeta,
        IncidentRecord,
        SlaOutcome,
        IncidentBoard,
        RequestRecord,
        AuditRow,
        AuditHead,
        ArchivedRun,
    )
]
_ready: dict[str, Engine] = {}


def records_engine(url: str | None = None) -> Engine:
    """The shared engine with this module's tables, schema version and chain head in place."""
    url = url or get_settings().effective_database_url
    eng = store.engine(url)
    if _ready.get(url) is not eng:
        SQLModel.metadata.create_all(eng, tables=TABLES)
        _ensure_meta(eng)
        _ready[url] = eng
    return eng


def _ensure_meta(eng: Engine) -> None:
    """Record the schema version and the audit log's id once, refuse a newer schema."""
    with Session(eng) as s:
        for row in (
            RecordsMeta(key="schema_version", value=str(SCHEMA_VERSION)),
            RecordsMeta(key=LOG_ID, value=uuid.uuid4().hex),
            AuditHead(),
        ):
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


def canonical(value: Any) -> str:
    """The one JSON text of a value that is hashed, signed or stored (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def audit_log_id(s: Session) -> str:
    """The id of this database's audit log ("" if someone deleted it: no checkpoint will match)."""
    row = s.get(RecordsMeta, LOG_ID)
    return "" if row is None else row.value


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """Aware UTC (a naive value is taken as UTC): one form for storage, comparison and hashing."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    """The one text form of a stored time, for hashing and JSON (microseconds, UTC)."""
    value = utc(value)
    return None if value is None else value.isoformat(timespec="microseconds")
