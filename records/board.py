"""The incident board: what each incident waits on now, flattened from the snapshot the workflow
sends with every records batch, so the console lists a thousand incidents from one table instead
of a thousand status queries (and still lists them once Temporal's retention has passed).

Written in the audit chain's append transaction, beside the projection (``records/projection.py``);
read by the console's incidents page and approvals inbox. Who must act: the owner until the
incident is acknowledged, the roles a pending decision waits on, the owner of a failed step that
waits for retry or skip, and the owner role of each running step. The next deadline is the
earliest projected due time of a running clock, with its warning time.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlmodel import Session

from records.tables import IncidentBoard, iso, utc
from workflows.models import BusinessCalendar, IncidentState, PendingApproval, SlaClock
from workflows.sla import instant_of

_WALL = BusinessCalendar()
CONTAINERS = ("parallel", "branch")  # a wall clock's instants never read the calendar


def decision_roles(approval: PendingApproval) -> list[str]:
    """The roles the pending decision waits on now (the second approver's once one decided)."""
    if approval.decisions and approval.second_roles:
        return list(approval.second_roles)
    return list(approval.roles)


def _warn_at(clock: SlaClock) -> datetime | None:
    if clock.warn_at is None or clock.kind != "wall" or clock.warned_at or clock.breached_at:
        return None
    return instant_of(clock, clock.warn_at, _WALL)


def board_values(state: IncidentState) -> dict[str, Any]:
    """The board row of an incident in ``state`` (every column but the id)."""
    closed = state.status == "closed"
    # the steps doing the work: a parallel or branch step runs while the steps inside it do
    running = [s for s in state.steps.values()
               if s.status == "running" and s.kind not in CONTAINERS]  # fmt: skip
    failed = [s for s in state.steps.values() if s.status == "failed" and not s.failure_decision]
    pending = [a for a in state.approvals.values() if a.outcome is None]
    must: set[str] = set()
    if not closed:
        if state.acknowledged_at is None:
            must.add(state.owner)
        if failed:
            must.add(state.owner)
        for approval in pending:
            must.update(decision_roles(approval))
        must.update(s.owner for s in running if s.owner and s.kind != "approval")
    clocks = [c for c in state.clocks.values() if c.stopped_at is None and c.due_at is not None]
    clocks = [] if closed else sorted(clocks, key=lambda c: utc(c.due_at) or datetime.max)
    first = clocks[0] if clocks else None
    approvals = [
        {"step": a.step_id, "roles": decision_roles(a), "requested_by": a.requested_by,
         "requested_at": iso(a.requested_at), "decided_by": [d.actor for d in a.decisions],
         "due_at": iso(state.clocks[a.step_id].due_at) if a.step_id in state.clocks else None}
        for a in ([] if closed else pending)
    ]  # fmt: skip
    return {
        "steps": ",".join(s.step_id for s in ([] if closed else running)),
        "must_act": "".join(f",{m}" for m in sorted(must)) + ("," if must else ""),
        "attention": bool(state.attention) and not closed,
        "next_clock": first.name if first else None,
        "next_due_at": utc(first.due_at) if first else None,
        "next_warn_at": _warn_at(first) if first else None,
        "approvals": json.dumps(approvals),
    }


def upsert(s: Session, incident_id: str, state: IncidentState) -> None:
    """Write the incident's board row from ``state`` (the caller's transaction commits it)."""
    values = board_values(state)
    row = s.get(IncidentBoard, incident_id)
    if row is None:
        row = IncidentBoard.model_validate({"incident_id": incident_id, **values})
    else:
        for key, value in values.items():
            setattr(row, key, value)
    s.add(row)
