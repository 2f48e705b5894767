"""The records of many incidents, made up fast for `make bench-report` (bench/report_scale.py).

Every incident runs one of the shipped playbooks: its acknowledge and resolve clocks and the SLA
clocks of its top-level steps, with times drawn from log-normal distributions around each due so
that most clocks are met, some warned, some breached, a few never met; incidents opened in the last
days are still open with clocks pending. Outcomes and states come from the project's own
``clock_outcome`` and ``SlaClock.state``. Each incident has the audit rows its timeline would have
(opened, acknowledged, each step started and done, warnings, breaches, escalations, closed), in
one hash chain over the whole log computed with ``records.chain.row_digest``, so ``incident audit
verify`` holds on it. Their ``detail`` is in clear (no data keys here); the report never reads it.

Rows are written with COPY (psycopg 3), not through the ORM.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from playbooks.loader import scan_playbooks
from playbooks.schema import Sla
from records.chain import row_digest
from records.projection import clock_outcome
from records.tables import GENESIS, AuditRow
from workflows.models import SlaClock
from workflows.names import workflow_id_for

SEVERITIES = ("sev0", "sev1", "sev2", "sev3")
INCIDENT_COLUMNS = (
    "incident_id", "playbook", "playbook_hash", "workflow_id", "run_id", "severity",
    "severity_history", "status", "owner", "opened_at", "acknowledged_at", "closed_at",
    "resolution", "sla_breached", "escalated", "runs", "last_seq", "updated_at",
)  # fmt: skip
OUTCOME_COLUMNS = (
    "incident_id", "clock", "scope", "kind", "started_at", "due_seconds", "warn_seconds",
    "due_at", "warned_at", "breached_at", "stopped_at", "paused_seconds", "paused_since",
    "state", "outcome",
)  # fmt: skip
AUDIT_COLUMNS = (
    "id", "incident_id", "seq", "at", "actor", "role", "action", "step", "detail", "sla",
    "due_at", "data", "workflow_id", "run_id", "playbook", "playbook_hash",
    "prev_incident_hash", "prev_log_hash", "row_hash",
)  # fmt: skip
PEOPLE = ("alice", "bob", "carol", "dmitri", "esra", "femi", "grace", "hiro", "ines", "jonas")


@dataclass(frozen=True)
class Clock:
    name: str
    due: timedelta
    warn_at: timedelta | None
    kind: str


@dataclass(frozen=True)
class Shape:
    """What of a playbook the records show: its name, hash, severity and clocks."""

    name: str
    content_hash: str
    severity: str
    acknowledge: Clock | None
    resolve: Clock | None
    steps: tuple[Clock, ...]


def _clock(name: str, sla: Sla | None) -> Clock | None:
    return None if sla is None else Clock(name, sla.due, sla.warn_at, sla.clock)


def shapes(playbooks_dir: Path) -> list[Shape]:
    """The shipped playbooks, as the records see them."""
    found = []
    for lp in scan_playbooks(playbooks_dir)[0]:
        pb = lp.playbook
        steps = tuple(c for s in pb.steps if (c := _clock(s.id, s.sla)) is not None)
        found.append(Shape(
            pb.name, lp.content_hash, pb.default_severity,
            _clock("incident.acknowledge", pb.sla.acknowledge),
            _clock("incident.resolve", pb.sla.resolve), steps,
        ))  # fmt: skip
    return found


@dataclass
class Made:
    """One incident's rows: its projection, its SLA outcomes, its timeline entries (unchained)."""

    incident: tuple[Any, ...]
    outcomes: list[tuple[Any, ...]]
    entries: list[dict[str, Any]]


def _spent(rng: random.Random, due: timedelta, median: float, spread: float) -> timedelta:
    """How long a clock's work took: log-normal around ``median`` times its due."""
    return due * rng.lognormvariate(math.log(median), spread)


def _run(clock: Clock, start: datetime, spent: timedelta, now: datetime, unmet: bool) -> SlaClock:
    """The clock as the workflow would have left it (stopped after ``spent`` if that is past)."""
    end = start + spent
    stopped = end if end <= now else None
    breach = start + clock.due
    warn = start + clock.warn_at if clock.warn_at is not None else None
    upto = stopped or now
    return SlaClock(
        name=clock.name, kind=cast(Any, clock.kind), started_at=start, due=clock.due,
        warn_at=clock.warn_at, running_since=None if stopped else start,
        banked=spent if stopped else timedelta(0),
        warned_at=warn if warn is not None and warn <= upto else None,
        breached_at=breach if breach <= upto else None,
        stopped_at=stopped, unmet=unmet and stopped is not None,
        due_at=None if stopped else breach,
    )  # fmt: skip


