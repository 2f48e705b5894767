"""The SLA and operations report: how the team performs against its playbooks' SLAs.

Read only from the records database (the projection and SLA outcomes written by ``records.append``),
never from Temporal, so it is cheap to run on demand (``incident report``) and every morning from a
Temporal Schedule (``incident schedule daily-report``) that posts the summary to Slack.

Definitions (the tests compute them by hand):
- groups are (playbook, current severity); steps are SLA clocks by name, ``incident.acknowledge``
  and ``incident.resolve`` included;
- a clock's outcome is ``breached`` if it ever breached, ``pending`` while running, ``not_met`` when
  its step never finished (the incident closed or ended first: shown apart, not in attainment),
  else ``warned`` (stopped after its warning) or ``met``;
  attainment = (met + warned) / (met + warned + breached);
- time to acknowledge / resolve = acknowledged / closed minus opened; median and p90 interpolate
  linearly between order statistics;
- backlog = incidents not closed; past due = backlog with a running clock breached or past its due;
- escalation rate = incidents whose severity changed or that ran an escalation / incidents.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel
from sqlalchemy import ColumnElement, distinct, func, or_
from sqlalchemy import select as sql_select  # counts: more columns than sqlmodel's overloads
from sqlmodel import Session, col, select

from playbooks.loader import scan_playbooks
from playbooks.schema import format_duration, parse_duration
from records.tables import IncidentRecord, SlaOutcome, records_engine, utc

OUTCOMES = ("met", "warned", "breached", "pending", "not_met")


class Counts(BaseModel):
    """SLA clock outcomes and the share that did not breach."""

    met: int = 0
    warned: int = 0
    breached: int = 0
    pending: int = 0
    not_met: int = 0  # the step never finished (closed or ended before it ran): shown apart
    attainment: float | None = None


class GroupRow(Counts):
    playbook: str
    severity: str
    incidents: int
    open: int
    past_due: int
    escalated: int
    escalation_rate: float | None
    ack_median_s: float | None
    ack_p90_s: float | None
    resolve_median_s: float | None
    resolve_p90_s: float | None


class StepRow(Counts):
    playbook: str
    severity: str
    step: str
    clocks: int


class Report(BaseModel):
    generated_at: datetime
    since: datetime | None
    playbooks: list[str]
    groups: list[GroupRow]
    steps: list[StepRow]
    total: GroupRow


def recorded_playbooks(url: str | None = None) -> set[str]:
    """Playbooks that incidents in the records ran (a retired playbook is still reportable)."""
    with Session(records_engine(url)) as s:
        return set(s.exec(select(IncidentRecord.playbook).distinct()).all())


def known_playbooks(playbooks_dir: Path, url: str | None = None) -> set[str]:
    """What a report may be asked about: the valid playbooks on disk and every recorded one."""
    return {lp.playbook.name for lp in scan_playbooks(playbooks_dir)[0]} | recorded_playbooks(url)


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between order statistics (numpy's default), None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _counts(tally: dict[str, int]) -> dict[str, int | float | None]:
    counts = {name: tally.get(name, 0) for name in OUTCOMES}
    decided = counts["met"] + counts["warned"] + counts["breached"]
    rate = (counts["met"] + counts["warned"]) / decided if decided else None
    return {**counts, "attainment": rate}


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else (end - start).total_seconds()


def _group(
    key: tuple[str, str], incidents: list[IncidentFacts], tally: dict[str, int], past_due: int
) -> GroupRow:
    ack = [v for i in incidents if (v := _seconds(i.opened_at, i.acknowledged_at)) is not None]
    res = [v for i in incidents if (v := _seconds(i.opened_at, i.closed_at)) is not None]
    escalated = sum(i.escalated for i in incidents)
    return GroupRow(
        playbook=key[0],
        severity=key[1],
        incidents=len(incidents),
        open=sum(i.status != "closed" for i in incidents),
        past_due=past_due,
        escalated=escalated,
        escalation_rate=escalated / len(incidents) if incidents else None,
        ack_median_s=percentile(ack, 0.5),
        ack_p90_s=percentile(ack, 0.9),
        resolve_median_s=percentile(res, 0.5),
        resolve_p90_s=percentile(res, 0.9),
        **_counts(tally),
    )


class IncidentFacts(NamedTuple):
    """What the report reads of an incident's projection: these columns, not whole ORM rows."""

    incident_id: str
    playbook: str
    severity: str
    status: str
    opened_at: datetime
    acknowledged_at: datetime | None
    closed_at: datetime | None
    escalated: bool


