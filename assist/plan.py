"""What-if plans: a playbook run on the time-skipping test server with every decision taken at
its deadline, read back as the SLA plan (when each step would start, warn and breach, which
escalations would fire, and the latest moment each statutory clock allows).

The real ``IncidentWorkflow`` runs the playbook (every integration answers at once, through
``stand_in``); ``drive`` plays its people: the commander acknowledges, approvers decide and outside
events arrive one second before the clock of their step is due (at once when the step has none),
timers fire in skipped time. Times are seconds of wall time after the incident opened. The server
and its worker come from the caller (``stack/plan.py``, the tests): no network, nothing recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.common import RawValue

from playbooks.loader import LoadedPlaybook
from playbooks.schema import Playbook, Sla
from workflows.incident import IncidentWorkflow
from workflows.models import (
    ActionResult,
    ApprovalRequest,
    ClockView,
    CommanderRequest,
    ExternalEvent,
    IncidentInput,
    IncidentStatus,
    StepRequest,
)
from workflows.names import SIGNAL_EVENT, workflow_id_for

COMMANDER, APPROVER, SECOND = "plan-commander", "plan-approver", "plan-second"
STOPPED = ("met", "met_late", "stopped", "not_met")
MARGIN = timedelta(seconds=1)  # a decision lands this long before its clock is due
MAX_ROUNDS = 300
FAR_DATE = timedelta(days=30)  # a date field nobody gave (a return date, an NDO's expiry)
NOW_FIELDS = ("aware", "received")  # ... unless its name says it is a moment already past


@activity.defn(dynamic=True)
async def stand_in(args: Sequence[RawValue]) -> ActionResult:
    """Every integration, the records and the roster answer at once: the plan is about time."""
    return ActionResult(detail=f"{activity.info().activity_type} ok (plan)")


@dataclass
class ClockPlan:
    """One SLA clock in the plan (seconds after the incident opened)."""

    name: str
    legal: bool
    started: float
    warn: float | None
    due: float | None
    stopped: float | None
    warned: float | None
    breached: float | None
    escalations: list[str] = field(default_factory=list)  # what fired at its breach
    on_breach: list[str] = field(default_factory=list)  # what would fire, were it breached


@dataclass
class Plan:
    playbook: str
    version: int
    fields: dict[str, str]
    steps: list[dict[str, Any]]  # step, kind, started, finished, outcome
    clocks: list[ClockPlan]
    timers: list[dict[str, Any]]  # step, fires
    end: str  # playbook_complete / playbook_halted / still running
    wall_seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"playbook": self.playbook, "version": self.version, "fields": self.fields,
                "end": self.end, "steps": self.steps, "timers": self.timers,
                "clocks": [c.__dict__ for c in self.clocks],
                "wall_seconds": round(self.wall_seconds, 3)}  # fmt: skip


def placeholder_fields(pb: Playbook, given: dict[str, str], opened: datetime) -> dict[str, str]:
    """Every declared field: the value given, else one of its type (a date 30 days on, or the
    opening moment for a field that names a moment past, such as ``aware_at``)."""
    out = {}
    for name, spec in pb.fields.items():
        if name in given:
            out[name] = given[name]
        elif spec.type == "choice" and spec.choices:
            out[name] = spec.choices[0]
        elif spec.type == "datetime":
            at = opened if any(w in name for w in NOW_FIELDS) else opened + FAR_DATE
            out[name] = at.isoformat(timespec="seconds")
        else:
            out[name] = {"email": "plan@example.org", "phone": "+15550000000", "number": "1",
                         "id": "plan-1"}.get(spec.type, "plan")  # fmt: skip
    return out | {k: v for k, v in given.items() if k not in out}


def _slas(pb: Playbook) -> dict[str, Sla]:
    found = {s.id: s.sla for s in pb.iter_steps() if s.sla is not None}
    if pb.sla.acknowledge:
        found["incident.acknowledge"] = pb.sla.acknowledge
    if pb.sla.resolve:
        found["incident.resolve"] = pb.sla.resolve
    return found


def parents(pb: Playbook) -> dict[str, str]:
    """Step id -> the id of the branch or parallel step it is nested in."""
    out: dict[str, str] = {}

    def walk(steps: Sequence[Any], parent: str | None) -> None:
        for step in steps:
            if parent is not None:
                out[step.id] = parent
            for case in getattr(step, "cases", []) or []:
                walk(case.steps, step.id)
            for branch in getattr(step, "branches", []) or []:
                walk(branch.steps, step.id)

    walk(pb.steps, None)
    return out


def _deadline(status: IncidentStatus, step: str, up: dict[str, str]) -> datetime:
    """When a person acting on ``step`` acts: just before the clock of the step (or of the step
    it is nested in) is due; at once when there is none, or it is past."""
    views = {c.name: c for c in status.clocks}
    name: str | None = step
    while name is not None and name not in views:
        name = up.get(name)
    view = views.get(name) if name is not None else None
    if view is None or view.due_at is None or view.state in ("breached", "met", "met_late"):
        return status.as_of
    return max(status.as_of, view.due_at - MARGIN)


async def _act(handle: WorkflowHandle[Any, Any], status: IncidentStatus, pb: Playbook,
               signalled: set[str]) -> list[tuple[datetime, Callable[[], Awaitable[Any]]]]:  # fmt: skip
    """What people will do next, and when."""
    todo: list[tuple[datetime, Callable[[], Awaitable[Any]]]] = []
    steps = {s.id: s for s in pb.iter_steps()}
    up = parents(pb)
    if status.acknowledged_at is None:
        ack = CommanderRequest(actor=COMMANDER, role="ic", reason="acknowledged (plan)")
        todo.append((_deadline(status, "incident.acknowledge", up),
                     lambda: handle.execute_update(IncidentWorkflow.acknowledge, ack)))  # fmt: skip
    for pending in status.pending_approvals:
        todo.append((_deadline(status, pending.step_id, up), _decider(handle, pending)))
    for st in status.active_steps:
        step = steps.get(st.step_id)
        if step is not None and step.kind == "wait_for" and st.step_id not in signalled:
            event = ExternalEvent(name=step.event, actor=COMMANDER)  # type: ignore[union-attr]

            async def send(event: ExternalEvent = event, step_id: str = st.step_id) -> None:
                signalled.add(step_id)
                await handle.signal(SIGNAL_EVENT, event)

            todo.append((_deadline(status, st.step_id, up), send))
    for st in status.failed_steps:  # never with the stand-ins; a plan skips rather than stalls
        skip = StepRequest(step_id=st.step_id, actor=COMMANDER, reason="skipped (plan)")
        todo.append((status.as_of, lambda skip=skip: handle.execute_update(  # type: ignore[misc]
            IncidentWorkflow.skip_step, skip)))  # fmt: skip
    return todo


def _decider(handle: WorkflowHandle[Any, Any], pending: Any) -> Callable[[], Awaitable[Any]]:
    async def decide() -> None:
        first = ApprovalRequest(step_id=pending.step_id, actor=APPROVER, role=pending.roles[0],
                                reason="approved (plan)")  # fmt: skip
        result = await handle.execute_update(IncidentWorkflow.approve, first)
        if result.outcome == "awaiting_second_approver" and pending.second_roles:
            second = first.model_copy(update={"actor": SECOND, "role": pending.second_roles[0]})
            await handle.execute_update(IncidentWorkflow.approve, second)

    return decide


Sleep = Callable[[timedelta], Awaitable[None]]
Now = Callable[[], Awaitable[datetime]]


async def _settled(handle: WorkflowHandle[Any, Any], now: Now) -> IncidentStatus:
    """The status once the incident has stopped moving at this instant (its tasks have run: a
    step just started asks for its approval a moment later), counted to the server's time."""
    last: tuple[Any, ...] | None = None
    for _ in range(100):
        status: IncidentStatus = await handle.query(IncidentWorkflow.status, await now())
        shape = (status.walk, status.acknowledged_at,
                 tuple(s.step_id for s in status.active_steps),
                 tuple((a.step_id, len(a.decisions)) for a in status.pending_approvals),
                 tuple(s.step_id for s in status.failed_steps))  # fmt: skip
        if shape == last:
            return status
        last = shape
        await asyncio.sleep(0.03)
    return status


