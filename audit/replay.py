"""Replay incident histories with today's code and rebuild the human timeline from them alone.

A history proves what happened only if today's interpreter, fed the same events, makes the same
decisions: the temporalio ``Replayer`` checks that. A mismatch is reported with the incident, the
event id and a plain-language reason. The timeline is rebuilt from the events themselves: the start
input carries the playbook and its hash, every ``records.append`` activity input (or, run as a local
activity, its marker's result) carries timeline entries (who, what, when, which SLA), and
Update/signal events carry who decided what.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from connection import DATA_CONVERTER, decode_payloads
from records.archive import close_status, decode_start, history_sha256
from workflows.models import RecordBatch, TimelineEntry
from workflows.names import RECORDS_ACTIVITY, workflow_id_for

EXPORT_FORMAT = "critical-response.audit-export/1"
_CONVERTER = DATA_CONVERTER.payload_converter
LOCAL_ACTIVITY_MARKER = "core_local_activity"  # the SDK's marker for a local activity's result


@dataclass
class Loaded:
    """One run's history with where it came from and what its manifest promised."""

    incident_id: str
    history: WorkflowHistory
    source: str
    manifest: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] | None = None  # an export's signed audit rows (``audit/bundle.py``)


class ReplayFailure(BaseModel):
    incident_id: str
    workflow_id: str
    run_id: str
    event_id: int | None
    event_type: str | None
    reason: str
    detail: str
    # "tampered": the file was altered after export; "nondeterminism": today's code decides
    # differently from the recorded history
    kind: Literal["nondeterminism", "tampered"] = "nondeterminism"


class Message(BaseModel):
    """An Update or signal as the history recorded it: who asked the workflow to do what."""

    event_id: int
    at: datetime
    kind: str  # "update" or "signal"
    name: str
    payload: Any = None


class RunInfo(BaseModel):
    run_id: str
    status: str
    events: int
    started_at: datetime
    ended_at: datetime


class CaseFile(BaseModel):
    incident_id: str
    workflow_id: str
    playbook: str = ""
    playbook_version: int | None = None
    playbook_hash: str = ""
    summary: str = ""
    opened_by: str = ""
    severity_at_open: str = ""
    runs: list[RunInfo] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    failures: list[ReplayFailure] = Field(default_factory=list)


# --- Loading --------------------------------------------------------------------------------


def load_file(path: Path) -> list[Loaded]:
    """An ``audit export`` document, or a bare SDK/CLI history JSON (``{"events": [...]}``)."""
    document = json.loads(path.read_text())
    if "histories" in document:
        return load_document(document, str(path))
    history = WorkflowHistory.from_json(path.stem, document)
    incident = decode_start(history.events[0])
    if incident is None:
        return [Loaded(path.stem, history, str(path))]
    # A bare file names no workflow: an incident's is derived from its id, and replay needs the
    # right one (the archiver child a run starts is named after it).
    history = WorkflowHistory.from_json(workflow_id_for(incident.incident_id), document)
    return [Loaded(incident.incident_id, history, str(path))]


def load_document(document: dict[str, Any], source: str) -> list[Loaded]:
    """The runs of an ``audit export`` document, each with its manifest entry."""
    manifest = document.get("manifest", {})
    runs = {r.get("run_id"): r for r in manifest.get("runs", [])}
    loaded = []
    for item in document["histories"]:
        history = WorkflowHistory.from_json(item["workflow_id"], item["history"])
        run_manifest = runs.get(history.run_id, {})
        incident_id = manifest.get("incident_id", "")
        audit = document.get("audit")
        loaded.append(Loaded(incident_id, history, source, run_manifest, audit))
    return loaded


def integrity_failures(items: list[Loaded]) -> list[ReplayFailure]:
    """A history whose bytes differ from its manifest's sha256 was altered after export."""
    failures = []
    for item in items:
        expected = item.manifest.get("history_sha256")
        if expected and expected != history_sha256(item.history):
            failures.append(
                ReplayFailure(
                    incident_id=item.incident_id,
                    workflow_id=item.history.workflow_id,
                    run_id=item.history.run_id,
                    event_id=None,
                    event_type=None,
                    reason="the history does not match the sha256 in its manifest: "
                    "it was altered after export",
                    detail=f"manifest {expected}, file {history_sha256(item.history)}",
                    kind="tampered",
                )
            )
    return failures


# --- Replay and diagnosis -------------------------------------------------------------------