def _scope(since: datetime | None, playbooks: list[str], scoped: bool) -> list[ColumnElement[bool]]:
    where = []
    if since is not None:
        where.append(col(IncidentRecord.opened_at) >= utc(since))
    if playbooks or scoped:
        where.append(col(IncidentRecord.playbook).in_(playbooks))
    return where


def _incidents(s: Session, where: list[ColumnElement[bool]]) -> list[IncidentFacts]:
    columns = [getattr(IncidentRecord, name) for name in IncidentFacts._fields]
    return [IncidentFacts(*row) for row in s.exec(select(*columns).where(*where))]


def load(
    since: datetime | None, playbooks: list[str], url: str | None = None, *, scoped: bool = False
) -> list[IncidentFacts]:
    """The incidents in scope (the chart's input). ``playbooks`` empty means every playbook,
    unless ``scoped``: then it is the whole scope, even when empty."""
    with Session(records_engine(url)) as s:
        return _incidents(s, _scope(since, playbooks, scoped))


def build_report(
    since: datetime | None = None,
    playbooks: list[str] | None = None,
    now: datetime | None = None,
    url: str | None = None,
    *,
    scoped: bool = False,
) -> Report:
    """Compute every figure of the report; ``now`` decides what is past due. ``scoped``: the
    incidents of ``playbooks`` only, even none (the API passes the playbooks its caller may see).

    Three queries: the incidents in scope (a few columns each), the count of their SLA outcomes
    per group, step and outcome, and per group how many open incidents have a running clock
    breached or past its due. The outcomes are counted by the database, never loaded: over 100,000
    incidents and half a million clocks (``make bench-report``) that is most of the time saved.
    On PostgreSQL the three read one snapshot."""
    now = now or datetime.now(UTC)
    where = _scope(since, playbooks or [], scoped)
    group = (col(IncidentRecord.playbook), col(IncidentRecord.severity))
    joined = col(IncidentRecord.incident_id) == col(SlaOutcome.incident_id)
    eng = records_engine(url)
    with Session(eng) as s:
        snapshot = (
            {"isolation_level": "REPEATABLE READ"} if eng.dialect.name == "postgresql" else {}
        )
        conn = s.connection(execution_options=snapshot)
        incidents = _incidents(s, where)
        tallies = conn.execute(
            sql_select(*group, col(SlaOutcome.clock), col(SlaOutcome.outcome), func.count())
            .select_from(SlaOutcome)
            .join(IncidentRecord, joined)
            .where(*where)
            .group_by(*group, col(SlaOutcome.clock), col(SlaOutcome.outcome))
        ).all()
        overdue = conn.execute(
            sql_select(*group, func.count(distinct(col(IncidentRecord.incident_id))))
            .select_from(SlaOutcome)
            .join(IncidentRecord, joined)
            .where(
                *where,
                col(IncidentRecord.status) != "closed",
                col(SlaOutcome.stopped_at).is_(None),
                or_(col(SlaOutcome.breached_at).is_not(None), col(SlaOutcome.due_at) <= utc(now)),
            )
            .group_by(*group)
        ).all()
    by_group: dict[tuple[str, str], list[IncidentFacts]] = defaultdict(list)
    for incident in incidents:
        by_group[(incident.playbook, incident.severity)].append(incident)
    group_tally: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    step_tally: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    for playbook, severity, clock, outcome, count in tallies:
        group_tally[(playbook, severity)][outcome] += count
        step_tally[(playbook, severity, clock)][outcome] += count
    past_due = {(playbook, severity): count for playbook, severity, count in overdue}
    return Report(
        generated_at=now,
        since=since,
        playbooks=playbooks or [],
        groups=[
            _group(k, v, group_tally[k], past_due.get(k, 0)) for k, v in sorted(by_group.items())
        ],
        steps=[
            StepRow(playbook=k[0], severity=k[1], step=k[2], clocks=v.total(), **_counts(v))
            for k, v in sorted(step_tally.items())
        ],
        total=_group(
            ("*", "*"), incidents, sum(group_tally.values(), Counter()), sum(past_due.values())
        ),
    )