async def drive(handle: WorkflowHandle[Any, Any], pb: Playbook, sleep: Sleep, now: Now,
                seen: dict[str, ClockView] | None = None) -> str:  # fmt: skip
    """Play the incident's people until the walk ends; returns how it ended. ``seen`` keeps
    each clock's last projected instants while it ran (a business clock's deadline in wall
    time is known only then)."""
    signalled: set[str] = set()
    seen = {} if seen is None else seen
    for _ in range(MAX_ROUNDS):
        status = await _settled(handle, now)
        seen.update({c.name: c for c in status.clocks if c.state not in STOPPED})
        if status.walk != "running":
            return "playbook_complete" if status.walk == "complete" else "playbook_halted"
        todo = await _act(handle, status, pb, signalled)
        wakes = [at for at, _ in todo]
        wakes += [s.timer_fires_at + MARGIN for s in status.active_steps if s.timer_fires_at]
        if not wakes:
            await sleep(timedelta(minutes=30))  # a breach, a wait's timeout: let time pass
            continue
        first = min(wakes)
        if first > status.as_of:
            await sleep(first - status.as_of)
            continue  # the world may have moved (a breach, a timer): look again
        for at, action in todo:
            if at <= status.as_of:
                await action()
    return "still running"


def _seconds(at: datetime | None, opened: datetime) -> float | None:
    """Seconds after ``opened``, to the second (the server's clock and the workflow's differ by
    a few milliseconds: a clock anchored at the opening starts at 0, not -0.004)."""
    return None if at is None else float(round((at - opened).total_seconds())) + 0.0


