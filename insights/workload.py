"""Workload per role and hour of the week, from the audit log: the reactive work the team did.

Read from the clear columns of ``audit_log`` only (kind, step, role, actor, time: never the sealed
detail or data), so it runs without keys and after a purge. Work items:

- a **step** a role owns that a person does (a ``wait_for``: actions run themselves, approvals
  are counted as approvals, branches and parallels are structure; the kind comes from the
  playbooks on disk, a step they no longer have counts): its ``step_started`` entry (the role is
  the step's owner), done at its ``step_completed`` by whoever sent the last event before it;
  time from start to completion;
- an **approval**: its ``approval_requested`` entry, decided by the first ``approved`` /
  ``rejected`` / ``first_approval`` after it (the role is the decider's; undecided, the first role
  asked); time from request to decision;
- a **page** answered: a ``paged`` entry, answered by the first entry after it in which a person
  acted (acknowledged, decided, sent an event, noted, assigned): the role is theirs; time to answer.
  A page nobody answered counts under ``(unanswered)``.

Each item falls in the hour of the week it arrived (started, requested, paged) in the team's time
zone. Every figure here is reactive (incident) work; declared project work, training and leave
are set against it per person by ``insights/capacity.py``.
``insights/coverage.py`` forecasts demand from the same items.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlmodel import Session, col, select

from playbooks.loader import scan_playbooks
from records.tables import AuditRow, records_engine, utc
from reports.report import percentile
from settings import get_settings

UNANSWERED = "(unanswered)"
DECISIONS = ("approved", "rejected", "first_approval")
PERSON_KINDS = (*DECISIONS, "acknowledged", "event", "note", "assigned", "escalation")
KINDS = ("step", "approval", "page")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
REACTIVE_NOTE = (
    "reactive incident work only: declared project work, training and leave are in "
    "`incident capacity`"
)


class WorkItem(NamedTuple):
    """One piece of work: what, for which role, when it arrived, who handled it and when."""

    kind: str  # step, approval, page
    role: str
    incident_id: str
    arrived: datetime
    handled_by: str | None
    handled_at: datetime | None

    @property
    def seconds(self) -> float | None:
        return None if self.handled_at is None else (self.handled_at - self.arrived).total_seconds()


class Row(NamedTuple):
    playbook: str
    incident_id: str
    seq: int
    at: datetime
    actor: str
    role: str | None
    action: str
    step: str | None


def _rows(s: Session, since: datetime, until: datetime) -> list[Row]:
    columns = [getattr(AuditRow, name) for name in Row._fields]
    query = (
        select(*columns)
        .where(
            col(AuditRow.at) >= utc(since),
            col(AuditRow.at) < utc(until),
            ~col(AuditRow.incident_id).startswith("_", autoescape=True),  # "_" is a LIKE wildcard
            col(AuditRow.action).in_(
                ("step_started", "step_completed", "approval_requested", "paged", *PERSON_KINDS)
            ),
        )
        .order_by(col(AuditRow.incident_id), col(AuditRow.seq))
    )
    return [Row(p, i, q, utc(a), ac, r, k, st) for p, i, q, a, ac, r, k, st in s.exec(query)]


@cache
def step_kinds(playbooks_dir: Path) -> dict[tuple[str, str], str]:
    """(playbook, step id) -> the step's kind, for every playbook on disk."""
    return {
        (lp.playbook.name, step.id): step.kind
        for lp in scan_playbooks(playbooks_dir)[0]
        for step in lp.playbook.iter_steps()
    }


def _is_person(row: Row) -> bool:
    return row.action in PERSON_KINDS and row.actor != "system" and bool(row.role)


def _step_item(row: Row, later: list[Row]) -> WorkItem:
    end = next((r for r in later if r.step == row.step
                and r.action in ("step_completed", "step_started")), None)  # fmt: skip
    if end is None or end.action != "step_completed":
        return WorkItem("step", row.role or "", row.incident_id, row.at, None, None)
    sent = [r for r in later if r.action == "event" and r.at <= end.at and r.actor != "system"
            and not r.actor.startswith("intake:")]  # fmt: skip
    by = sent[-1].actor if sent else None
    return WorkItem("step", row.role or "", row.incident_id, row.at, by, end.at)


def _items_of(rows: list[Row], kinds: dict[tuple[str, str], str]) -> list[WorkItem]:
    """One incident's rows, in order, as work items."""
    items: list[WorkItem] = []
    for n, row in enumerate(rows):
        later = rows[n + 1 :]
        if row.action == "step_started" and row.role and row.role != "system":
            if kinds.get((row.playbook, row.step or ""), "wait_for") == "wait_for":
                items.append(_step_item(row, later))
        elif row.action == "approval_requested":
            decided = next((r for r in later if r.action in DECISIONS and r.step == row.step), None)
            role = decided.role if decided and decided.role else (row.role or "").split(",")[0]
            items.append(WorkItem("approval", role or UNANSWERED, row.incident_id, row.at,
                                  decided.actor if decided else None,
                                  decided.at if decided else None))  # fmt: skip
        elif row.action == "paged":
            answer = next((r for r in later if _is_person(r)), None)
            items.append(WorkItem("page", answer.role if answer and answer.role else UNANSWERED,
                                  row.incident_id, row.at, answer.actor if answer else None,
                                  answer.at if answer else None))  # fmt: skip
    return items