# --- Rendering ----------------------------------------------------------------------------------

CSV_COLUMNS = [
    "level", "playbook", "severity", "step", "count", "open", "past_due", "escalation_rate",
    "ack_median_s", "ack_p90_s", "resolve_median_s", "resolve_p90_s",
    "met", "warned", "breached", "pending", "not_met", "attainment",
]  # fmt: skip


def to_csv(report: Report) -> str:
    """One flat table: a row per group, per step and the total (``level`` tells which)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for level, row in [("group", g) for g in report.groups] + [("total", report.total)]:
        data = row.model_dump()
        writer.writerow(
            {k: data.get(k) for k in CSV_COLUMNS}
            | {"level": level, "step": "", "count": row.incidents}
        )
    for step in report.steps:
        data = step.model_dump()
        writer.writerow(
            {k: data.get(k) for k in CSV_COLUMNS} | {"level": "step", "count": step.clocks}
        )
    return buffer.getvalue()


def to_json(report: Report) -> str:
    return report.model_dump_json(indent=2)


def _dur(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(timedelta(seconds=round(seconds)))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def to_table(report: Report) -> str:
    """Two rich tables (groups, then steps) rendered to plain text."""
    from rich.console import Console
    from rich.table import Table

    groups = Table(title="Incidents by playbook and severity")
    for name in ("playbook", "sev", "n", "open", "past due", "ack p50", "ack p90", "resolve p50",
                 "resolve p90", "escalated", "met", "warned", "breached", "not met",
                 "attain"):  # fmt: skip
        groups.add_column(name)
    for g in [*report.groups, report.total]:
        groups.add_row(
            g.playbook, g.severity, str(g.incidents), str(g.open), str(g.past_due),
            _dur(g.ack_median_s), _dur(g.ack_p90_s), _dur(g.resolve_median_s),
            _dur(g.resolve_p90_s), _pct(g.escalation_rate), str(g.met), str(g.warned),
            str(g.breached), str(g.not_met), _pct(g.attainment),
        )  # fmt: skip
    steps = Table(title="SLA attainment by step")
    for name in ("playbook", "sev", "step", "clocks", "met", "warned", "breached", "pending",
                 "not met", "attain"):  # fmt: skip
        steps.add_column(name)
    for s in report.steps:
        steps.add_row(
            s.playbook, s.severity, s.step, str(s.clocks), str(s.met), str(s.warned),
            str(s.breached), str(s.pending), str(s.not_met), _pct(s.attainment),
        )  # fmt: skip
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(groups)
    console.print(steps)
    return console.file.getvalue()  # type: ignore[attr-defined]


def summary_text(report: Report, window: str) -> str:
    """A few lines for Slack: volume, backlog, attainment, worst steps, speed, escalations."""
    t = report.total
    worst = sorted((s for s in report.steps if s.breached), key=lambda s: (-s.breached, s.step))
    lines = [
        f"*Incident report, last {window}* ({report.generated_at:%Y-%m-%d %H:%M} UTC)",
        f"{t.incidents} incidents, {t.open} open, {t.past_due} open and past due",
        f"SLA attainment {_pct(t.attainment)} (met {t.met}, warned {t.warned}, "
        f"breached {t.breached}, pending {t.pending})",
        f"Time to acknowledge p50 {_dur(t.ack_median_s)} / p90 {_dur(t.ack_p90_s)}; "
        f"to resolve p50 {_dur(t.resolve_median_s)} / p90 {_dur(t.resolve_p90_s)}",
        f"Escalation rate {_pct(t.escalation_rate)}",
    ]
    if worst:
        top = ", ".join(f"{s.playbook}/{s.step} ({s.breached})" for s in worst[:3])
        lines.append(f"Most breaches: {top}")
    return "\n".join(lines)


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """``2026-01-31``, an ISO date-time, or a look-back such as ``7d`` / ``24h``."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return (now or datetime.now(UTC)) - parse_duration(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
