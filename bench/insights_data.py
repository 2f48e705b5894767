"""Incidents made up for the team lead's instruments (bench/insights_scale.py): each walks one of
the shipped playbooks the way people would, and is written through ``records.chain.write_batch``
(sealed, hash-chained, projected: transparency facts included), so every report reads it exactly
as it reads real incidents. And a roster with rotations to cover (or not) the roles.

Each incident: opened by intake, paged, acknowledged by someone holding the first step's role,
then its steps in order (a branch records its choice and runs none of its cases; a parallel step
runs every branch): each started, approvals requested and decided (some rejected, which ends the
walk), and completed after a log-normal time around its SLA. Requests get a jurisdiction, one to
three accounts, a process type, sometimes an NDO or a partial disclosure. Incidents opened in the
last days may still be open, partway through.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from playbooks.loader import LoadedPlaybook, scan_playbooks
from playbooks.schema import ApprovalStep, BranchStep, ParallelStep, StepModel, WaitForStep
from records.chain import write_batch
from roster import service, work
from workflows.models import (
    ACK_CLOCK,
    Decision,
    IncidentState,
    PendingApproval,
    RecordBatch,
    SlaClock,
    StepState,
    TimelineEntry,
)
from workflows.names import workflow_id_for

TEAM = {  # role -> people (rotations of 8 h shifts; privacy has none: its work is a gap)
    "lers": ["ana", "ben", "chidi"], "legal": ["lena", "marc"], "cr": ["dev", "eve", "fin"],
    "cr_lead": ["gus"], "ic": ["hana", "ivo"], "child_safety": ["jo", "kai"], "sec": ["liv"],
    "privacy": ["mira"], "data": ["noor"], "food_safety": ["olu"], "catalog_ops": ["pia"],
    "comms": ["quin"], "retail_mgr": ["rui"], "mgr": ["sol"],
}  # fmt: skip
ROTATED = ("lers", "legal", "cr", "ic", "child_safety", "cr_lead")
WEIGHTS = {"legal-process": 4, "preservation": 4, "emergency-disclosure": 2, "child-safety": 2}
REJECT = {"legal-determination": 0.15, "legal-review": 0.1, "verify-callback": 0.04}


@dataclass
class Walk:
    """One incident being written: its timeline and the state it ends in."""

    iid: str
    lp: LoadedPlaybook
    rng: random.Random
    now: datetime
    at: datetime
    entries: list[TimelineEntry] = field(default_factory=list)
    steps: dict[str, StepState] = field(default_factory=dict)
    approvals: dict[str, PendingApproval] = field(default_factory=dict)
    clocks: dict[str, SlaClock] = field(default_factory=dict)
    stopped: bool = False

    def add(self, kind: str, actor: str = "system", role: str | None = None,
            step: str | None = None, detail: str = "") -> None:  # fmt: skip
        self.entries.append(TimelineEntry(seq=len(self.entries), at=self.at, actor=actor,
                                          role=role, kind=kind, step=step, detail=detail))  # fmt: skip

    def wait(self, median: timedelta, spread: float = 0.8) -> bool:
        """Time passes; False once it would pass ``now`` (the incident is still at this point)."""
        self.at += median * self.rng.lognormvariate(0, spread)
        if self.at > self.now:
            self.at, self.stopped = self.now, True
        return not self.stopped


def person(rng: random.Random, role: str | None) -> tuple[str, str]:
    role = role if role in TEAM else "ic"
    return rng.choice(TEAM[role]), role


def _clock(name: str, start: datetime, due: timedelta, end: datetime | None,
           now: datetime) -> SlaClock:  # fmt: skip
    """The clock as the workflow leaves it: stopped at ``end``, or running at ``now``."""
    deadline = start + due
    breached = deadline if deadline <= (end or now) else None
    return SlaClock(name=name, started_at=start, due=due, running_since=None if end else start,
                    breached_at=breached, stopped_at=end,
                    banked=(end - start) if end else timedelta(0),
                    due_at=None if end else deadline)  # fmt: skip


def run_step(w: Walk, step: StepModel) -> None:
    if w.stopped:
        return
    if isinstance(step, BranchStep):
        w.add("branch_taken", step=step.id, detail="no case")
        return
    if isinstance(step, ParallelStep):
        for branch in step.branches:
            for nested in branch.steps:
                run_step(w, nested)
        return
    role = None if step.owner == "system" else step.owner
    start = w.at
    w.add("step_started", role=step.owner, step=step.id)
    due = step.sla.due if step.sla else timedelta(hours=2)
    w.steps[step.id] = StepState(step_id=step.id, kind=step.kind, status="running",
                                 started_at=start, owner=step.owner)  # fmt: skip
    if isinstance(step, ApprovalStep):
        w.add("approval_requested", role=",".join(step.roles), step=step.id)
        pending = PendingApproval(step_id=step.id, roles=step.roles, requested_by="system",
                                  requested_at=w.at)  # fmt: skip
        w.approvals[step.id] = pending
        if not w.wait(due * 0.4):
            if step.sla:
                w.clocks[step.id] = _clock(step.id, start, due, None, w.now)
            return
        actor, decider = person(w.rng, step.roles[0])
        verdict = "reject" if w.rng.random() < REJECT.get(step.id, 0.02) else "approve"
        pending.decisions.append(Decision(actor=actor, role=decider, reason="bench",
                                          decision=verdict, at=w.at))  # fmt: skip
        pending.outcome = "rejected" if verdict == "reject" else "approved"
        w.add(pending.outcome, actor=actor, role=decider, step=step.id)
        if verdict == "reject":
            w.stopped = True
    elif isinstance(step, WaitForStep) and role is not None:
        if not w.wait(min(due, timedelta(hours=6)) * 0.5):
            if step.sla:
                w.clocks[step.id] = _clock(step.id, start, due, None, w.now)
            return
        w.add("event", actor=person(w.rng, role)[0], detail=step.event)
    else:
        w.at += timedelta(minutes=1)  # an action, a timer cut short
    st = w.steps[step.id]
    st.status, st.finished_at = "completed", w.at
    w.add("step_completed", role=step.owner, step=step.id)
    if step.sla:
        w.clocks[step.id] = _clock(step.id, start, due, w.at, w.now)


def _fields(lp: LoadedPlaybook, rng: random.Random) -> dict[str, str]:
    declared = lp.playbook.fields
    values = {"jurisdiction": rng.choices(["us", "eu", "uk", "other"], [6, 2, 1, 1])[0]}
    accounts = ",".join(f"acct-{rng.randrange(10**6)}" for _ in range(rng.choice([1, 1, 2, 3])))
    for name in ("account_id", "account_ids"):
        if name in declared:
            values[name] = accounts
    if "process_type" in declared:
        values["process_type"] = rng.choices(["subpoena", "court_order", "warrant"], [6, 2, 2])[0]
        if rng.random() < 0.25:
            values["ndo_expiry"] = "2027-06-30"
    if "disclosure" in declared and rng.random() < 0.2:
        values["disclosure"] = "partial"
    return {k: v for k, v in values.items() if k in declared}


def incident(i: int, lp: LoadedPlaybook, opened: datetime, now: datetime,
             rng: random.Random) -> RecordBatch:  # fmt: skip
    """One incident of playbook ``lp`` opened at ``opened``, as it stands at ``now``."""
    w = Walk(f"BENCH-{i:05d}", lp, rng, now, opened)
    first = next((s.owner for s in lp.playbook.iter_steps() if s.owner != "system"), "ic")
    w.add("opened", actor="intake:portal")
    w.at += timedelta(minutes=1)
    w.add("paged", step=None)
    acked = None
    if w.wait(timedelta(minutes=6)):
        actor, role = person(rng, first)
        w.add("acknowledged", actor=actor, role=role)
        acked = w.at
    ack_due = lp.playbook.sla.acknowledge.due if lp.playbook.sla.acknowledge else timedelta(hours=1)
    w.clocks[ACK_CLOCK] = _clock(ACK_CLOCK, opened, ack_due, acked, now)
    w.stopped = rng.random() < 0.03  # the requester withdrew, or it was opened in error
    for step in lp.playbook.steps:
        run_step(w, step)
    closed = None
    if not w.stopped and w.wait(timedelta(hours=3)) or w.stopped and w.at < now - timedelta(days=2):
        actor, role = person(rng, "ic")
        w.add("closed", actor=actor, role=role)
        closed = w.at
    state = IncidentState(
        status="closed" if closed else ("acknowledged" if acked else "open"),
        severity=lp.playbook.default_severity, owner=w.entries[-1].actor,
        severity_history=[(opened, lp.playbook.default_severity)],
        fields=_fields(lp, rng), opened_at=opened, acknowledged_at=acked, closed_at=closed,
        resolution="bench" if closed else None, steps=w.steps, approvals=w.approvals,
        clocks=w.clocks, timeline=w.entries, runs=1,
    )  # fmt: skip
    return RecordBatch(incident_id=w.iid, workflow_id=workflow_id_for(w.iid), run_id="run-1",
                       playbook=lp.playbook.name, playbook_hash=lp.content_hash,
                       entries=w.entries, snapshot=state)  # fmt: skip


def generate(count: int, now: datetime, playbooks_dir: Path, days: int = 90, seed: int = 13,
             url: str | None = None) -> int:  # fmt: skip
    """Write ``count`` incidents opened over the last ``days`` days; returns the rows written."""
    rng = random.Random(seed)
    found = sorted(scan_playbooks(playbooks_dir)[0], key=lambda lp: lp.playbook.name)
    weights = [WEIGHTS.get(lp.playbook.name, 1) for lp in found]
    written = 0
    for i in range(count):
        # More work in the day than at night: opened at a time drawn around 14:00 UTC.
        day = now - timedelta(days=rng.randrange(days))
        hour = min(23.99, max(0.0, rng.gauss(14, 4.5)))
        opened = day.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=hour)
        if opened > now:
            opened -= timedelta(days=1)
        made = incident(i, rng.choices(found, weights)[0], opened, now, rng)
        written += write_batch(made, url)["written"]
    return written


def roster(now: datetime, url: str | None = None) -> None:
    """The team of ``TEAM``; 8-hour rotations for the rotated roles, from four weeks ago."""
    start = (now - timedelta(weeks=4)).replace(hour=0, minute=0, second=0, microsecond=0)
    for role, people in TEAM.items():
        for handle in people:
            if service.get_person(handle, url=url) is None:
                service.add_person(handle, display_name=handle.title(), actor="bench", url=url)
            service.grant_role(handle, role, actor="bench", url=url)
        if role in ROTATED:
            service.add_rotation(role, name="primary", people=people,
                                 shift=timedelta(hours=8 * math.ceil(3 / len(people))),
                                 start=start, actor="bench", url=url)  # fmt: skip
    # Project work most weekdays for the specialists, a week of leave, a training day.
    monday = start - timedelta(days=start.weekday())
    for day in range(28):
        at = monday + timedelta(days=day, hours=17)
        if at.weekday() < 5:
            for handle in ("ana", "lena", "dev"):
                work.add_work(handle, "project", start=at, end=at + timedelta(hours=4),
                              actor="bench", url=url)  # fmt: skip
    work.add_work("ben", "leave", start=now - timedelta(days=3), end=now + timedelta(days=4),
                  note="holiday", actor="bench", url=url)  # fmt: skip
    work.add_work("eve", "training", start=now - timedelta(days=8),
                  end=now - timedelta(days=8) + timedelta(hours=8), actor="bench", url=url)  # fmt: skip
