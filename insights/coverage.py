"""Coverage: for each role and hour of the coming weeks, who is scheduled against the demand seen
in the same hour of past weeks, and the gaps.

Who is scheduled comes from the roster as the on-call answer reads it (``roster/service.py``):
the active people of an override covering the hour, else whoever is on shift in the role's
rotations (at the half hour), less anyone on declared leave (``roster/work.py``). Unlike that answer, a role with neither has **nobody on call** here:
its work then reaches everyone granted the role, which is exactly what a coverage gap is.

Demand comes from the work items of ``insights/workload.py`` (steps the role owns, approvals,
pages answered). The method, stated in every output (``METHOD``):
- forecast of a role's hour = the mean and the 90th percentile (linear interpolation) of the work
  items that arrived in that hour of the week in each of the last ``lookback`` weeks, a week
  without any counting as zero;
- capacity of an hour = the sum over the people scheduled of what each handled at most in one
  hour over the same weeks (decisions taken, pages answered), at least 1 each;
- a gap is an hour with **nobody on call** where the role has a rotation or override at all or
  demand was seen, or **over capacity**: the forecast's p90 above the capacity.

``build_coverage`` returns the data; the daily coverage check (``CoverageCheckWorkflow``) pages
the team lead with ``gap_summary`` of the next 24 hours.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlmodel import Session, select

from insights.workload import UNANSWERED, hour_of_week, how_label, work_items
from records.tables import utc
from reports.report import percentile
from roster.service import on_shift
from roster.tables import DeclaredWork, Override, Person, RoleGrant, Rotation, roster_engine

WEEK = timedelta(days=7)
METHOD = (
    "Forecast per role and hour of the week: mean and p90 (linear interpolation) of the work "
    "items (steps owned, approvals, pages answered) that arrived in that hour in each of the "
    "last {lookback} weeks, weeks without any counted as zero. Capacity: the sum over the people "
    "scheduled (override, else rotation shift, not on leave) of the most each handled in one "
    "hour over those "
    "weeks, at least 1 each. Gap: nobody on call where the role is scheduled at all or demand "
    "was seen; over capacity where the p90 exceeds the capacity."
)
GAP_STATES = ("nobody_on_call", "over_capacity")


class Slot(BaseModel):
    role: str
    start: datetime  # local to the coverage's time zone
    hour_of_week: int
    scheduled: list[str]
    demand_mean: float
    demand_p90: float
    capacity: int
    status: str  # covered, over_capacity, nobody_on_call, idle


class Gap(BaseModel):
    """Consecutive hours of one role in the same gap state."""

    role: str
    status: str
    start: datetime
    end: datetime
    hours: int
    demand_p90: float  # the highest of its hours
    scheduled: list[str]


class Coverage(BaseModel):
    generated_at: datetime
    timezone: str
    weeks: int
    lookback_weeks: int
    method: str
    slots: list[Slot]
    gaps: list[Gap]


@dataclass
class Roster:
    """The roster as coverage reads it, loaded once."""

    active: set[str]
    granted: dict[str, set[str]]  # role -> people
    rotations: dict[str, list[Rotation]]
    overrides: dict[str, list[Override]]
    leave: dict[str, list[tuple[datetime, datetime]]]  # person -> declared leave

    def away(self, person: str, at: datetime) -> bool:
        return any(start <= at < end for start, end in self.leave.get(person, ()))


def load_roster(url: str | None = None) -> Roster:
    with Session(roster_engine(url)) as s:
        active = set(s.exec(select(Person.handle).where(Person.active == True)).all())  # noqa: E712
        granted: dict[str, set[str]] = defaultdict(set)
        for grant in s.exec(select(RoleGrant)):
            granted[grant.role].add(grant.person)
        rotations: dict[str, list[Rotation]] = defaultdict(list)
        for rotation in s.exec(select(Rotation)):
            rotations[rotation.role].append(rotation)
        overrides: dict[str, list[Override]] = defaultdict(list)
        for override in s.exec(select(Override)):
            overrides[override.role].append(override)
        leave: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
        for work in s.exec(select(DeclaredWork).where(DeclaredWork.kind == "leave")):
            leave[work.person].append((utc(work.start), utc(work.end)))
    return Roster(active=active, granted=dict(granted), rotations=dict(rotations),
                  overrides=dict(overrides), leave=dict(leave))  # fmt: skip


def scheduled(roster: Roster, role: str, at: datetime) -> list[str]:
    """Who is on call for ``role`` at ``at``: an override's people, else the rotations' shifts;
    someone on declared leave is not."""
    allowed = {p for p in roster.active & roster.granted.get(role, set()) if not roster.away(p, at)}
    covering = [o.person for o in sorted(roster.overrides.get(role, []), key=lambda o: (o.start, o.id or 0))
                if utc(o.start) <= at < utc(o.end)]  # fmt: skip
    for candidates in (covering, [on_shift(r, at) for r in roster.rotations.get(role, [])]):
        found = [p for p in dict.fromkeys(candidates) if p in allowed]
        if found:
            return found
    return []


def _status(slot_people: list[str], planned: bool, mean: float, p90: float, cap: int) -> str:
    if not slot_people:
        return "nobody_on_call" if planned or mean > 0 else "idle"
    return "over_capacity" if p90 > cap else "covered"


def _gaps(slots: list[Slot]) -> list[Gap]:
    gaps: list[Gap] = []
    for slot in slots:
        if slot.status not in GAP_STATES:
            continue
        last = gaps[-1] if gaps else None
        if (last and last.role == slot.role and last.status == slot.status
                and last.end == slot.start and last.scheduled == slot.scheduled):  # fmt: skip
            last.end, last.hours = slot.start + timedelta(hours=1), last.hours + 1
            last.demand_p90 = max(last.demand_p90, slot.demand_p90)
            continue
        gaps.append(Gap(role=slot.role, status=slot.status, start=slot.start,
                        end=slot.start + timedelta(hours=1), hours=1,
                        demand_p90=slot.demand_p90, scheduled=slot.scheduled))  # fmt: skip
    return gaps


def build_coverage(
    timezone: str,
    *,
    weeks: int = 2,
    hours: int | None = None,
    lookback: int = 8,
    now: datetime | None = None,
    url: str | None = None,
) -> Coverage:
    """Coverage of the coming ``weeks`` (or ``hours``) from the next full hour after ``now``."""
    zone = ZoneInfo(timezone)
    now = utc(now or datetime.now(UTC))
    base = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    items = work_items(base - lookback * WEEK, base, url)
    weekly: dict[tuple[str, int], Counter[int]] = defaultdict(Counter)
    per_hour: Counter[tuple[str, datetime]] = Counter()
    for item in items:
        week = int((base - item.arrived) / WEEK)
        weekly[(item.role, hour_of_week(item.arrived, zone))][week] += 1
        if item.handled_by and item.handled_at is not None:
            per_hour[
                (item.handled_by, item.handled_at.replace(minute=0, second=0, microsecond=0))
            ] += 1
    peak: dict[str, int] = defaultdict(int)
    for (person, _), count in per_hour.items():
        peak[person] = max(peak[person], count)
    roster = load_roster(url)
    planned = set(roster.rotations) | set(roster.overrides)
    roles = sorted((planned | {role for role, _ in weekly}) - {UNANSWERED, "system"})
    slots: list[Slot] = []
    for role in roles:
        for n in range(hours if hours is not None else weeks * 168):
            start = base + timedelta(hours=n)
            how = hour_of_week(start, zone)
            values = [float(weekly[(role, how)][w]) for w in range(lookback)]
            mean, p90 = sum(values) / lookback, percentile(values, 0.9) or 0.0
            people = scheduled(roster, role, start + timedelta(minutes=30))
            cap = sum(max(1, peak[p]) for p in people)
            slots.append(Slot(role=role, start=start.astimezone(zone), hour_of_week=how,
                              scheduled=people, demand_mean=round(mean, 4),
                              demand_p90=round(p90, 4), capacity=cap,
                              status=_status(people, role in planned, mean, p90, cap)))  # fmt: skip
    return Coverage(generated_at=now, timezone=timezone, weeks=weeks, lookback_weeks=lookback,
                    method=METHOD.format(lookback=lookback), slots=slots,
                    gaps=_gaps(slots))  # fmt: skip


def gap_summary(coverage: Coverage, limit: int = 5) -> str:
    """A page's text: how many gaps, the first few; "" when there is none."""
    if not coverage.gaps:
        return ""
    first = "; ".join(
        f"{g.role} {g.status.replace('_', ' ')} {g.start:%a %H:%M}-{g.end:%H:%M}"
        + (f" (p90 {g.demand_p90:g}, on call: {', '.join(g.scheduled)})" if g.scheduled else "")
        for g in coverage.gaps[:limit]
    )
    more = f" and {len(coverage.gaps) - limit} more" if len(coverage.gaps) > limit else ""
    return f"Coverage gaps in the next 24 h ({coverage.timezone}): {first}{more}"


