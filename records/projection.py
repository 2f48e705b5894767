"""The incident projection and SLA outcomes: the latest state each incident reported, flattened
for reports and the console. Updated inside the audit chain's append transaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from records import board
from records.requests import project_request
from records.sealed import RESOLUTION, Sealer
from records.tables import IncidentRecord, SlaOutcome, iso, utc
from workflows.models import IncidentState, RecordBatch, SlaClock, TimelineEntry

ESCALATION_KINDS = ("escalat", "severity_raised", "raise_severity")


def project(s: Session, batch: RecordBatch, state: IncidentState, sealer: Sealer) -> None:
    """Upsert the projection and SLA outcomes unless a newer snapshot is already stored (the
    resolution sealed by ``sealer``: ``records/sealed.py``)."""
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
        "severity_history": json.dumps([[iso(t), sev] for t, sev in state.severity_history]),
        "status": state.status,
        "owner": state.owner,
        "opened_at": utc(state.opened_at),
        "acknowledged_at": utc(state.acknowledged_at),
        "closed_at": utc(state.closed_at),
        "resolution": None
        if state.resolution is None
        else sealer.seal(RESOLUTION, batch.incident_id, state.resolution),
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
    stored = {
        row.clock: row
        for row in s.exec(select(SlaOutcome).where(SlaOutcome.incident_id == batch.incident_id))
    }  # one query for every clock, not one per clock
    for clock in state.clocks.values():
        _upsert_outcome(s, batch.incident_id, clock, stored.get(clock.name))
    board.upsert(s, batch.incident_id, state)
    project_request(s, batch.incident_id, batch.playbook, state)


def _escalated(state: IncidentState, entries: list[TimelineEntry]) -> bool:
    """Severity changed at least once, or an entry shows an escalation (breach escalations)."""
    if len({sev for _, sev in state.severity_history}) > 1:
        return True
    return any(e.kind.startswith(ESCALATION_KINDS) for e in [*entries, *state.timeline])


def clock_outcome(clock: SlaClock) -> str:
    """breached if it ever breached; pending while running; not_met if its work never finished;
    else warned or met."""
    if clock.breached_at is not None:
        return "breached"
    if clock.stopped_at is None:
        return "pending"
    if clock.unmet:
        return "not_met"  # its step never finished: shown apart, not in attainment
    return "warned" if clock.warned_at is not None else "met"


def _upsert_outcome(s: Session, incident_id: str, clock: SlaClock, row: SlaOutcome | None) -> None:
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
    if row is None:
        row = SlaOutcome.model_validate({"incident_id": incident_id, "clock": clock.name, **values})
    else:
        for key, value in values.items():
            setattr(row, key, value)
    s.add(row)
