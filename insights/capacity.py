"""Operating capacity per person: reactive case work (on call, and the work they handled) against
declared project work and training, over a period.

- on-call hours: the hours someone was scheduled for any role (``insights/coverage.py``'s rule:
  an override, else the rotations' shifts, not on leave), each hour counted once per person;
- declared hours: the overlap of their declared work with the period, by kind (``roster/work.py``);
- handled: the work items they handled in the period (steps done, decisions, pages answered:
  ``insights/workload.py``), and how many of those while on call;
- reactive share = on-call hours / (on-call + project + training hours): leave is neither.

Only roles with a rotation or an override count towards on-call hours: without one, a role's work
reaches everyone who holds it and nobody is on call for it.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel

from insights.coverage import load_roster, scheduled
from insights.workload import work_items
from records.tables import utc
from roster.work import KINDS, list_work

HOUR = timedelta(hours=1)


class CapacityRow(BaseModel):
    person: str
    roles: list[str]
    on_call_hours: int
    declared_hours: dict[str, float]  # project, training, leave
    handled: int
    handled_on_call: int
    reactive_share: float | None


class Capacity(BaseModel):
    generated_at: datetime
    since: datetime
    until: datetime
    method: str
    rows: list[CapacityRow]


METHOD = (
    "On-call hours: hours scheduled for any role with a rotation or override (not on leave), "
    "once per person. Handled: steps done, decisions and pages answered. Reactive share: on-call "
    "hours / (on-call + project + training hours)."
)


def build_capacity(
    since: datetime,
    until: datetime,
    url: str | None = None,
    playbooks_dir: Path | None = None,
    now: datetime | None = None,
) -> Capacity:
    """Each active person's capacity figures over [since, until) (whole hours)."""
    since = utc(since).replace(minute=0, second=0, microsecond=0)
    until = utc(until)
    roster = load_roster(url)
    planned = sorted(set(roster.rotations) | set(roster.overrides))
    on_call_at: dict[str, set[datetime]] = defaultdict(set)
    hour = since
    while hour < until:
        for role in planned:
            for person in scheduled(roster, role, hour + HOUR / 2):
                on_call_at[person].add(hour)
        hour += HOUR
    declared: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(KINDS, 0.0))
    for work in list_work(since, until, url=url):
        overlap = min(utc(work.end), until) - max(utc(work.start), since)
        declared[work.person][work.kind] += overlap.total_seconds() / 3600
    handled, while_on_call = Counter[str](), Counter[str]()
    for item in work_items(since - timedelta(days=7), until, url, playbooks_dir):
        at = item.handled_at
        if item.handled_by and at is not None and since <= at < until:
            handled[item.handled_by] += 1
            if at.replace(minute=0, second=0, microsecond=0) in on_call_at[item.handled_by]:
                while_on_call[item.handled_by] += 1
    rows = []
    for person in sorted(roster.active):
        hours = len(on_call_at[person])
        busy = hours + declared[person]["project"] + declared[person]["training"]
        roles = sorted(r for r, people in roster.granted.items() if person in people)
        rows.append(CapacityRow(
            person=person, roles=roles, on_call_hours=hours,
            declared_hours={k: round(declared[person][k], 2) for k in KINDS},
            handled=handled[person], handled_on_call=while_on_call[person],
            reactive_share=round(hours / busy, 4) if busy else None,
        ))  # fmt: skip
    return Capacity(generated_at=now or datetime.now(UTC), since=since, until=until,
                    method=METHOD, rows=rows)  # fmt: skip


def capacity_csv(report: Capacity) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["person", "roles", "on_call_hours", *(f"{k}_hours" for k in KINDS),
                     "handled", "handled_on_call", "reactive_share"])  # fmt: skip
    for r in report.rows:
        writer.writerow([r.person, " ".join(r.roles), r.on_call_hours,
                         *(r.declared_hours[k] for k in KINDS), r.handled, r.handled_on_call,
                         "" if r.reactive_share is None else r.reactive_share])  # fmt: skip
    return buffer.getvalue()


def capacity_table(report: Capacity) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Capacity {report.since:%Y-%m-%d} to {report.until:%Y-%m-%d} (UTC)")
    for name in ("person", "roles", "on call h", "project h", "training h", "leave h",
                 "handled", "on call", "reactive share"):  # fmt: skip
        table.add_column(name)
    for r in report.rows:
        share = "-" if r.reactive_share is None else f"{r.reactive_share:.0%}"
        table.add_row(r.person, ", ".join(r.roles), str(r.on_call_hours),
                      *(f"{r.declared_hours[k]:g}" for k in KINDS), str(r.handled),
                      str(r.handled_on_call), share)  # fmt: skip
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(table)
    console.print(f"Method: {report.method}")
    return console.file.getvalue()  # type: ignore[attr-defined]
