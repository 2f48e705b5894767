"""The one front door to incidents: open, act, decide, send events, query and list.

Every client goes through here (the `incident` command, case intake, the demo; later the HTTP API and
the console), so all of them open incidents the same way (workflow id from ``workflows/names.py``,
the full playbook and its content hash in the input, the business calendar from settings, search
attributes set at start; a second open of the same id reports the existing incident) and reach a
running incident through the same Updates, signals and queries.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from playbooks.loader import load_playbook
from playbooks.schema import SEVERITIES
from records.purge import purged
from records.reconcile import SETTLED
from records.tables import IncidentRecord, records_engine
from settings import Settings, get_settings
from workflows.incident import IncidentWorkflow
from workflows.limits import INCIDENT_ID_PATTERN, SUMMARY_MAX, field_problems, too_long
from workflows.models import (
    BusinessCalendar,
    IncidentInput,
    ReopenRequest,
)
from workflows.names import (
    MEMO_TRUSTED_KEYS,
    SA_BREACHED,
    SA_PARENT,
    SA_PLAYBOOK,
    SA_SEVERITY,
    SA_STATUS,
    workflow_id_for,
)


class InvalidRequest(ValueError):
    """A request the front door refuses before it reaches Temporal (the message says why)."""


class OpenError(InvalidRequest):
    """The incident cannot be opened as asked (bad severity, missing required field, ...)."""


class IncidentClosed(OpenError):
    """An incident id is unique forever: opening a closed incident's id again is refused."""

    def __init__(self, incident_id: str, closed_at: datetime | None) -> None:
        when = f" at {closed_at.isoformat(timespec='seconds')}" if closed_at else ""
        super().__init__(
            f"incident {incident_id} was closed{when}; an id is never reused: "
            f"reopen it with `incident reopen {incident_id} --reason ...`"
        )
        self.incident_id = incident_id
        self.closed_at = closed_at


@dataclass(frozen=True)
class OpenResult:
    incident_id: str
    workflow_id: str
    run_id: str | None
    created: bool
    playbook_hash: str
    ignored_fields: tuple[str, ...] = ()  # undeclared fields a system sent and the open left out


def new_incident_id(now: datetime | None = None) -> str:
    """Readable, sortable and unique enough for humans: CR-20261125-3f9a1c."""
    now = now or datetime.now(UTC)
    return f"CR-{now:%Y%m%d}-{secrets.token_hex(3)}"


