"""One incident as its page shows it, gathered through the API's own reads: the status and the
timeline behind the API's visibility check (``api.routes.status``), the playbook from the
incident's pinned snapshot, its clocks with the statutory ones marked, the three nearest
deadlines, and the links to its Salesforce Case and to the Temporal Web UI.

An incident Temporal no longer has (retention passed) is read from the records and the archive,
after the same visibility rule (``api.authz.may_see``) on its recorded playbook.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import Request

from api import authz, routes
from api.errors import NotVisible
from console import board, graph
from incidents import actions
from playbooks.schema import Playbook, Sla
from records.archive import archived_runs, decode_start, history_of
from records.timeline import entries_before
from workflows.incident import IncidentWorkflow
from workflows.models import ACK_CLOCK, RESOLVE_CLOCK, ClockView, IncidentStatus, TimelineEntry
from workflows.names import workflow_id_for

RUNNING_STATES = ("on_track", "warned", "breached")
CLOCK_ICONS = {"on_track": "\u25f7", "warned": "\u26a0", "breached": "\u2716", "paused": "\u23f8",
               "met": "\u2713", "met_late": "\u2713", "stopped": "\u25a0",
               "not_met": "\u2013"}  # fmt: skip
EVERYTHING = 10**9
CASE_OPERATION = "salesforce.upsert_case"
_LOCKS: dict[str, asyncio.Lock] = {}
_SNAPSHOTS: dict[tuple[str, str], Playbook] = {}


@dataclass
class Clock:
    """A clock as the page shows it: its state in words and icon, and whether it is statutory."""

    view: ClockView
    statutory: bool
    icon: str

    @property
    def ticking(self) -> bool:
        return self.view.state in RUNNING_STATES and self.view.due_at is not None


@dataclass
class IncidentPage:
    incident_id: str
    live: bool  # False: read from the records and the archive (Temporal no longer has it)
    status: IncidentStatus | None
    row: board.Row | None
    timeline: list[TimelineEntry]
    playbook: Playbook | None
    clocks: list[Clock] = field(default_factory=list)
    nearest: list[Clock] = field(default_factory=list)
    graph_svg: str = ""
    graph_outline: str = ""
    case_url: str | None = None
    temporal_url: str = ""
    events: list[str] = field(default_factory=list)


def sla_of(playbook: Playbook | None, clock: str) -> Sla | None:
    if playbook is None:
        return None
    if clock == ACK_CLOCK:
        return playbook.sla.acknowledge
    if clock == RESOLVE_CLOCK:
        return playbook.sla.resolve
    step = next((s for s in playbook.iter_steps() if s.id == clock), None)
    return step.sla if step is not None else None


def clocks_of(status: IncidentStatus, playbook: Playbook | None) -> list[Clock]:
    out = []
    for view in status.clocks:
        sla = sla_of(playbook, view.name)
        out.append(Clock(view, bool(sla and sla.legal), CLOCK_ICONS.get(view.state, "")))
    return out


def _case_url(
    incident_id: str, playbook: Playbook | None, timeline: list[TimelineEntry]
) -> str | None:
    """The console's link to the incident's Salesforce Case, once a step made it (the Case is
    looked up by its ``Incident_Id__c`` when the link is followed: ``console/case.py``)."""
    if playbook is None:
        return None
    upserts = {s.id for s in playbook.iter_steps() if getattr(s, "activity", "") == CASE_OPERATION}
    if not any(e.kind == "step_completed" and e.step in upserts for e in timeline):
        return None
    return f"/console/incidents/{incident_id}/case"


async def _snapshot(request: Request, incident_id: str) -> Playbook | None:
    try:
        inp = await actions.handle(routes.client_of(request), incident_id).query(
            IncidentWorkflow.continuation
        )
    except Exception:  # noqa: BLE001 - the page still shows everything else
        return None
    return inp.playbook  # type: ignore[no-any-return]


def _archived_snapshot(incident_id: str) -> Playbook | None:
    for run in archived_runs(incident_id):
        start = decode_start(history_of(run).events[0])
        if start is not None:
            return start.playbook
    return None


async def _from_records(request: Request, who: authz.Caller, incident_id: str) -> IncidentPage:
    url = request.app.state.settings.effective_database_url
    row = await asyncio.to_thread(board.record_row, url, incident_id)
    if row is None:
        raise NotVisible(f"no incident {incident_id}", hidden=False)
    if not authz.may_see(who, row.playbook):
        raise NotVisible(f"no incident {incident_id}")
    timeline = await asyncio.to_thread(entries_before, incident_id, EVERYTHING, url)
    playbook = await asyncio.to_thread(_archived_snapshot, incident_id)
    return IncidentPage(incident_id, False, None, row, timeline, playbook)


def _one_at_a_time(incident_id: str) -> asyncio.Lock:
    """The lock serialising this process's queries to one incident: without a workflow cache
    every query replays the history, and a dozen at once on one run (every open page refreshing
    on the same change) time out, where one after another each takes a tenth of a second."""
    lock = _LOCKS.get(incident_id)
    if lock is None:
        if len(_LOCKS) > 1024:
            _LOCKS.clear()  # a lock held now stays referenced by its holder
        lock = _LOCKS[incident_id] = asyncio.Lock()
    return lock


async def _snapshot_once(request: Request, status: IncidentStatus) -> Playbook | None:
    """The pinned playbook, queried once per incident and playbook hash (it never changes)."""
    key = (status.incident_id, status.playbook_hash)
    if key not in _SNAPSHOTS:
        found = await _snapshot(request, status.incident_id)
        if found is None:
            return None
        if len(_SNAPSHOTS) > 256:
            _SNAPSHOTS.clear()
        _SNAPSHOTS[key] = found
    return _SNAPSHOTS[key]


async def gather(request: Request, who: authz.Caller, incident_id: str) -> IncidentPage:
    """Everything the incident page shows (NotVisible, Forbidden ... as the API raises them)."""
    try:
        async with _one_at_a_time(incident_id):
            status: IncidentStatus = await routes.status(incident_id, request, who)
            timeline = await actions.timeline(routes.client_of(request), incident_id)
            playbook = await _snapshot_once(request, status)
    except NotVisible as err:
        if err.hidden:
            raise
        view = await _from_records(request, who, incident_id)
    else:
        view = IncidentPage(incident_id, True, status, None, timeline, playbook)
        view.clocks = clocks_of(status, playbook)
        ticking = [c for c in view.clocks if c.ticking]
        view.nearest = sorted(ticking, key=lambda c: c.view.due_at or datetime.max)[:3]
    settings = request.app.state.settings
    ui = (settings.temporal_ui_url or f"http://127.0.0.1:{settings.ui_port}").rstrip("/")
    view.temporal_url = (f"{ui}/namespaces/{settings.temporal_namespace}/workflows/"
                         f"{workflow_id_for(incident_id)}")  # fmt: skip
    view.case_url = _case_url(incident_id, view.playbook, view.timeline)
    if view.playbook is not None:
        states = graph.step_states(view.status, view.timeline)
        nodes = graph.tree(view.playbook, states)
        view.graph_svg = graph.svg(nodes, f"Playbook {view.playbook.name} v{view.playbook.version}")
        view.graph_outline = graph.outline(nodes)
        view.events = sorted(view.playbook.events)
    return view


def describe(result: Any) -> str:
    """A successful action's answer in one line (the entry the incident recorded, or the
    decision's outcome)."""
    if isinstance(result, TimelineEntry):
        text = f"{result.kind.replace('_', ' ')} recorded (entry {result.seq})"
        return f"{text}: {result.detail}" if result.detail else text
    outcome = getattr(result, "outcome", None)
    if outcome is not None:
        return f"decision on {result.step_id}: {str(outcome).replace('_', ' ')}"
    if isinstance(result, dict):
        return f"incident {result.get('incident_id', '')} reopened"
    return "done"
