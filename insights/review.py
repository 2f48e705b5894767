"""The post-incident review draft: what happened when, the decisions and who made them, the SLA
outcomes, what escalated and why, from the records alone; the team completes the rest.

Reads the projection, the SLA outcomes and the whole timeline from the audit log (its sealed
columns opened under the incident's data key, ``records/timeline.py``): run by the people who
run the service (``incident review ID``), never by the workflow. A purged incident has no review:
its text is gone on purpose (``ReviewUnavailable`` names the purge).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlmodel import Session, col, select

from playbooks.schema import format_duration
from records.purge import purged
from records.sealed import opened_resolution
from records.tables import IncidentRecord, SlaOutcome, records_engine, utc
from records.timeline import entries_before
from workflows.models import TimelineEntry

DECISION_KINDS = ("approved", "rejected", "first_approval")
ESCALATION_KINDS = ("sla_warning", "sla_breach", "escalation", "severity_changed", "paged",
                    "step_failed", "playbook_halted", "reopened")  # fmt: skip
NOT_THEIR_ROLE = ("step_started", "step_completed", "step_skipped", "step_failed",
                  "step_cancelled", "approval_requested")  # fmt: skip
DETAIL_MAX = 240  # characters of an entry's detail in the draft
TO_COMPLETE = (
    "Impact (who was affected, how badly, for how long)",
    "What went well",
    "What went wrong, and why (causes, not culprits)",
    "Where we were lucky",
    "Action items (each with an owner and a date)",
    "Playbook changes proposed (steps, SLAs, guidance)",
)


class ReviewUnavailable(Exception):
    """No review can be drafted: an unknown or purged incident (the message says which)."""


class Line(BaseModel):
    at: datetime
    elapsed_s: float
    actor: str
    role: str | None
    kind: str
    step: str | None
    detail: str


class DecisionLine(BaseModel):
    step: str
    decision: str
    actor: str
    role: str | None
    at: datetime
    waited_s: float | None  # from the approval's request
    reason: str


class ClockLine(BaseModel):
    clock: str
    started_at: datetime
    due_s: float
    outcome: str
    warned_at: datetime | None
    breached_at: datetime | None
    stopped_at: datetime | None


class Review(BaseModel):
    incident_id: str
    playbook: str
    playbook_hash: str
    severity: str
    severity_history: list[tuple[str, str]]
    status: str
    owner: str
    opened_at: datetime
    acknowledged_at: datetime | None
    closed_at: datetime | None
    resolution: str | None
    timeline: list[Line]
    decisions: list[DecisionLine]
    clocks: list[ClockLine]
    escalations: list[Line]
    people: list[str]  # everyone who acted, with their roles
    generated_at: datetime


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 1] + "…"


def _acted(e: TimelineEntry) -> bool:
    """A person acted in this entry, in the role it names (a step's entries name the step's
    owner, an approval request the roles asked: not the actor's)."""
    human = e.actor != "system" and not e.actor.startswith("intake:")
    return human and e.kind not in NOT_THEIR_ROLE


def _line(e: TimelineEntry, opened: datetime) -> Line:
    return Line(at=utc(e.at), elapsed_s=(utc(e.at) - opened).total_seconds(), actor=e.actor,
                role=e.role, kind=e.kind, step=e.step, detail=_short(e.detail))  # fmt: skip


def _decisions(entries: list[TimelineEntry]) -> list[DecisionLine]:
    asked: dict[str, datetime] = {}
    found = []
    for e in entries:
        if e.kind == "approval_requested" and e.step:
            asked[e.step] = utc(e.at)
        elif e.kind in DECISION_KINDS and e.step:
            since = asked.get(e.step)
            found.append(DecisionLine(
                step=e.step, decision=e.kind, actor=e.actor, role=e.role, at=utc(e.at),
                waited_s=(utc(e.at) - since).total_seconds() if since else None,
                reason=_short(e.detail),
            ))  # fmt: skip
    return found


def build_review(incident_id: str, url: str | None = None, now: datetime | None = None) -> Review:
    """The draft's data; ``ReviewUnavailable`` for an unknown or purged incident."""
    purge = purged(incident_id, url)
    if purge is not None:
        raise ReviewUnavailable(purge.line())
    with Session(records_engine(url)) as s:
        record = s.get(IncidentRecord, incident_id)
        clocks = s.exec(
            select(SlaOutcome)
            .where(SlaOutcome.incident_id == incident_id)
            .order_by(col(SlaOutcome.started_at), col(SlaOutcome.clock))
        ).all()
    if record is None:
        raise ReviewUnavailable(f"incident {incident_id} is not in the records")
    opened = utc(record.opened_at)
    entries = entries_before(incident_id, 2**31 - 1, url)  # every entry
    lines = [_line(e, opened) for e in entries]
    people = sorted(
        f"{e.actor} ({e.role})" if e.role else e.actor
        for e in {(e.actor, e.role): e for e in entries if _acted(e)}.values()
    )
    return Review(
        incident_id=incident_id, playbook=record.playbook, playbook_hash=record.playbook_hash,
        severity=record.severity,
        severity_history=[(t, sev) for t, sev in json.loads(record.severity_history or "[]")],
        status=record.status, owner=record.owner, opened_at=opened,
        acknowledged_at=utc(record.acknowledged_at), closed_at=utc(record.closed_at),
        resolution=opened_resolution(record), timeline=lines, decisions=_decisions(entries),
        clocks=[ClockLine(clock=c.clock, started_at=utc(c.started_at), due_s=c.due_seconds,
                          outcome=c.outcome, warned_at=utc(c.warned_at),
                          breached_at=utc(c.breached_at), stopped_at=utc(c.stopped_at))
                for c in clocks],
        escalations=[line for line in lines if line.kind in ESCALATION_KINDS],
        people=people, generated_at=now or datetime.now(UTC),
    )  # fmt: skip


def _d(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(timedelta(seconds=round(seconds)))


def _t(at: datetime | None) -> str:
    return "-" if at is None else f"{at:%Y-%m-%d %H:%M:%S}"


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|")


def to_markdown(r: Review) -> str:
    """The draft as Markdown: facts first, then the sections the team completes."""
    ack = _d((r.acknowledged_at - r.opened_at).total_seconds()) if r.acknowledged_at else "-"
    res = _d((r.closed_at - r.opened_at).total_seconds()) if r.closed_at else "-"
    history = " → ".join(f"{sev} ({t[:16].replace('T', ' ')})" for t, sev in r.severity_history)
    out = [
        f"# Post-incident review: {r.incident_id} (draft)",
        "",
        f"Drafted {r.generated_at:%Y-%m-%d %H:%M} UTC from the records; times are UTC. "
        "Check every fact against the timeline, then complete the sections at the end.",
        "",
        "## Summary",
        "",
        f"- Playbook: `{r.playbook}` (`{r.playbook_hash}`)",
        f"- Severity: {r.severity}; history: {history or '-'}",
        f"- Status: {r.status}; owner: {r.owner}",
        f"- Opened {_t(r.opened_at)}; acknowledged {_t(r.acknowledged_at)} (after {ack}); "
        f"closed {_t(r.closed_at)} (after {res})",
        f"- Resolution: {r.resolution or '-'}",
        f"- People involved: {', '.join(r.people) or '-'}",
        "",
        "## What happened when",
        "",
        "| time | +elapsed | who | what | step | detail |",
        "|---|---|---|---|---|---|",
    ]
    out += [
        f"| {_t(x.at)} | {_d(x.elapsed_s)} | {x.actor}{f' ({x.role})' if x.role else ''} | "
        f"{x.kind} | {x.step or ''} | {_cell(x.detail)} |"
        for x in r.timeline
    ]
    out += ["", "## Decisions and who made them", ""]
    out += [
        f"- **{d.step}**: {d.decision} by {d.actor} ({d.role}) at {_t(d.at)}, "
        f"{_d(d.waited_s)} after it was asked. Reason: {d.reason or '-'}"
        for d in r.decisions
    ] or ["- No approval was decided."]
    out += ["", "## SLA outcomes", "", "| clock | started | due after | outcome | warned | "
            "breached | stopped |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    out += [
        f"| {c.clock} | {_t(c.started_at)} | {_d(c.due_s)} | {c.outcome} | {_t(c.warned_at)} | "
        f"{_t(c.breached_at)} | {_t(c.stopped_at)} |"
        for c in r.clocks
    ]
    out += ["", "## What escalated and why", ""]
    out += [
        f"- {_t(x.at)} {x.kind}{f' ({x.step})' if x.step else ''}: {x.detail}"
        for x in r.escalations
    ] or ["- Nothing escalated: no SLA warning or breach, page or severity change."]
    for title in TO_COMPLETE:
        out += ["", f"## {title}", "", "_To complete._"]
    return "\n".join(out) + "\n"