# --- Rendering ----------------------------------------------------------------------------------


def coverage_csv(coverage: Coverage) -> str:
    """Every slot: role, start, hour of week, scheduled, forecast, capacity, status."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["role", "start", "hour_of_week", "when", "scheduled", "demand_mean",
                     "demand_p90", "capacity", "status"])  # fmt: skip
    for s in coverage.slots:
        writer.writerow([s.role, s.start.isoformat(), s.hour_of_week, how_label(s.hour_of_week),
                         " ".join(s.scheduled), s.demand_mean, s.demand_p90, s.capacity,
                         s.status])  # fmt: skip
    return buffer.getvalue()


def coverage_table(coverage: Coverage) -> str:
    """Per role: hours covered and in each gap state; then every gap; then the method."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=io.StringIO(), width=160, color_system=None)
    summary = Table(title=f"Coverage, next {coverage.weeks} week(s) ({coverage.timezone})")
    for name in ("role", "covered h", "over capacity h", "nobody on call h", "idle h",
                 "peak p90"):  # fmt: skip
        summary.add_column(name)
    for role in sorted({s.role for s in coverage.slots}):
        mine = [s for s in coverage.slots if s.role == role]
        states = Counter(s.status for s in mine)
        summary.add_row(role, str(states["covered"]), str(states["over_capacity"]),
                        str(states["nobody_on_call"]), str(states["idle"]),
                        f"{max(s.demand_p90 for s in mine):g}")  # fmt: skip
    console.print(summary)
    gaps = Table(title=f"Gaps ({len(coverage.gaps)})")
    for name in ("role", "gap", "from", "to", "hours", "p90", "on call"):
        gaps.add_column(name)
    for g in coverage.gaps:
        gaps.add_row(g.role, g.status.replace("_", " "), f"{g.start:%a %Y-%m-%d %H:%M}",
                     f"{g.end:%a %H:%M}", str(g.hours), f"{g.demand_p90:g}",
                     ", ".join(g.scheduled) or "-")  # fmt: skip
    console.print(gaps)
    console.print(f"Method: {coverage.method}")
    return console.file.getvalue()  # type: ignore[attr-defined]
