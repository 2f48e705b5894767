"""The handover summary: a short text for the next shift, built from the records alone.

Each sentence is made from facts read from one or more records rows (the incident's projection,
its SLA outcomes, its audit log entries, opened as ``records/timeline.py`` does) and names them:
``Sentence.facts`` holds every value put into the text and ``Sentence.sources`` the rows they came
from, so a test can check every sentence against the records, and a rewrite by the chat endpoint
(``assist/chat.py``) can be refused when it states a fact that none of them holds. Deterministic:
the same records give the same text. Times are UTC, to the minute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from records.sealed import opened_columns
from records.tables import AuditRow, IncidentRecord, SlaOutcome, records_engine

TERMINAL = ("step_completed", "step_failed", "step_skipped", "step_cancelled")
DEADLINES_SHOWN = 3


class UnknownIncident(LookupError):
    """The records hold no such incident."""


@dataclass(frozen=True)
class Sentence:
    """One sentence, the facts put into it (name -> value as written) and the rows they are from
    (``incident_records:<id>``, ``audit_log:<seq>``, ``sla_outcomes:<clock>``)."""

    text: str
    facts: dict[str, str] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Handover:
    incident_id: str
    sentences: list[Sentence]
    source: str = "records"  # or "chat" when rewritten (and checked)
    text_override: str | None = None

    @property
    def text(self) -> str:
        return self.text_override or " ".join(s.text for s in self.sentences)

    def as_json(self) -> dict[str, object]:
        return {"incident_id": self.incident_id, "source": self.source, "text": self.text,
                "sentences": [{"text": s.text, "facts": s.facts, "sources": s.sources}
                              for s in self.sentences]}  # fmt: skip


def when(at: datetime | None) -> str:
    if at is None:
        return "unknown"
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _say(template: str, sources: list[str], **facts: str) -> Sentence:
    return Sentence(template.format(**facts), facts, sources)


def handover(incident_id: str, url: str | None = None) -> Handover:
    """The summary of ``incident_id`` from the records (UnknownIncident if it has none)."""
    with Session(records_engine(url)) as s:
        record = s.get(IncidentRecord, incident_id)
        if record is None:
            raise UnknownIncident(f"no incident {incident_id} in the records")
        clocks = s.exec(select(SlaOutcome).where(SlaOutcome.incident_id == incident_id)).all()
        rows = s.exec(select(AuditRow).where(AuditRow.incident_id == incident_id)
                      .order_by(col(AuditRow.seq))).all()  # fmt: skip
    entries = [(row, *opened_columns(row)) for row in rows]
    me = f"incident_records:{incident_id}"
    out = [_state(record, me)]
    out += _waiting(entries)
    out += _deadlines(list(clocks))
    out += _risks(record, list(clocks), entries, me)
    if entries:
        last = entries[-1][0]
        out.append(_say("The last entry is {kind} at {at} by {actor}.", [f"audit_log:{last.seq}"],
                        kind=last.action, at=when(last.at), actor=last.actor))  # fmt: skip
    return Handover(incident_id, out)


def _state(record: IncidentRecord, me: str) -> Sentence:
    facts = {"incident": record.incident_id, "playbook": record.playbook,
             "severity": record.severity, "status": record.status.replace("_", " "),
             "owner": record.owner, "opened": when(record.opened_at)}  # fmt: skip
    text = ("Incident {incident} ({playbook}, {severity}) is {status}, owned by {owner}, "
            "opened at {opened}")  # fmt: skip
    if record.acknowledged_at is not None:
        facts["acknowledged"] = when(record.acknowledged_at)
        text += ", acknowledged at {acknowledged}"
    if record.closed_at is not None:
        facts["closed"] = when(record.closed_at)
        text += ", closed at {closed}"
    return _say(text + ".", [me], **facts)


def _waiting(entries: list[tuple[AuditRow, str, str]]) -> list[Sentence]:
    """What each running step waits on: a decision by a role, an event, a timer, or its work."""
    started: dict[str, tuple[AuditRow, str]] = {}
    asked: dict[str, AuditRow] = {}
    timers: dict[str, tuple[AuditRow, str]] = {}
    for row, detail, _data in entries:
        if not row.step:
            continue
        if row.action == "step_started":
            started[row.step] = (row, detail)
            asked.pop(row.step, None)
            timers.pop(row.step, None)
        elif row.action == "approval_requested":
            asked[row.step] = row
        elif row.action == "timer_set":
            timers[row.step] = (row, detail)
        elif row.action in TERMINAL:
            started.pop(row.step, None)
    out = []
    for step, (row, title) in started.items():
        src = [f"audit_log:{row.seq}"]
        if step in asked:
            ask = asked[step]
            out.append(_say("Step {step} ({title}) waits for a decision by {roles} since {at}.",
                            [*src, f"audit_log:{ask.seq}"], step=step, title=title,
                            roles=ask.role or "an approver", at=when(ask.at)))  # fmt: skip
        elif step in timers:
            trow, tdetail = timers[step]
            out.append(_say("Step {step} ({title}) waits on a timer: {timer}.",
                            [*src, f"audit_log:{trow.seq}"], step=step, title=title,
                            timer=tdetail))  # fmt: skip
        else:
            out.append(_say("Step {step} ({title}) is in progress since {at}, owned by {owner}.",
                            src, step=step, title=title, at=when(row.at),
                            owner=row.role or "the commander"))  # fmt: skip
    if not out:
        out.append(Sentence("No step is in progress."))
    return out


def _deadlines(clocks: list[SlaOutcome]) -> list[Sentence]:
    running = sorted((c for c in clocks if c.stopped_at is None and c.due_at is not None),
                     key=lambda c: (c.due_at, c.clock))  # fmt: skip
    return [_say("The {clock} clock is due at {due} ({state}).", [f"sla_outcomes:{c.clock}"],
                 clock=c.clock, due=when(c.due_at), state=c.state.replace("_", " "))
            for c in running[:DEADLINES_SHOWN]]  # fmt: skip


def _risks(record: IncidentRecord, clocks: list[SlaOutcome],
           entries: list[tuple[AuditRow, str, str]], me: str) -> list[Sentence]:  # fmt: skip
    out = [_say("The {clock} clock breached at {at} and is still running.",
                [f"sla_outcomes:{c.clock}"], clock=c.clock, at=when(c.breached_at))
           for c in clocks if c.breached_at is not None and c.stopped_at is None]  # fmt: skip
    failed: dict[str, tuple[AuditRow, str]] = {}
    for row, detail, _ in entries:
        if row.step and row.action == "step_failed":
            failed[row.step] = (row, detail)
        elif row.step and row.action in ("step_started", "step_skipped", "step_completed"):
            failed.pop(row.step, None)
    out += [_say("Step {step} failed ({why}) and waits for a retry or a skip.",
                 [f"audit_log:{row.seq}"], step=step, why=detail)
            for step, (row, detail) in failed.items()]  # fmt: skip
    refused = [row for row, _, _ in entries if row.action == "message_refused"]
    if refused:
        out.append(_say("{count} message(s) were refused, the last at {at}.",
                        [f"audit_log:{r.seq}" for r in refused], count=str(len(refused)),
                        at=when(refused[-1].at)))  # fmt: skip
    escalations = [row for row, _, _ in entries if row.action == "escalation"]
    if escalations:
        out.append(_say("{count} escalation(s) fired, the last at {at}.",
                        [f"audit_log:{r.seq}" for r in escalations],
                        count=str(len(escalations)), at=when(escalations[-1].at)))  # fmt: skip
    if not out:
        out.append(Sentence("No open risk: no clock breached, no step failed."))
    return out


# A token that states a fact: anything with a digit (times, counts, ids), or a name joined by
# '-', '.' or '_' (step ids, clock names, playbooks); placeholders are never facts.
_FACT_TOKEN = re.compile(r"\[[^\]]*\]|[\w:+-]*\d[\w:+-]*|\b\w+(?:[-._]\w+)+\b")


def unsupported(h: Handover, rewritten: str) -> list[str]:
    """The fact-like tokens of ``rewritten`` that the records' sentences do not hold."""
    known = h.text
    return [t for t in _FACT_TOKEN.findall(rewritten) if t.startswith("[") or t not in known]


def checked_rewrite(h: Handover, rewritten: str | None) -> Handover:
    """``h`` told in the rewritten words, if every fact they state is one of the records';
    else ``h`` as it was (the rewrite is dropped: it never invents a fact)."""
    if not rewritten or not rewritten.strip() or unsupported(h, rewritten):
        return h
    return Handover(h.incident_id, h.sentences, source="chat", text_override=rewritten.strip())