def calendar_from(settings: Settings) -> BusinessCalendar:
    """The business calendar from settings, checked here because workflows cannot read zone files."""
    try:
        ZoneInfo(settings.business_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise OpenError(
            f"CR_BUSINESS_TIMEZONE {settings.business_timezone!r} is not a time zone"
        ) from None
    return BusinessCalendar(
        timezone=settings.business_timezone,
        days=settings.business_days,
        start=time.fromisoformat(settings.business_start),
        end=time.fromisoformat(settings.business_end),
    )


def request_problems(*, incident_id: str, summary: str, fields: dict[str, str]) -> list[str]:
    """What is wrong with an open request's sizes and names, before any playbook is read."""
    problems = []
    if not re.fullmatch(INCIDENT_ID_PATTERN, incident_id):
        problems.append(
            f"--id {incident_id[:40]!r}: 1-100 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    if problem := too_long("--summary", summary, SUMMARY_MAX):
        problems.append(problem)
    problems += field_problems(fields)
    return problems


def build_input(
    *,
    playbook: str,
    severity: str | None,
    summary: str,
    fields: dict[str, str],
    incident_id: str,
    opened_by: str,
    settings: Settings,
    playbooks_dir: Path | None = None,
) -> IncidentInput:
    """Validate the request against the playbook and snapshot it (raises OpenError, PlaybookError)."""
    problems = request_problems(incident_id=incident_id, summary=summary, fields=fields)
    if problems:
        raise OpenError("; ".join(problems))
    loaded = load_playbook(playbook, playbooks_dir or settings.playbooks_dir)
    pb = loaded.playbook
    severity = (severity or pb.default_severity).lower()
    if severity not in SEVERITIES:
        raise OpenError(f"--severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
    if not summary.strip():
        raise OpenError("--summary is required")
    problems = pb.check_fields(fields)
    if problems:
        raise OpenError("; ".join(problems))
    return IncidentInput(
        incident_id=incident_id,
        playbook=pb,
        playbook_hash=loaded.content_hash,
        severity=severity,  # type: ignore[arg-type]
        summary=summary,
        fields=fields,
        opened_by=opened_by,
        calendar=calendar_from(settings),
        **settings.incident_options(),
        continue_as_new_after_events=settings.continue_as_new_after_events,
    )


def search_attributes(inp: IncidentInput, status: str = "open") -> TypedSearchAttributes:
    """The search attributes an incident starts with (the workflow upserts only changes)."""
    state = inp.state
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(SA_SEVERITY, state.severity if state else inp.severity),
        SearchAttributePair(SA_PLAYBOOK, inp.playbook.name),
        SearchAttributePair(SA_STATUS, status),
        SearchAttributePair(SA_BREACHED, state.sla_breached if state else False),
    ]
    if inp.parent_incident_id:  # a linked incident: list shows whose
        pairs.append(SearchAttributePair(SA_PARENT, inp.parent_incident_id))
    return TypedSearchAttributes(pairs)


def memo_of(inp: IncidentInput) -> dict[str, Any]:
    """The memo an incident starts with: what the API must know before it acts on it, read
    without a query (``incidents/actions.py`` ``target``)."""
    return {MEMO_TRUSTED_KEYS: sorted(inp.trusted_keys)}


async def start_incident(client: Client, inp: IncidentInput, task_queue: str) -> OpenResult:
    """Start the workflow; if it is already open, report it; if it closed, refuse: an incident
    id is unique forever (``reopen_incident`` continues a closed one)."""
    workflow_id = workflow_id_for(inp.incident_id)
    closed = await asyncio.to_thread(_closed_in_records, inp.incident_id)
    if closed is not None:
        raise IncidentClosed(inp.incident_id, closed)

    async def start(attributes: TypedSearchAttributes) -> Any:
        return await client.start_workflow(
            IncidentWorkflow.run,
            inp,
            id=workflow_id,
            task_queue=task_queue,
            search_attributes=attributes,
            memo=memo_of(inp),
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            task_timeout=_task_timeout(),
        )

    try:
        try:
            handle = await start(search_attributes(inp))
        except RPCError as err:
            # A server that does not know IncidentParent yet (`incident up` registers it; a
            # cluster's operator adds it): the link still lives in the input, status and
            # timeline, only list's "opened by" column is empty.
            if not inp.parent_incident_id or SA_PARENT.name not in err.message:
                raise
            handle = await start(
                search_attributes(inp.model_copy(update={"parent_incident_id": None}))
            )
        return OpenResult(
            inp.incident_id, workflow_id, handle.result_run_id, True, inp.playbook_hash
        )
    except WorkflowAlreadyStartedError:
        existing = await client.get_workflow_handle(workflow_id).describe()
        if existing.status != WorkflowExecutionStatus.RUNNING:
            raise IncidentClosed(inp.incident_id, existing.close_time) from None
        status = await client.get_workflow_handle(workflow_id).query(IncidentWorkflow.status)
        return OpenResult(
            inp.incident_id, workflow_id, existing.run_id, False, status.playbook_hash
        )


def _task_timeout() -> timedelta:
    """How long a workflow task may take before the server gives it to another worker (see
    ``Settings.workflow_task_timeout_seconds``)."""
    return timedelta(seconds=get_settings().workflow_task_timeout_seconds)


def _closed_in_records(incident_id: str) -> datetime | None:
    """When the records say this incident ended (so its id is taken even after Temporal's
    retention has deleted it); None when it is unknown or still open. A records database that
    cannot be read is not a reason to refuse an open: Temporal still refuses a closed id."""
    try:
        with Session(records_engine()) as s:
            record = s.get(IncidentRecord, incident_id)
    except SQLAlchemyError:
        return None
    if record is None or record.status not in SETTLED:
        return None
    return record.closed_at or record.updated_at


async def reopen_incident(
    client: Client, incident_id: str, *, reopen: ReopenRequest, task_queue: str
) -> OpenResult:
    """Continue a closed incident in a new run of the same workflow id, from the state it
    closed with; the new run records who reopened it and why."""
    workflow_id = workflow_id_for(incident_id)
    purge = await asyncio.to_thread(purged, incident_id)
    if purge is not None:
        raise InvalidRequest(f"{purge.line()}; it cannot be reopened")
    target = client.get_workflow_handle(workflow_id)
    try:
        description = await target.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise InvalidRequest(
                f"incident {incident_id} is not in Temporal (unknown, or past retention): "
                "it cannot be reopened"
            ) from None
        raise
    if description.status == WorkflowExecutionStatus.RUNNING:
        raise InvalidRequest(f"incident {incident_id} is open: there is nothing to reopen")
    if description.status != WorkflowExecutionStatus.COMPLETED:
        name = description.status.name.lower() if description.status else "unknown"
        raise InvalidRequest(
            f"incident {incident_id} ended {name}, not closed: see `incident doctor` or the "
            "audit log for what ended it"
        )
    last: IncidentInput = await target.query(IncidentWorkflow.continuation)
    assert last.state is not None
    state = last.state.model_copy(
        update={
            "status": "acknowledged" if last.state.acknowledged_at else "open",
            "closed_at": None,
            "resolution": None,
            "runs": last.state.runs + 1,
        }
    )
    settings = get_settings()  # today's workers, not the last run's
    inp = last.model_copy(update={"state": state, "reopen": reopen, **settings.incident_options()})
    handle = await client.start_workflow(
        IncidentWorkflow.run,
        inp,
        id=workflow_id,
        task_queue=task_queue,
        search_attributes=search_attributes(inp, state.status),
        memo=memo_of(inp),
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        task_timeout=_task_timeout(),
    )
    return OpenResult(incident_id, workflow_id, handle.result_run_id, True, inp.playbook_hash)


async def open_incident(
    client: Client,
    *,
    playbook: str,
    severity: str | None,
    summary: str,
    fields: dict[str, str],
    incident_id: str,
    opened_by: str,
    settings: Settings | None = None,
    drop_undeclared: bool = False,
    prepare: Callable[[IncidentInput], IncidentInput] | None = None,
) -> OpenResult:
    """Open (or find) incident ``incident_id`` running ``playbook``.

    A person's undeclared field is refused; a system that forwards whatever its record holds
    (intake) asks for ``drop_undeclared``: those fields are left out and named in the result.
    ``prepare`` completes the input before it starts (intake adds the keys the incident will
    trust and the roster, as the API does: ``identity/signing.py``)."""
    settings = settings or get_settings()
    ignored: tuple[str, ...] = ()
    if drop_undeclared:
        declared = load_playbook(playbook, settings.playbooks_dir).playbook.fields
        if declared:
            ignored = tuple(sorted(k for k in fields if k not in declared))
            fields = {k: v for k, v in fields.items() if k in declared}
    inp = build_input(
        playbook=playbook,
        severity=severity,
        summary=summary,
        fields=fields,
        incident_id=incident_id,
        opened_by=opened_by,
        settings=settings,
    )
    if prepare is not None:
        inp = await asyncio.to_thread(prepare, inp)
    result = await start_incident(client, inp, settings.task_queue)
    return replace(result, ignored_fields=ignored)
