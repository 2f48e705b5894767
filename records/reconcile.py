"""Reconcile the records with Temporal: an incident whose workflow ended out of band is marked so.

An incident workflow ends normally only through ``close``, whose last records batch leaves its record
``closed``. When someone terminates or deletes the workflow (``temporal workflow terminate``, the Web
UI, ``temporal workflow delete``, a retention sweep), or it fails, times out or is cancelled, nothing
tells the records: the incident would stay open there for ever. ``reconcile_incident`` asks Temporal
about one record that is not settled and, when the workflow is gone or ended without closing the
incident, appends one ``ended_out_of_band`` entry to the audit chain (``records.chain.write_batch``,
the same code the workflow's own batches go through; actor and reason from the history when it has
them) and marks the record and its open SLA clocks. ``reconcile_open`` does that for every unsettled
record; the ``records.reconcile`` activity runs it from a Schedule (``workflows/reconcile.py``).

Idempotent: the entry is keyed by (incident, seq) and found again by its run, so a second pass, a
concurrent pass or a pass after a crash between the two writes adds nothing. A running incident and
an incident closed normally are never touched.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy import and_, case, func, update
from sqlmodel import Session, col, select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistoryEventFilterType,
)
from temporalio.service import RPCError, RPCStatusCode

from connection import failure_message
from records.chain import write_batch
from records.sealed import opened
from records.tables import AuditRow, IncidentRecord, SlaOutcome, records_engine, utc
from workflows.models import RecordBatch, TimelineEntry
from workflows.names import workflow_id_for

ENTRY_KIND = "ended_out_of_band"
SYSTEM_ACTOR = "temporal"  # the actor when the history does not say who ended the workflow
NOT_MET_OUTCOME = "not_met"  # an SLA clock still running when the incident ended: not met

# The record's status after reconciling, by what Temporal says of the workflow's latest run.
ENDED_STATUS: dict[WorkflowExecutionStatus, str] = {
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.COMPLETED: "ended_unclosed",  # completed, yet never recorded a close
}
DELETED = "deleted"  # the workflow no longer exists (deleted, or removed by retention)
ENDED_OUT_OF_BAND = frozenset({*ENDED_STATUS.values(), DELETED})
SETTLED = frozenset({"closed", *ENDED_OUT_OF_BAND})  # statuses reconciling never touches

REASON_LIMIT = 300  # characters of a terminate reason or failure message kept in the entry
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Reconciled:
    """One incident marked as ended out of band (by this call)."""

    incident_id: str
    workflow_id: str
    run_id: str  # the run that ended (for a deleted workflow: the last run the records saw)
    status: str  # the record's new status: terminated, deleted, failed, timed_out, ...
    temporal_status: str  # what Temporal said: TERMINATED, NOT_FOUND, FAILED, ...
    ended_at: datetime | None  # when Temporal closed the run; None when the workflow is gone
    actor: str  # who ended it (the terminating client's identity), else "temporal"
    reason: str | None
    seq: int  # the audit entry's seq
    detail: str  # the audit entry's one line


@dataclass(frozen=True)
class _Ending:
    """How Temporal says the workflow ended (or that it is gone)."""

    status: str
    temporal_status: str
    run_id: str
    ended_at: datetime | None
    actor: str
    reason: str | None
    detected_at: datetime


async def reconcile_incident(client: Client, incident_id: str) -> Reconciled | None:
    """Mark ``incident_id`` as ended out of band when its workflow is gone or ended unclosed.

    None when there is nothing to do: no record, a record already closed or reconciled, a workflow
    still running. A workflow that does not exist (NOT_FOUND) is an answer, not an error; any other
    failure to reach Temporal or the database raises.
    """
    record = await asyncio.to_thread(_unsettled_record, incident_id)
    if record is None:
        return None
    ending = await _ending(client, workflow_id_for(incident_id), record.run_id)
    if ending is None:
        return None
    return await asyncio.to_thread(_settle, incident_id, ending)


async def reconcile_open(
    client: Client, *, heartbeat: Callable[[], object] | None = None
) -> list[Reconciled]:
    """Reconcile every record that is not settled; ``heartbeat`` is called before each one.

    One incident that cannot be reconciled does not stop the others; the sweep raises at the end
    (naming how many failed) so its activity retries and the failure is seen.
    """
    log = structlog.get_logger()
    done: list[Reconciled] = []
    failed: list[tuple[str, BaseException]] = []
    for incident_id in await asyncio.to_thread(unsettled_incidents):
        if heartbeat is not None:
            heartbeat()
        try:
            result = await reconcile_incident(client, incident_id)
        except Exception as err:  # noqa: BLE001 - counted and raised after the others
            log.warning("reconcile failed", incident_id=incident_id, error=type(err).__name__)
            failed.append((incident_id, err))
            continue
        if result is not None:
            log.info("incident ended out of band", incident_id=incident_id, status=result.status)
            done.append(result)
    if failed:
        first_id, first = failed[0]
        raise RuntimeError(
            f"{len(failed)} incident(s) could not be reconciled ({len(done)} were); "
            f"first: {first_id}: {first}"
        ) from first
    return done


def unsettled_incidents(url: str | None = None) -> list[str]:
    """Ids of the records that are neither closed nor already reconciled, oldest first."""
    with Session(records_engine(url)) as s:
        query = (
            select(IncidentRecord.incident_id)
            .where(col(IncidentRecord.status).not_in(SETTLED))
            .order_by(col(IncidentRecord.opened_at))
        )
        return list(s.exec(query).all())


def ended_out_of_band(incident_id: str, url: str | None = None) -> AuditRow | None:
    """The latest ``ended_out_of_band`` audit entry of an incident, if it has one (for status),
    its detail and data in clear."""
    with Session(records_engine(url)) as s:
        row = s.exec(
            select(AuditRow)
            .where(AuditRow.incident_id == incident_id, AuditRow.action == ENTRY_KIND)
            .order_by(col(AuditRow.id).desc())
            .limit(1)
        ).first()
    return None if row is None else opened(row)


# --- Temporal: how did the workflow end? -------------------------------------------------------


async def _ending(client: Client, workflow_id: str, recorded_run: str) -> _Ending | None:
    """What Temporal says of the workflow's latest run; None while it runs (or continued)."""
    now = datetime.now(UTC)
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return _Ending(DELETED, "NOT_FOUND", recorded_run, None, SYSTEM_ACTOR, None, now)
    status = described.status
    if status is None or status not in ENDED_STATUS:
        return None  # RUNNING, or CONTINUED_AS_NEW between describe and the next run
    run = client.get_workflow_handle(workflow_id, run_id=described.run_id)
    actor, reason = await _who_and_why(client, run, status)
    return _Ending(
        ENDED_STATUS[status],
        status.name,
        described.run_id,
        utc(described.close_time),
        actor,
        reason,
        now,
    )


