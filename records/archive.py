"""Archived histories: every run of an incident's continue-as-new chain, kept in the records DB.

Used by the ``records.archive_history`` activity (at close) and by ``incident audit export``; the
auditors' tools read these rows back once the namespace's retention has deleted the history.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from connection import DATA_CONVERTER, decode_payloads
from records.tables import ArchivedRun, records_engine
from workflows.archive import ArchiveRequest, ArchiveResult
from workflows.models import IncidentInput

ARCHIVE_FORMAT = "critical-response.history-archive/1"
_CLOSE_ATTRS = {
    "workflow_execution_completed_event_attributes": "completed",
    "workflow_execution_failed_event_attributes": "failed",
    "workflow_execution_timed_out_event_attributes": "timed_out",
    "workflow_execution_canceled_event_attributes": "canceled",
    "workflow_execution_terminated_event_attributes": "terminated",
    "workflow_execution_continued_as_new_event_attributes": "continued_as_new",
}


@dataclass
class Chain:
    """Runs of one workflow id, oldest first; ``known`` were already archived, not fetched."""

    histories: list[WorkflowHistory] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def close_status(history: WorkflowHistory) -> str:
    """How the run ended (``running`` if its last event is not a close event)."""
    if not history.events:
        return "running"
    return _CLOSE_ATTRS.get(history.events[-1].WhichOneof("attributes") or "", "running")


def previous_run_id(history: WorkflowHistory) -> str | None:
    attrs = history.events[0].workflow_execution_started_event_attributes
    return attrs.continued_execution_run_id or None


def next_run_id(history: WorkflowHistory) -> str | None:
    last = history.events[-1]
    if last.HasField("workflow_execution_continued_as_new_event_attributes"):
        return last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return None


def decode_start(event: HistoryEvent) -> IncidentInput | None:
    """The incident input of a start event, or None for another workflow type or an old shape."""
    attrs = event.workflow_execution_started_event_attributes
    if not attrs.input.payloads:
        return None
    try:
        values = DATA_CONVERTER.payload_converter.from_payloads(
            decode_payloads(attrs.input.payloads), [IncidentInput]
        )
    except Exception:  # noqa: BLE001 - a foreign start input simply has no playbook to show
        return None
    return values[0] if values and isinstance(values[0], IncidentInput) else None


async def fetch_run(client: Client, workflow_id: str, run_id: str | None) -> WorkflowHistory | None:
    """One run's history, or None once Temporal no longer has it (retention, wrong id)."""
    try:
        return await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def fetch_chain(
    client: Client, workflow_id: str, run_id: str | None, known: dict[str, str | None]
) -> Chain:
    """Walk back from ``run_id`` (latest when None) and forward over closed successors.

    ``known`` maps already-archived run ids to their predecessor so they are not fetched again.
    """
    chain = Chain()
    newest = await fetch_run(client, workflow_id, run_id)
    if newest is None:
        raise LookupError(f"Temporal has no history for {workflow_id} {run_id or ''}".strip())
    chain.histories.append(newest)
    prev = previous_run_id(newest)
    while prev:
        if prev in known:
            chain.known.insert(0, prev)
            prev = known[prev]
            continue
        history = await fetch_run(client, workflow_id, prev)
        if history is None:
            chain.missing.insert(0, prev)
            break
        chain.histories.insert(0, history)
        prev = previous_run_id(history)
    nxt = next_run_id(newest)
    while nxt:
        history = await fetch_run(client, workflow_id, nxt)
        if history is None or close_status(history) == "running":
            break  # the successor archives itself when it closes
        chain.histories.append(history)
        nxt = next_run_id(history)
    return chain


def history_sha256(history: WorkflowHistory) -> str:
    """SHA-256 of the events' deterministic protobuf encoding: stable across JSON round trips
    (the JSON text itself is not: map keys may come out in any order)."""
    events = History(events=history.events).SerializeToString(deterministic=True)
    return hashlib.sha256(events).hexdigest()


def run_manifest(
    incident_id: str, history: WorkflowHistory, exported_at: datetime
) -> dict[str, Any]:
    """What an auditor needs to trust a history file: whose, which playbook, which bytes."""
    start = history.events[0]
    attrs = start.workflow_execution_started_event_attributes
    incident = decode_start(start)
    return {
        "format": ARCHIVE_FORMAT,
        "incident_id": incident_id,
        "workflow_id": history.workflow_id,
        "run_id": history.run_id,
        "workflow_type": attrs.workflow_type.name,
        "first_execution_run_id": attrs.first_execution_run_id,
        "previous_run_id": previous_run_id(history),
        "next_run_id": next_run_id(history),
        "started_at": start.event_time.ToDatetime(tzinfo=UTC).isoformat(),
        "close_status": close_status(history),
        "playbook": incident.playbook.name if incident else "",
        "playbook_version": incident.playbook.version if incident else None,
        "playbook_hash": incident.playbook_hash if incident else "",
        "event_count": len(history.events),
        "history_sha256": history_sha256(history),
        "exported_at": exported_at.isoformat(),
    }