_EVENT = re.compile(r"HistoryEvent\(id: (\d+), (\w+)\)")
_MACHINE = re.compile(r"(\w[\w ]*?) machine does not handle this event")
_ACTIVITY_TYPE = re.compile(
    r"Activity type of scheduled event '([^']*)' does not match activity type of activity "
    r"command '([^']*)'"
)
_MACHINE_ACTIONS = {
    "Timer": "starts a timer",
    "Activity": "schedules an activity",
    "Child workflow": "starts a child workflow",
    "Complete workflow": "completes the workflow",
    "Fail workflow": "fails the workflow",
    "Continue as new workflow": "continues as new",
    "Update": "handles an Update",
}


def _human(event_type: str) -> str:
    """``ActivityTaskScheduled`` -> ``an activity task scheduled event``."""
    words = re.sub(r"(?<!^)([A-Z])", r" \1", event_type).lower()
    return f"{'an' if words[:1] in 'aeiou' else 'a'} {words} event"


def _reason(message: str, what: str) -> str:
    if m := _ACTIVITY_TYPE.search(message):
        return f"the history ran activity {m.group(1)!r} here, but today's code runs {m.group(2)!r}"
    if m := _MACHINE.search(message):
        action = _MACHINE_ACTIONS.get(m.group(1), f"issues a {m.group(1).lower()} command")
        return f"the history has {what} here, but today's code {action}"
    if "No command scheduled for event" in message:
        return (
            f"the history has {what} here that today's code does not produce at this point "
            "(a step, timer or activity was added, removed or reordered)"
        )
    if "no corresponding change command" in message:
        return "a workflow.patched() marker was removed while histories still depend on it"
    return (
        "today's code makes a different decision than the one recorded "
        "(guard interpreter changes with workflow.patched())"
    )


def explain(message: str) -> tuple[int | None, str | None, str]:
    """(event id, event type, plain-language reason) from a core non-determinism message."""
    found = _EVENT.search(message)
    event_id, event_type = (int(found.group(1)), found.group(2)) if found else (None, None)
    return event_id, event_type, _reason(message, _human(event_type) if event_type else "an event")


_T = EventType
COMMAND_EVENTS = frozenset(
    {
        _T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, _T.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED,
        _T.EVENT_TYPE_TIMER_STARTED, _T.EVENT_TYPE_TIMER_CANCELED, _T.EVENT_TYPE_MARKER_RECORDED,
        _T.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
        _T.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
        _T.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
        _T.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES, _T.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
        _T.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        _T.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
        _T.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, _T.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        _T.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    }
)  # fmt: skip


async def _failing_task(replayer: Replayer, history: WorkflowHistory) -> tuple[int, int]:
    """Event index range holding the commands of the first workflow task that does not replay.

    A prefix ending at a task's start checks the commands of every task before it, so the
    smallest failing prefix (found by bisection) brackets the guilty task's command events.
    """
    started = _T.EVENT_TYPE_WORKFLOW_TASK_STARTED
    starts = [i for i, e in enumerate(history.events) if e.event_type == started]
    low, high, failing = 0, len(starts) - 1, len(starts)
    while low <= high:
        mid = (low + high) // 2
        prefix = WorkflowHistory(history.workflow_id, history.events[: starts[mid] + 1])
        result = await replayer.replay_workflow(prefix, raise_on_replay_failure=False)
        if result.replay_failure is None:
            low = mid + 1
        else:
            failing, high = mid, mid - 1
    first = starts[failing - 1] if failing > 0 else 0
    last = starts[failing] if failing < len(starts) else len(history.events)
    return first, last


async def _first_failing_event(
    replayer: Replayer, history: WorkflowHistory, activity_type: str | None
) -> int | None:
    """When core names no event: the first command event of the task that fails (the first
    scheduling of ``activity_type`` when core said which activity the history has there)."""
    first, last = await _failing_task(replayer, history)
    for event in history.events[first:last]:
        if event.event_type not in COMMAND_EVENTS:
            continue
        scheduled = event.activity_task_scheduled_event_attributes.activity_type.name
        if activity_type is None or scheduled == activity_type:
            return event.event_id
    return None


def make_replayer(workflows: list[type] | None = None) -> Replayer:
    if workflows is None:
        from workflows.archive import ArchiveIncidentWorkflow
        from workflows.daily_report import DailyReportWorkflow
        from workflows.incident import IncidentWorkflow

        workflows = [IncidentWorkflow, ArchiveIncidentWorkflow, DailyReportWorkflow]
    return Replayer(workflows=workflows, data_converter=DATA_CONVERTER)