async def plan(client: Client, task_queue: str, lp: LoadedPlaybook, sleep: Sleep, now: Now,
               given: dict[str, str] | None = None, severity: str | None = None) -> Plan:  # fmt: skip
    """Run ``lp`` to the end of its walk on a worker already polling ``task_queue``."""
    pb = lp.playbook
    start = await now()
    fields = placeholder_fields(pb, given or {}, start)
    inp = IncidentInput(incident_id=f"plan-{pb.name}-{start:%Y%m%d%H%M%S%f}", playbook=pb,
                        playbook_hash=lp.content_hash, fields=fields, opened_by=COMMANDER,
                        severity=severity or pb.default_severity,  # type: ignore[arg-type]
                        summary=f"what-if plan of {pb.name}")  # fmt: skip
    handle = await client.start_workflow(IncidentWorkflow.run, inp,
                                         id=workflow_id_for(inp.incident_id),
                                         task_queue=task_queue)  # fmt: skip
    try:
        seen: dict[str, ClockView] = {}
        end = await drive(handle, pb, sleep, now, seen)
        last: IncidentInput = await handle.query(IncidentWorkflow.continuation)
        timeline = await handle.query(IncidentWorkflow.timeline)
    finally:
        await handle.terminate("what-if plan done")
    assert last.state is not None
    opened = last.state.opened_at
    slas = _slas(pb)
    fired: dict[str, list[str]] = {}
    for e in timeline:
        if e.kind == "escalation" and e.step:
            fired.setdefault(e.step, []).append(e.detail)
    clocks = []
    for c in sorted(last.state.clocks.values(), key=lambda c: (c.started_at, c.name)):
        view = seen.get(c.name)
        due = view.due_at if view and view.due_at else c.due_at or c.started_at + c.due
        warn = view.warn_at if view else None
        if warn is None and c.warn_at is not None and c.kind == "wall":
            warn = c.started_at + c.warn_at
        clocks.append(ClockPlan(
            name=c.name, legal=bool(slas.get(c.name) and slas[c.name].legal),
            started=_seconds(c.started_at, opened) or 0.0, warn=_seconds(warn, opened),
            due=_seconds(due, opened), stopped=_seconds(c.stopped_at, opened),
            warned=_seconds(c.warned_at, opened), breached=_seconds(c.breached_at, opened),
            escalations=fired.get(c.name, []),
            on_breach=[_escalation(e) for e in slas[c.name].on_breach] if c.name in slas else [],
        ))  # fmt: skip
    steps = [{"step": st.step_id, "kind": st.kind, "status": st.status,
              "started": _seconds(st.started_at, opened),
              "finished": _seconds(st.finished_at, opened)}
             for st in sorted(last.state.steps.values(), key=lambda s: (s.started_at, s.step_id))]  # fmt: skip
    timers = [{"step": st.step_id, "fires": _seconds(st.timer_fires_at, opened)}
              for st in last.state.steps.values() if st.timer_fires_at is not None]  # fmt: skip
    return Plan(pb.name, pb.version, fields, steps, clocks, timers, end)


def _escalation(e: Any) -> str:
    if e.page:
        return f"page {e.page}"
    if e.notify:
        return f"notify {e.notify}"
    if e.raise_severity:
        return f"raise severity {e.raise_severity}"
    return "fail the step"


def human(seconds: float | None) -> str:
    """``93784.0`` -> ``1d 2h 3m 4s``; None -> ``-``."""
    if seconds is None:
        return "-"
    left, out = int(round(seconds)), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if left >= size:
            out.append(f"{left // size}{unit}")
            left %= size
    return " ".join(out + ([f"{left}s"] if left or not out else []))


def _fired(c: ClockPlan) -> str:
    if c.breached is not None:
        return "fired: " + ("; ".join(c.escalations) or "none")
    return ("at breach: " + ", ".join(c.on_breach)) if c.on_breach else "-"


def render(p: Plan) -> str:
    """The plan for people: steps, clocks (warn, due, breach, escalations), statutory clocks."""

    def cell(s: float | None) -> str:
        return "-" if s is None else f"{s:.0f} ({human(s)})"

    lines = [f"what-if plan: {p.playbook} v{p.version}, every decision at its deadline "
             f"(seconds of wall time after the incident opened); the walk ends: {p.end}", "",
             "| step | kind | starts | ends | status |", "|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {s['step']} | {s['kind']} | {cell(s['started'])} | {cell(s['finished'])} "
              f"| {s['status']} |" for s in p.steps]  # fmt: skip
    lines += ["", "| clock | starts | warns | due (breach) | stopped | breached | escalations |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {c.name}{' [legal]' if c.legal else ''} | {cell(c.started)} | {cell(c.warn)} "
              f"| {cell(c.due)} | {cell(c.stopped)} | {cell(c.breached)} "
              f"| {_fired(c)} |" for c in p.clocks]  # fmt: skip
    legal = [c for c in p.clocks if c.legal]
    lines += ["", "statutory clocks, the latest moment each allows:"]
    lines += [f"- {c.name}: {cell(c.due)}" for c in legal] or ["- none in this path"]
    if p.timers:
        lines += ["", "timers: " + ", ".join(f"{t['step']} fires at {cell(t['fires'])}"
                                             for t in p.timers)]  # fmt: skip
    return "\n".join(lines) + "\n"