def archived_runs(incident_id: str | None = None) -> list[ArchivedRun]:
    """Archived runs (of one incident, or all), grouped by workflow and oldest run first."""
    with Session(records_engine()) as s:
        query = select(ArchivedRun)
        if incident_id is not None:
            query = query.where(ArchivedRun.incident_id == incident_id)
        rows = list(s.exec(query).all())
    return sorted(rows, key=lambda r: (r.workflow_id, _started(r)))


def _started(row: ArchivedRun) -> str:
    return str(json.loads(row.manifest_json).get("started_at", ""))


def history_of(row: ArchivedRun) -> WorkflowHistory:
    return WorkflowHistory.from_json(row.workflow_id, row.history_json)


def store(incident_id: str, histories: list[WorkflowHistory], missing: list[str]) -> list[str]:
    """Insert each closed run once (keyed by workflow and run id); returns the run ids stored."""
    now = datetime.now(UTC)
    stored: list[str] = []
    with Session(records_engine()) as s:
        for history in histories:
            if s.get(ArchivedRun, (history.workflow_id, history.run_id)) is not None:
                continue
            manifest = run_manifest(incident_id, history, now)
            manifest["missing_previous_runs"] = missing
            s.add(
                ArchivedRun(
                    workflow_id=history.workflow_id,
                    run_id=history.run_id,
                    incident_id=incident_id,
                    playbook=manifest["playbook"],
                    playbook_hash=manifest["playbook_hash"],
                    close_status=manifest["close_status"],
                    event_count=manifest["event_count"],
                    history_sha256=manifest["history_sha256"],
                    exported_at=now,
                    manifest_json=json.dumps(manifest, sort_keys=True),
                    history_json=history.to_json(),
                )
            )
            stored.append(history.run_id)
        s.commit()
    return stored


def _known_runs(workflow_id: str) -> dict[str, str | None]:
    with Session(records_engine()) as s:
        rows = s.exec(select(ArchivedRun).where(ArchivedRun.workflow_id == workflow_id)).all()
    return {r.run_id: json.loads(r.manifest_json).get("previous_run_id") for r in rows}


async def _wait_until_closed(
    handle: Any, until: Callable[[], Awaitable[None]], seconds: float = 60
) -> None:
    """The archiver starts just before its parent run ends: wait for that end (a long poll)
    rather than fail and log a retry for what is the normal case. ``until`` (the worker's
    shutdown) ends the wait early: a worker holds its shutdown for a local activity in flight,
    and a stopping worker should hand the archive to the next one, not hold it a minute."""
    waits = {
        asyncio.ensure_future(handle.result(follow_runs=False)),
        asyncio.ensure_future(until()),
    }
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        # timeout, shutdown, or the run failed/continued: describe decides
        await asyncio.gather(*waits, return_exceptions=True)


async def archive_chain(
    client: Client, request: ArchiveRequest, until: Callable[[], Awaitable[None]]
) -> ArchiveResult:
    """Wait for the run to close (retrying if it stays open; ``until``, the worker's shutdown,
    ends the wait early), then store it and its predecessors."""
    handle = client.get_workflow_handle(request.workflow_id, run_id=request.run_id)
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise ApplicationError(
                f"no workflow {request.workflow_id} run {request.run_id}: {err.message}",
                type="IncidentNotFound",
                non_retryable=True,
            ) from err
        raise
    if description.status == WorkflowExecutionStatus.RUNNING:
        await _wait_until_closed(handle, until)
        description = await handle.describe()
    if description.status == WorkflowExecutionStatus.RUNNING:
        raise ApplicationError(
            f"{request.workflow_id} run {request.run_id} is still running; archiving after close",
            type="IncidentStillRunning",
        )
    known = _known_runs(request.workflow_id)
    chain = await fetch_chain(client, request.workflow_id, request.run_id, known)
    closed = [h for h in chain.histories if close_status(h) != "running"]
    stored = store(request.incident_id, closed, chain.missing)
    return ArchiveResult(
        incident_id=request.incident_id,
        archived_runs=stored,
        already_archived=[h.run_id for h in closed if h.run_id not in stored] + chain.known,
        missing_runs=chain.missing,
    )
