"""The team lead's page: SLA attainment per playbook, step and severity, time to acknowledge and
to resolve, the backlog's age, each chart beside its data table with a CSV download; and who is on
call for each role now, with the hours of the next day where a role has nobody.

The figures are the API's SLA report (``api.records_routes.sla_report``: the same role check, and
a restricted playbook left out for anyone outside its group), computed from the records only.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from api import authz
from api.records_routes import sla_report
from console import board, charts, session
from console.pages import refusal_page
from console.web import page
from reports.report import Report
from roster import service as roster

router = APIRouter(prefix="/console")
ROLES = sorted(authz.RESPONDERS)
GAP_HOURS, GAP_STEP = 24, 2
TABLES = ("playbooks", "steps", "severities", "response", "backlog", "oncall")


@dataclass(frozen=True)
class Table:
    """One chart's data: a title, column names and rows (what the CSV download holds)."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[object, ...]]
    chart: str = ""


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 1)


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def _severities(report: Report) -> list[tuple[object, ...]]:
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for g in report.groups:
        t = tally[g.severity]
        t[0], t[1], t[2] = t[0] + g.met + g.warned, t[1] + g.breached, t[2] + g.incidents
    out: list[tuple[object, ...]] = []
    for severity, (ok, breached, count) in sorted(tally.items()):
        rate = round(100 * ok / (ok + breached), 1) if ok + breached else None
        out.append((severity, count, ok, breached, rate))
    return out


def oncall(url: str, now: datetime) -> tuple[list[tuple[object, ...]], list[tuple[str, str]]]:
    """Who holds each role now, and (role, hour) slots of the next day with nobody."""
    rows: list[tuple[object, ...]] = []
    gaps = []
    for role in ROLES:
        rows.append((role, ", ".join(roster.holders(role, now, url=url)) or "nobody"))
        for h in range(0, GAP_HOURS, GAP_STEP):
            at = now + timedelta(hours=h)
            if not roster.holders(role, at, url=url):
                gaps.append((role, at.strftime("%Y-%m-%d %H:00 UTC")))
    return rows, gaps


async def tables(
    request: Request, who: session.Viewer
) -> tuple[list[Table], list[tuple[str, str]]]:
    report = await sla_report(request, who, since=None, playbook=[], format="json")
    assert isinstance(report, Report)
    url = request.app.state.settings.effective_database_url
    now = datetime.now(UTC)
    ages = await asyncio.to_thread(board.backlog_ages, url, who, now)
    on_call, gaps = await asyncio.to_thread(oncall, url, now)
    groups = [(f"{g.playbook} {g.severity}", g) for g in report.groups]
    made = [
        Table("playbooks", "SLA attainment per playbook and severity (%)",
              ("playbook and severity", "incidents", "met", "warned", "breached", "attainment %"),
              [(k, g.incidents, g.met, g.warned, g.breached, _pct(g.attainment)) for k, g in groups]),
        Table("steps", "SLA attainment per step (%)",
              ("playbook", "severity", "step", "clocks", "breached", "attainment %"),
              [(s.playbook, s.severity, s.step, s.clocks, s.breached, _pct(s.attainment))
               for s in report.steps]),
        Table("severities", "SLA attainment per severity (%)",
              ("severity", "incidents", "met or warned", "breached", "attainment %"),
              _severities(report)),
        Table("response", "Median time to acknowledge and to resolve (hours)",
              ("playbook and severity", "ack median h", "ack p90 h", "resolve median h",
               "resolve p90 h"),
              [(k, _hours(g.ack_median_s), _hours(g.ack_p90_s), _hours(g.resolve_median_s),
                _hours(g.resolve_p90_s)) for k, g in groups]),
        Table("backlog", "Backlog age: open incidents, oldest first (hours)",
              ("incident", "age h"), [(i, round(a, 2)) for i, a in ages[:50]]),
        Table("oncall", "Who is on call now", ("role", "on call"), on_call),
    ]  # fmt: skip
    charted = {"playbooks": (0, 5, "%"), "steps": (2, 5, "%"), "severities": (0, 4, "%"),
               "response": (0, 1, " h"), "backlog": (0, 1, " h")}  # fmt: skip
    out = []
    for t in made:
        if t.name in charted:
            label, value, unit = charted[t.name]
            points: list[tuple[str, float | None]] = [
                (str(r[label]), float(v) if isinstance(v := r[value], int | float) else None)
                for r in t.rows[:25]
            ]
            top = 100.0 if unit == "%" else None
            svg = charts.bars(t.title, points, unit=unit, maximum=top, chart_id=f"chart-{t.name}")
            t = Table(t.name, t.title, t.columns, t.rows, svg)
        out.append(t)
    return out, gaps


@router.get("/lead", response_class=HTMLResponse, include_in_schema=False)
async def lead(request: Request) -> Response:
    who = session.viewer(request)
    try:
        made, gaps = await tables(request, who)
    except Exception as err:  # noqa: BLE001 - the API's handler decides the status and words
        return await refusal_page(request, who, err)
    return page(request, "lead.html", who, tables=made, gaps=gaps)


@router.get("/lead/{name}.csv", include_in_schema=False)
async def lead_csv(request: Request, name: str) -> Response:
    who = session.viewer(request)
    try:
        made, _ = await tables(request, who)
    except Exception as err:  # noqa: BLE001
        return await refusal_page(request, who, err)
    table = next((t for t in made if t.name == name), None)
    if table is None:
        return PlainTextResponse(f"name: one of {', '.join(TABLES)}", 404)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    return PlainTextResponse(out.getvalue(), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})  # fmt: skip