def incident(i: int, shape: Shape, opened: datetime, now: datetime, rng: random.Random) -> Made:
    """One incident of ``shape`` opened at ``opened``, as it stands at ``now``."""
    iid = f"bench-{i:07d}"
    wid, owner = workflow_id_for(iid), rng.choice(PEOPLE)
    severity = shape.severity if rng.random() < 0.7 else rng.choice(SEVERITIES)
    clocks: list[SlaClock] = []
    ack_clock = shape.acknowledge or Clock("incident.acknowledge", timedelta(hours=1), None, "wall")
    ack = _run(ack_clock, opened, _spent(rng, ack_clock.due, 0.45, 0.8), now, False)
    clocks.append(ack)
    at = ack.stopped_at or now
    for step in shape.steps if ack.stopped_at else ():
        clocks.append(_run(step, at, _spent(rng, step.due, 0.5, 0.9), now, rng.random() < 0.03))
        at = clocks[-1].stopped_at or now
        if clocks[-1].stopped_at is None:
            break  # the incident is still on this step
    total = at - opened + _spent(rng, timedelta(hours=6), 1.0, 1.0)
    resolve = None
    if shape.resolve is not None:
        resolve = _run(shape.resolve, opened, total, now, False)
        clocks.append(resolve)
    closed_at = opened + total if opened + total <= now and at < now else None
    escalated = ack.breached_at is not None
    history = [[opened.isoformat(), severity]]
    if escalated and severity != "sev0":
        raised = SEVERITIES[SEVERITIES.index(severity) - 1]
        history.append([(ack.breached_at or opened).isoformat(), raised])
        severity = raised
    entries = _timeline(clocks, opened, closed_at, owner, escalated)
    status = "closed" if closed_at else ("acknowledged" if ack.stopped_at else "open")
    projection = (
        iid, shape.name, shape.content_hash, wid, "run-1", severity, json.dumps(history),
        status, owner, opened, ack.stopped_at, closed_at,
        "resolved" if closed_at else None, any(c.breached_at for c in clocks), escalated,
        1, len(entries) - 1, closed_at or now,
    )  # fmt: skip
    outcomes = [
        (iid, c.name, "incident" if c.name.startswith("incident.") else "step", c.kind,
         c.started_at, c.due.total_seconds(),
         c.warn_at.total_seconds() if c.warn_at is not None else None, c.due_at, c.warned_at,
         c.breached_at, c.stopped_at, 0.0, None, c.state, clock_outcome(c))
        for c in clocks
    ]  # fmt: skip
    for entry in entries:
        entry.update(incident_id=iid, workflow_id=wid, run_id="run-1", playbook=shape.name,
                     playbook_hash=shape.content_hash)  # fmt: skip
    return Made(projection, outcomes, entries)


def _timeline(
    clocks: list[SlaClock], opened: datetime, closed: datetime | None, owner: str, escalated: bool
) -> list[dict[str, Any]]:
    out: list[tuple[datetime, str, str | None, str | None]] = [(opened, "opened", None, None)]
    for c in clocks:
        step = None if c.name.startswith("incident.") else c.name
        if step:
            out.append((c.started_at, "step_started", step, "on_track"))
        if c.warned_at:
            out.append((c.warned_at, "sla_warned", step, "warned"))
        if c.breached_at:
            out.append((c.breached_at, "sla_breached", step, "breached"))
            if c.name == "incident.acknowledge" and escalated:
                out.append((c.breached_at, "severity_raised", None, None))
        if c.stopped_at and c.name != "incident.resolve":
            done = "acknowledged" if c.name == "incident.acknowledge" else "step_completed"
            out.append((c.stopped_at, "step_skipped" if c.unmet else done, step, c.state))
    if closed:
        out.append((closed, "closed", None, None))
    out.sort(key=lambda e: e[0])
    return [
        {"seq": n, "at": at, "actor": "system" if kind.startswith(("sla", "step_s", "sev"))
         else owner, "role": None if kind.startswith("sla") else "ic", "action": kind,
         "step": step, "detail": f"{kind} {step or ''}".strip(), "sla": sla, "due_at": None,
         "data": "{}"}
        for n, (at, kind, step, sla) in enumerate(out)
    ]  # fmt: skip


def generate(
    count: int, now: datetime, playbooks_dir: Path, seed: int = 11, days: int = 365
) -> Iterator[Made]:
    """``count`` incidents opened over the last ``days`` days, a mix of the shipped playbooks."""
    rng = random.Random(seed)
    found = shapes(playbooks_dir)
    weights = [3 if s.name in ("legal-process", "preservation", "account-takeover") else 1
               for s in found]  # fmt: skip
    span = timedelta(days=days).total_seconds()
    for i in range(count):
        opened = (now - timedelta(seconds=span * rng.random())).replace(microsecond=0)
        yield incident(i, rng.choices(found, weights)[0], opened, now, rng)


def chain(entries: list[dict[str, Any]]) -> Iterator[tuple[Any, ...]]:
    """Audit rows for ``entries`` in log order (by time), each hashed after the previous row of
    the log and of its incident, as ``records.chain.write_batch`` hashes them."""
    entries.sort(key=lambda e: (e["at"], e["incident_id"], e["seq"]))
    tips: dict[str, str] = {}
    prev_log = GENESIS
    for position, e in enumerate(entries, start=1):
        e.update(id=position, prev_incident_hash=tips.get(e["incident_id"], GENESIS),
                 prev_log_hash=prev_log, row_hash="")  # fmt: skip
        e["at"] = e["at"].astimezone(UTC)
        digest = row_digest(cast(AuditRow, SimpleNamespace(**e)))
        tips[e["incident_id"]] = prev_log = digest
        e["row_hash"] = digest
        yield tuple(e[c] for c in AUDIT_COLUMNS)