def work_items(
    since: datetime, until: datetime, url: str | None = None, playbooks_dir: Path | None = None
) -> list[WorkItem]:
    """Every work item that arrived in [since, until) (its answer may come later: a step
    completed, an approval decided or a page answered after ``until`` is read up to a week on)."""
    kinds = step_kinds(playbooks_dir or get_settings().playbooks_dir)
    with Session(records_engine(url)) as s:
        rows = _rows(s, since, until + timedelta(days=7))
    by_incident: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_incident[row.incident_id].append(row)
    return [
        item
        for found in by_incident.values()
        for item in _items_of(found, kinds)
        if utc(since) <= item.arrived < utc(until)
    ]


def hour_of_week(at: datetime, zone: ZoneInfo) -> int:
    """0 = Monday 00:00-01:00 local ... 167 = Sunday 23:00."""
    local = at.astimezone(zone)
    return local.weekday() * 24 + local.hour


def how_label(how: int) -> str:
    return f"{DAYS[how // 24]} {how % 24:02d}:00"


class WorkloadRow(BaseModel):
    role: str
    hour_of_week: int  # -1: every hour (the role's total)
    when: str
    steps: int
    steps_done: int
    step_p50_s: float | None
    step_p90_s: float | None
    approvals_decided: int
    decision_p50_s: float | None
    pages_answered: int
    answer_p50_s: float | None


class Workload(BaseModel):
    generated_at: datetime
    since: datetime
    until: datetime
    timezone: str
    note: str
    rows: list[WorkloadRow]  # per role and hour of week with work, then per role (-1)


def _row(role: str, how: int, items: list[WorkItem]) -> WorkloadRow:
    def times(kind: str) -> list[float]:
        return [v for i in items if i.kind == kind and (v := i.seconds) is not None]

    steps, decisions, answers = times("step"), times("approval"), times("page")
    return WorkloadRow(
        role=role, hour_of_week=how, when="all hours" if how < 0 else how_label(how),
        steps=sum(i.kind == "step" for i in items), steps_done=len(steps),
        step_p50_s=percentile(steps, 0.5), step_p90_s=percentile(steps, 0.9),
        approvals_decided=len(decisions), decision_p50_s=percentile(decisions, 0.5),
        pages_answered=sum(i.kind == "page" and i.handled_at is not None for i in items),
        answer_p50_s=percentile(answers, 0.5),
    )  # fmt: skip


def build_workload(
    since: datetime,
    until: datetime,
    timezone: str,
    url: str | None = None,
    now: datetime | None = None,
) -> Workload:
    """Workload per role and hour of the week (in ``timezone``) over [since, until)."""
    zone = ZoneInfo(timezone)
    items = work_items(since, until, url)
    cells: dict[tuple[str, int], list[WorkItem]] = defaultdict(list)
    totals: dict[str, list[WorkItem]] = defaultdict(list)
    for item in items:
        cells[(item.role, hour_of_week(item.arrived, zone))].append(item)
        totals[item.role].append(item)
    rows = [_row(role, how, found) for (role, how), found in sorted(cells.items())]
    rows += [_row(role, -1, found) for role, found in sorted(totals.items())]
    return Workload(generated_at=now or datetime.now(UTC), since=utc(since),
                    until=utc(until), timezone=timezone, note=REACTIVE_NOTE, rows=rows)  # fmt: skip


def workload_csv(report: Workload) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(WorkloadRow.model_fields), lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        writer.writerow(row.model_dump())
    return buffer.getvalue()


def _m(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.0f}m"


def workload_table(report: Workload, *, hours: bool = False) -> str:
    """Per role (and, with ``hours``, per role and hour of the week) as a plain-text table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Workload {report.since:%Y-%m-%d} to {report.until:%Y-%m-%d} "
                        f"({report.timezone}); {report.note}")  # fmt: skip
    for name in ("role", "when", "steps", "done", "step p50", "step p90", "decided",
                 "decision p50", "pages answered", "answer p50"):  # fmt: skip
        table.add_column(name)
    for r in report.rows:
        if hours or r.hour_of_week < 0:
            table.add_row(r.role, r.when, str(r.steps), str(r.steps_done), _m(r.step_p50_s),
                          _m(r.step_p90_s), str(r.approvals_decided), _m(r.decision_p50_s),
                          str(r.pages_answered), _m(r.answer_p50_s))  # fmt: skip
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined]
