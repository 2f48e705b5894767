"""Acting on a running incident through the front door: commander actions, decisions, events,
and the queries people read (status, timeline).

Updates answer with the workflow's verdict. Signals cannot answer, so each carries a request id and
the sender waits for the timeline entry that id produced: the event recorded, the decision taken,
or the refusal with its reason. Nothing is reported as done that the incident did not record.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from incidents.service import InvalidRequest
from records.purge import Purge, purged
from records.reconcile import ended_out_of_band, reconcile_incident
from records.timeline import entries_before
from workflows.incident import IncidentWorkflow
from workflows.models import (
    ApprovalRequest,
    ApprovalResult,
    CommanderRequest,
    ExternalEvent,
    IncidentStatus,
    StepRequest,
    TimelineEntry,
)
from workflows.names import (
    MEMO_TRUSTED_KEYS,
    SA_PLAYBOOK,
    SIGNAL_APPROVE,
    SIGNAL_EVENT,
    SIGNAL_REJECT,
    workflow_id_for,
)

COMMANDER_UPDATES = {
    "ack": IncidentWorkflow.acknowledge,
    "assign": IncidentWorkflow.assign,
    "escalate": IncidentWorkflow.escalate,
    "note": IncidentWorkflow.note,
    "close": IncidentWorkflow.close,
}
REFUSAL_KINDS = ("approval_refused", "message_refused")
SIGNAL_VERDICT_SECONDS = 15.0


class SignalRefused(InvalidRequest):
    """The incident recorded a refusal of the signal; the message is the incident's reason."""

    def __init__(self, entry: TimelineEntry) -> None:
        # approval_refused already reads "approve refused (code): why"; message_refused is the why.
        text = entry.detail if entry.kind == "approval_refused" else f"refused: {entry.detail}"
        super().__init__(text)
        self.entry = entry


class IncidentEnded(InvalidRequest):
    """The incident's workflow ended without the incident closing (terminated, deleted ...)."""


class IncidentPurged(InvalidRequest):
    """The incident was purged: its data keys are destroyed, nothing of it can be read."""

    def __init__(self, purge: Purge) -> None:
        super().__init__(purge.line())
        self.purge = purge


async def refuse_purged(incident_id: str) -> None:
    """Raise ``IncidentPurged`` (one line: when, by whom, why) for a purged incident."""
    purge = await asyncio.to_thread(purged, incident_id)
    if purge is not None:
        raise IncidentPurged(purge)


class NoVerdict(InvalidRequest):
    """The signal was delivered but the incident recorded nothing for it in time."""


def handle(client: Client, incident_id: str) -> WorkflowHandle[IncidentWorkflow, Any]:
    return client.get_workflow_handle_for(IncidentWorkflow.run, workflow_id_for(incident_id))


def new_request_id() -> str:
    return uuid.uuid4().hex


async def act(
    client: Client, incident_id: str, action: str, request: CommanderRequest
) -> TimelineEntry:
    """A commander action (ack, assign, escalate, note, close): the timeline entry it recorded."""
    update = COMMANDER_UPDATES.get(action)
    if update is None:
        raise InvalidRequest(
            f"action must be one of {', '.join(COMMANDER_UPDATES)}, not {action!r}"
        )
    entry: TimelineEntry = await handle(client, incident_id).execute_update(update, request)
    return entry


async def decide(
    client: Client, incident_id: str, request: ApprovalRequest, *, approve: bool, by_signal: bool
) -> ApprovalResult | TimelineEntry:
    """Approve or reject a gated step: by Update (the workflow's result), or by signal (the
    timeline entry the decision produced; a refusal raises ``SignalRefused``)."""
    if by_signal:
        signal = SIGNAL_APPROVE if approve else SIGNAL_REJECT
        stamped = request.model_copy(update={"request_id": request.request_id or new_request_id()})
        return await signal_and_confirm(client, incident_id, signal, stamped)
    update = IncidentWorkflow.approve if approve else IncidentWorkflow.reject
    result: ApprovalResult = await handle(client, incident_id).execute_update(update, request)
    return result


async def resolve_failed_step(
    client: Client, incident_id: str, request: StepRequest, *, retry: bool
) -> TimelineEntry:
    """The commander's decision on a step that failed and waits: retry it, or skip it."""
    update = IncidentWorkflow.retry_step if retry else IncidentWorkflow.skip_step
    entry: TimelineEntry = await handle(client, incident_id).execute_update(update, request)
    return entry


async def send_event(client: Client, incident_id: str, event: ExternalEvent) -> TimelineEntry:
    """An outside event (e.g. law_enforcement_response): the timeline entry that recorded it."""
    stamped = event.model_copy(update={"request_id": event.request_id or new_request_id()})
    return await signal_and_confirm(client, incident_id, SIGNAL_EVENT, stamped)


