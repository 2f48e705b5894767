"""Listing incidents by their search attributes (eventually consistent, like all visibility)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from temporalio.client import Client, WorkflowExecutionStatus

from incidents.service import InvalidRequest
from playbooks.schema import SEVERITIES
from workflows.names import (
    SA_ATTENTION,
    SA_BREACHED,
    SA_PARENT,
    SA_PLAYBOOK,
    SA_SEVERITY,
    SA_STATUS,
    incident_id_of,
)


@dataclass(frozen=True)
class IncidentRow:
    """One incident as its search attributes show it (eventually consistent)."""

    incident_id: str
    status: str | None
    severity: str | None
    playbook: str | None
    sla_breached: bool
    opened_at: str
    needs_attention: bool
    run_started_at: datetime = field(repr=False, compare=False)
    parent: str | None = None  # the incident that opened this one (a linked incident)

    def as_json(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "run_started_at"}


def list_query(
    *,
    open_only: bool,
    severity: str | None,
    playbook: str | None,
    breached: bool,
    attention: bool = False,
) -> str:
    """The visibility query for these filters; an unknown value is refused with what is expected
    (never an empty answer that looks like "no incidents")."""
    clauses = ["WorkflowType = 'IncidentWorkflow'"]
    if open_only:
        # A continued-as-new run keeps its last search attributes: only the running one counts.
        clauses.append("ExecutionStatus = 'Running'")
        clauses.append(f"{SA_STATUS.name} != 'closed'")
    if severity:
        if severity not in SEVERITIES:
            raise InvalidRequest(
                f"--severity must be one of {', '.join(SEVERITIES)}, not {severity!r}"
            )
        clauses.append(f"{SA_SEVERITY.name} = '{severity}'")
    if playbook:
        if not playbook.replace("-", "").replace("_", "").isalnum():
            raise InvalidRequest(f"--playbook takes letters, digits, - and _, not {playbook!r}")
        clauses.append(f"{SA_PLAYBOOK.name} = '{playbook}'")
    if breached:
        clauses.append(f"{SA_BREACHED.name} = true")
    if attention:
        clauses.append(f"{SA_ATTENTION.name} = true")
    return " AND ".join(clauses)


async def list_incidents(client: Client, query: str, limit: int = 100) -> list[IncidentRow]:
    """One row per incident: the newest run of each workflow id (runs of a continue-as-new
    chain share the id), newest incidents first."""
    newest: dict[str, IncidentRow] = {}
    async for wf in client.list_workflows(query):
        attrs = wf.typed_search_attributes
        row = IncidentRow(
            incident_id=incident_id_of(wf.id) or wf.id,
            status=_status(attrs.get(SA_STATUS), wf.status),
            severity=attrs.get(SA_SEVERITY),
            playbook=attrs.get(SA_PLAYBOOK),
            sla_breached=bool(attrs.get(SA_BREACHED)),
            needs_attention=bool(attrs.get(SA_ATTENTION)),
            opened_at=wf.start_time.isoformat(timespec="seconds"),
            run_started_at=wf.start_time,
            parent=attrs.get(SA_PARENT),
        )
        kept = newest.get(row.incident_id)
        if kept is None or row.run_started_at > kept.run_started_at:
            newest[row.incident_id] = row
        if len(newest) > limit * 4:  # enough to fill the page even with long chains
            break
    rows = sorted(newest.values(), key=lambda r: r.run_started_at, reverse=True)
    return rows[:limit]


def _status(recorded: str | None, execution: WorkflowExecutionStatus | None) -> str | None:
    """The incident's own status, unless its workflow ended without closing it (terminated,
    failed, timed out ...): then that, so nothing ended out of band is listed as open."""
    ended = execution not in (
        None,
        WorkflowExecutionStatus.RUNNING,
        WorkflowExecutionStatus.CONTINUED_AS_NEW,
    )
    if ended and recorded != "closed" and execution is not None:
        return execution.name.lower()
    return recorded