async def _who_and_why(
    client: Client, run: WorkflowHandle[object, object], status: WorkflowExecutionStatus
) -> tuple[str, str | None]:
    """The actor and reason the history gives for the run's end (identity of who terminated or
    cancelled it), else ``temporal`` and what the status itself means."""
    if status == WorkflowExecutionStatus.COMPLETED:
        return SYSTEM_ACTOR, "its records never showed the incident closed"
    if status == WorkflowExecutionStatus.TIMED_OUT:
        return SYSTEM_ACTOR, "the workflow execution timeout expired"
    if status == WorkflowExecutionStatus.CANCELED:
        requested = await _cancel_request(client, run)
        if requested is None:
            return SYSTEM_ACTOR, None
        attrs = requested.workflow_execution_cancel_requested_event_attributes
        return attrs.identity or SYSTEM_ACTOR, attrs.cause or None
    close = await _close_event(run)
    if close is None:
        return SYSTEM_ACTOR, None
    if close.HasField("workflow_execution_terminated_event_attributes"):
        terminated = close.workflow_execution_terminated_event_attributes
        return terminated.identity or SYSTEM_ACTOR, terminated.reason or None
    if close.HasField("workflow_execution_failed_event_attributes"):
        failure = close.workflow_execution_failed_event_attributes.failure
        return SYSTEM_ACTOR, failure_message(failure) or None
    return SYSTEM_ACTOR, None


async def _close_event(run: WorkflowHandle[object, object]) -> HistoryEvent | None:
    events = run.fetch_history_events(
        event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT, skip_archival=True
    )
    last = None
    async for event in events:
        last = event
    return last


async def _cancel_request(
    client: Client, run: WorkflowHandle[object, object]
) -> HistoryEvent | None:
    """The cancel request, looked for in the last thousand events (it is near the end)."""
    page = await client.workflow_service.get_workflow_execution_history_reverse(
        GetWorkflowExecutionHistoryReverseRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=run.id, run_id=run.run_id or ""),
            maximum_page_size=1000,
        )
    )
    requests = (
        event
        for event in page.history.events
        if event.HasField("workflow_execution_cancel_requested_event_attributes")
    )
    return next(requests, None)


# --- The records: one audit entry, then the record and its clocks ------------------------------


def _unsettled_record(incident_id: str) -> IncidentRecord | None:
    with Session(records_engine()) as s:
        record = s.get(IncidentRecord, incident_id)
        return None if record is None or record.status in SETTLED else record