async def signal_and_confirm(
    client: Client,
    incident_id: str,
    signal: str,
    message: ApprovalRequest | ExternalEvent,
    timeout: float = SIGNAL_VERDICT_SECONDS,
) -> TimelineEntry:
    """Send the signal, then wait for the entry carrying its request id (or raise)."""
    target = handle(client, incident_id)
    await target.signal(signal, message)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        entries = await target.query(IncidentWorkflow.timeline)
        for entry in reversed(entries):
            if entry.request_id == message.request_id:
                if entry.kind in REFUSAL_KINDS:
                    raise SignalRefused(entry)
                return entry
        if asyncio.get_running_loop().time() > deadline:
            raise NoVerdict(
                f"{signal} was delivered but incident {incident_id} recorded no verdict within "
                f"{timeout:.0f}s; check `incident timeline {incident_id}`"
            )
        await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Target:
    """What the API must know of an incident before it acts on it: whose playbook it runs (who
    may see it) and the keys its messages must be signed by."""

    incident_id: str
    playbook: str
    trusted_key_ids: list[str]


async def target(client: Client, incident_id: str) -> Target | IncidentStatus:
    """``Target`` from ``describe`` alone (its search attributes and memo), which the server
    answers without the incident's worker. A query is a task of that worker, which then forgets
    the run (``worker.ForgetAfterLoneQuery``), so the action after it would replay the whole
    history. An incident started without the memo is asked its ``status``; one that ended out of
    band is reconciled and refused alike."""
    await refuse_purged(incident_id)
    try:
        described = await handle(client, incident_id).describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        await _ended_out_of_band(client, incident_id)
        raise
    # An incident's workflow completes only when its people close it; any other end is out of band.
    if described.status not in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED):
        return await status(client, incident_id)
    playbook = described.typed_search_attributes.get(SA_PLAYBOOK)
    keys = await described.memo_value(MEMO_TRUSTED_KEYS, None, type_hint=list[str])
    if playbook is None or keys is None:
        return await status(client, incident_id)
    return Target(incident_id, playbook, keys)


async def status(client: Client, incident_id: str) -> IncidentStatus:
    """Steps, approvals and clocks, with time left counted from now (not the last task).

    An incident whose workflow was terminated or deleted out of band is reconciled here (its
    record marked, an audit entry written) and reported as such, never as still open. A purged
    incident is reported as purged (``IncidentPurged``)."""
    await refuse_purged(incident_id)
    target = handle(client, incident_id)
    try:
        described, result = await asyncio.gather(
            target.describe(), target.query(IncidentWorkflow.status, datetime.now(UTC))
        )
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        await _ended_out_of_band(client, incident_id)
        raise
    if described.status != WorkflowExecutionStatus.RUNNING and result.status != "closed":
        ended = described.status.name.lower() if described.status else "ended"
        await _ended_out_of_band(client, incident_id)
        raise IncidentEnded(f"incident {incident_id} was {ended} without being closed")
    return result


async def _ended_out_of_band(client: Client, incident_id: str) -> None:
    """Reconcile the incident; if the records know how it ended, say so (one line)."""
    done = await reconcile_incident(client, incident_id)
    row = await asyncio.to_thread(ended_out_of_band, incident_id)
    if done is not None or row is not None:
        detail = done.detail if done is not None else row.detail  # type: ignore[union-attr]
        raise IncidentEnded(f"incident {incident_id} ended out of band: {detail}")


async def timeline(client: Client, incident_id: str) -> list[TimelineEntry]:
    """The whole timeline: the current run's entries, and the earlier ones from the records
    (a long incident's run carries only its latest entries across continue-as-new), opened with
    its data key. A purged incident is reported as purged (``IncidentPurged``)."""
    await refuse_purged(incident_id)
    current: list[TimelineEntry] = await handle(client, incident_id).query(
        IncidentWorkflow.timeline
    )
    if current and current[0].seq > 1:
        earlier = await asyncio.to_thread(entries_before, incident_id, current[0].seq)
        return [*earlier, *current]
    return current


async def task_completed_after(
    client: Client, workflow_id: str, run_id: str, event_id: int
) -> None:
    """Return once the run has completed a workflow task after ``event_id`` (a reset run's first:
    a message sent sooner can be taken in the very task the reset re-runs, ahead of the entries
    the old run already recorded from it, and take one of their numbers)."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    done = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    # One read of the history that long-polls for new events, not a re-read every few ms.
    async for event in handle.fetch_history_events(wait_new_event=True):
        if event.event_id > event_id and event.event_type == done:
            return