async def replay(items: list[Loaded], workflows: list[type] | None = None) -> list[ReplayFailure]:
    """Replay every history with today's code; one failure per history that does not replay (a
    history altered after export is reported as such, and not replayed)."""
    replayer = make_replayer(workflows)
    failures = integrity_failures(items)
    altered = {(f.workflow_id, f.run_id) for f in failures}
    for item in items:
        if (item.history.workflow_id, item.history.run_id) in altered:
            continue
        result = await replayer.replay_workflow(item.history, raise_on_replay_failure=False)
        if result.replay_failure is None:
            continue
        message = str(result.replay_failure)
        event_id, event_type, reason = explain(message)
        if event_id is None:
            expected = _ACTIVITY_TYPE.search(message)
            event_id = await _first_failing_event(
                replayer, item.history, expected.group(1) if expected else None
            )
        failures.append(
            ReplayFailure(
                incident_id=item.incident_id,
                workflow_id=item.history.workflow_id,
                run_id=item.history.run_id,
                event_id=event_id,
                event_type=event_type,
                reason=reason,
                detail=message,
            )
        )
    return failures


# --- Timeline from the events alone -----------------------------------------------------------


def _decode(payloads: Any) -> list[Any]:
    return _CONVERTER.from_payloads(decode_payloads(payloads)) if payloads else []


def _message(event: HistoryEvent) -> Message | None:
    at = event.event_time.ToDatetime(tzinfo=UTC)
    if event.HasField("workflow_execution_update_accepted_event_attributes"):
        request = event.workflow_execution_update_accepted_event_attributes.accepted_request
        args = _decode(request.input.args.payloads)
        payload = args[0] if len(args) == 1 else args
        return Message(event_id=event.event_id, at=at, kind="update", name=request.input.name,
                       payload=payload)  # fmt: skip
    if event.HasField("workflow_execution_signaled_event_attributes"):
        attrs = event.workflow_execution_signaled_event_attributes
        args = _decode(attrs.input.payloads)
        payload = args[0] if len(args) == 1 else args
        return Message(event_id=event.event_id, at=at, kind="signal", name=attrs.signal_name,
                       payload=payload)  # fmt: skip
    return None


def _entries(event: HistoryEvent) -> list[TimelineEntry]:
    """The timeline entries an event carries: a ``records.append`` activity's input, or (run as a
    local activity, in lean incidents) the entries its marker's result echoes."""
    if event.HasField("activity_task_scheduled_event_attributes"):
        attrs = event.activity_task_scheduled_event_attributes
        if attrs.activity_type.name != RECORDS_ACTIVITY:
            return []
        payloads = decode_payloads(attrs.input.payloads)
        return list(_CONVERTER.from_payloads(payloads, [RecordBatch])[0].entries)
    if event.HasField("marker_recorded_event_attributes"):
        marker = event.marker_recorded_event_attributes
        if marker.marker_name != LOCAL_ACTIVITY_MARKER or "result" not in marker.details:
            return []
        data = _decode(marker.details["data"].payloads)
        if not data or data[0].get("activity_type") != RECORDS_ACTIVITY:
            return []
        result = _decode(marker.details["result"].payloads)
        entries = result[0].get("entries", []) if result and isinstance(result[0], dict) else []
        return [TimelineEntry.model_validate(e) for e in entries]
    return []


def _run_info(history: WorkflowHistory) -> RunInfo:
    first, last = history.events[0], history.events[-1]
    return RunInfo(
        run_id=history.run_id,
        status=close_status(history),
        events=len(history.events),
        started_at=first.event_time.ToDatetime(tzinfo=UTC),
        ended_at=last.event_time.ToDatetime(tzinfo=UTC),
    )


def rebuild(incident_id: str, histories: list[WorkflowHistory]) -> CaseFile:
    """The case file of one incident from its runs' histories (oldest run first)."""
    case = CaseFile(incident_id=incident_id, workflow_id=histories[0].workflow_id)
    start = decode_start(histories[0].events[0])
    if start is not None:
        case.incident_id = start.incident_id
        case.playbook, case.playbook_version = start.playbook.name, start.playbook.version
        case.playbook_hash, case.summary = start.playbook_hash, start.summary
        case.opened_by, case.severity_at_open = start.opened_by, start.severity
    entries: dict[int, TimelineEntry] = {}
    for history in histories:
        case.runs.append(_run_info(history))
        for event in history.events:
            if found := _entries(event):
                entries.update({e.seq: e for e in found})
            elif (message := _message(event)) is not None:
                case.messages.append(message)
    case.timeline = [entries[seq] for seq in sorted(entries)]
    return case


def group_by_incident(items: list[Loaded]) -> dict[str, list[Loaded]]:
    """Runs of the same workflow together, oldest first (by their start time)."""
    groups: dict[str, list[Loaded]] = {}
    for item in items:
        groups.setdefault(item.history.workflow_id, []).append(item)
    for runs in groups.values():
        runs.sort(key=lambda i: i.history.events[0].event_time.ToDatetime())
    return groups