def _settle(incident_id: str, ending: _Ending) -> Reconciled | None:
    """Append the entry (once per ended run) and mark the record; None if it settled meanwhile."""
    with Session(records_engine()) as s:
        record = s.get(IncidentRecord, incident_id)
        if record is None or record.status in SETTLED:
            return None  # closed by its last batch after all, or another pass got here first
        # One statement, one snapshot: the entry this run already has, and the last seq. (Two
        # reads could straddle a concurrent pass's write and put a second entry after its own.)
        ours = and_(col(AuditRow.action) == ENTRY_KIND, col(AuditRow.run_id) == ending.run_id)
        written, last_seq = s.exec(
            select(func.max(case((ours, AuditRow.seq))), func.max(AuditRow.seq)).where(
                AuditRow.incident_id == incident_id
            )
        ).one()
        seq = written if written is not None else max(record.last_seq, last_seq or -1) + 1
        entry = _entry(seq, record.status, workflow_id_for(incident_id), ending)
        batch = RecordBatch(
            incident_id=incident_id,
            workflow_id=workflow_id_for(incident_id),
            run_id=ending.run_id,
            playbook=record.playbook,
            playbook_hash=record.playbook_hash,
            entries=[entry],
        )
    if written is None:
        write_batch(batch)  # a concurrent pass writing the same seq makes this a no-op
    if not _mark(incident_id, ending, seq):
        return None
    with Session(records_engine()) as s:  # the entry as stored, whichever pass wrote it
        query = select(AuditRow).where(AuditRow.incident_id == incident_id)
        detail = opened(s.exec(query.where(AuditRow.seq == seq)).one()).detail
    return Reconciled(
        incident_id=incident_id,
        workflow_id=batch.workflow_id,
        run_id=ending.run_id,
        status=ending.status,
        temporal_status=ending.temporal_status,
        ended_at=ending.ended_at,
        actor=ending.actor,
        reason=ending.reason,
        seq=seq,
        detail=detail,
    )


def _mark(incident_id: str, ending: _Ending, seq: int) -> bool:
    """The record's status and its still-running SLA clocks; False if already settled.

    One conditional UPDATE decides it (the write lock on SQLite, a row lock on PostgreSQL), so of
    two passes marking at once exactly one sees its row change."""
    stopped = ending.ended_at or ending.detected_at
    with Session(records_engine()) as s:
        changed = s.exec(  # type: ignore[call-overload]
            update(IncidentRecord)
            .where(
                col(IncidentRecord.incident_id) == incident_id,
                col(IncidentRecord.status).not_in(SETTLED),
            )
            .values(
                status=ending.status,
                # older batches delivered late cannot undo it (the projection keeps the newest)
                last_seq=case(
                    (col(IncidentRecord.last_seq) > seq, IncidentRecord.last_seq), else_=seq
                ),
                updated_at=utc(ending.detected_at),
            )
        )
        if changed.rowcount != 1:
            return False
        clocks = s.exec(
            select(SlaOutcome).where(
                SlaOutcome.incident_id == incident_id, col(SlaOutcome.stopped_at).is_(None)
            )
        ).all()
        for clock in clocks:
            clock.stopped_at = stopped
            clock.paused_since = None
            clock.state = "stopped"
            if clock.outcome == "pending":
                clock.outcome = NOT_MET_OUTCOME
            s.add(clock)
        s.commit()
    return True


def _entry(seq: int, was: str, workflow_id: str, ending: _Ending) -> TimelineEntry:
    data = {
        "status": ending.status,
        "temporal_status": ending.temporal_status,
        "run_id": ending.run_id,
        "detected_at": _when(ending.detected_at),
        "was": was,
    }
    if ending.ended_at is not None:
        data["ended_at"] = _when(ending.ended_at)
    if ending.actor != SYSTEM_ACTOR:
        data["identity"] = ending.actor
    if ending.reason:
        data["reason"] = _one_line(ending.reason)
    return TimelineEntry(
        seq=seq,
        at=ending.ended_at or ending.detected_at,
        actor=_one_line(ending.actor),
        kind=ENTRY_KIND,
        detail=_detail(was, workflow_id, ending),
        data=data,
    )


def _detail(was: str, workflow_id: str, ending: _Ending) -> str:
    """One line: what happened, when, by whom, why."""
    run = ending.run_id[:8] if ending.run_id else "?"
    if ending.status == DELETED:
        what = (
            f"workflow {workflow_id} no longer exists in Temporal (deleted, or removed by "
            f"retention); found missing at {_when(ending.detected_at)}, last recorded run {run}"
        )
    else:
        verb = {"ended_unclosed": "completed"}.get(ending.status, ending.status.replace("_", " "))
        when = _when(ending.ended_at) if ending.ended_at else "an unknown time"
        what = f"workflow {workflow_id} (run {run}) {verb} at {when}"
        if ending.actor != SYSTEM_ACTOR:
            what += f" by {_one_line(ending.actor)}"
    if ending.reason:
        what += f"; reason: {_one_line(ending.reason)}"
    return f"{what}; the incident was still {was} and is now {ending.status}"


def _when(value: datetime) -> str:
    return utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(text: str) -> str:
    """Control characters (newlines included) become one space; long text is cut."""
    flat = _CONTROL.sub(" ", text).strip()
    return flat if len(flat) <= REASON_LIMIT else flat[: REASON_LIMIT - 1] + "…"
