"""Transparency and regulatory figures: the law-enforcement and government requests answered in a
period, by type, jurisdiction and outcome, with the accounts they named and the time to respond;
child-safety reports sent; user notices delayed under a legal basis.

Read only from ``request_records`` (written beside the projection by ``records/requests.py``), so
every cell can be traced to incidents: ``incident transparency --from --to`` (``insights/cli.py``)
and the console call ``build_transparency`` and a renderer.

Definitions (the tests compute them by hand):
- a request is in the period when it was received (its incident opened) in [from, to);
- time to respond = answered (data produced, records preserved, or the request rejected) minus
  received, over the answered requests; median and p90 interpolate between order statistics;
- child-safety reports sent = CyberTipline reports submitted in [from, to), whenever the incident
  opened; accounts = the accounts those reports named;
- notices delayed = requests of the period whose user notice was delayed, per legal basis.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import NamedTuple

from pydantic import BaseModel
from sqlmodel import Session, col, select

from records.requests import CHILD_SAFETY, NOTICE_BASES, REQUEST_TYPES
from records.tables import RequestRecord, records_engine, utc
from reports.report import percentile

REQUEST_OUTCOMES = ("disclosed", "partially", "rejected", "withdrawn", "preserved", "pending")


class Figures(BaseModel):
    """Requests of one slice: how many, the accounts they named, how each ended, how fast."""

    requests: int = 0
    accounts: int = 0
    disclosed: int = 0
    partially: int = 0
    rejected: int = 0
    withdrawn: int = 0
    preserved: int = 0
    pending: int = 0
    answered: int = 0
    respond_median_s: float | None = None
    respond_p90_s: float | None = None


class SliceRow(Figures):
    request_type: str  # emergency_disclosure, preservation, legal_process, or * (all)
    process_type: str  # legal process: subpoena, court_order, warrant; else *
    jurisdiction: str  # us, eu, uk, other, unknown; or * (all)


class NoticeRow(BaseModel):
    basis: str
    meaning: str
    requests: int


class Transparency(BaseModel):
    generated_at: datetime
    start: datetime
    end: datetime
    by_type: list[SliceRow]  # per request type and process type, all jurisdictions
    by_jurisdiction: list[SliceRow]  # per request type and jurisdiction
    total: SliceRow
    child_safety_reports: int
    child_safety_accounts: int
    notices_delayed: list[NoticeRow]


class RequestFacts(NamedTuple):
    request_type: str
    process_type: str | None
    jurisdiction: str
    outcome: str
    accounts: int
    opened_at: datetime
    responded_at: datetime | None
    notice_basis: str | None


def _figures(rows: list[RequestFacts]) -> dict[str, int | float | None]:
    outcomes = Counter(r.outcome for r in rows)
    waits = [
        (utc(r.responded_at) - utc(r.opened_at)).total_seconds()
        for r in rows
        if r.responded_at is not None
    ]
    return {
        "requests": len(rows),
        "accounts": sum(r.accounts for r in rows),
        **{o: outcomes.get(o, 0) for o in REQUEST_OUTCOMES},
        "answered": len(waits),
        "respond_median_s": percentile(waits, 0.5),
        "respond_p90_s": percentile(waits, 0.9),
    }


def _slices(rows: list[RequestFacts], key: str) -> list[SliceRow]:
    groups: dict[tuple[str, str, str], list[RequestFacts]] = defaultdict(list)
    for r in rows:
        if key == "type":
            groups[(r.request_type, r.process_type or "*", "*")].append(r)
            if r.process_type:  # legal process: its subtotal over every process type too
                groups[(r.request_type, "*", "*")].append(r)
        else:
            groups[(r.request_type, "*", r.jurisdiction)].append(r)
    order = {name: n for n, name in enumerate(REQUEST_TYPES)}
    return [
        SliceRow(request_type=t, process_type=p, jurisdiction=j, **_figures(found))  # type: ignore[arg-type]
        for (t, p, j), found in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0]))
    ]


def build_transparency(
    start: datetime, end: datetime, url: str | None = None, now: datetime | None = None
) -> Transparency:
    """Every figure for requests received in [start, end) and reports sent in it."""
    start, end = utc(start), utc(end)
    columns = [getattr(RequestRecord, name) for name in RequestFacts._fields]
    with Session(records_engine(url)) as s:
        rows = [
            RequestFacts(*row)
            for row in s.exec(
                select(*columns).where(
                    col(RequestRecord.request_type).in_(REQUEST_TYPES),
                    col(RequestRecord.opened_at) >= start,
                    col(RequestRecord.opened_at) < end,
                )
            )
        ]
        reports = s.exec(
            select(RequestRecord.accounts).where(
                RequestRecord.request_type == CHILD_SAFETY,
                col(RequestRecord.report_sent_at) >= start,
                col(RequestRecord.report_sent_at) < end,
            )
        ).all()
    bases = Counter(r.notice_basis for r in rows if r.notice_basis)
    return Transparency(
        generated_at=now or datetime.now(UTC),
        start=start,
        end=end,
        by_type=_slices(rows, "type"),
        by_jurisdiction=_slices(rows, "jurisdiction"),
        total=SliceRow(request_type="*", process_type="*", jurisdiction="*", **_figures(rows)),  # type: ignore[arg-type]
        child_safety_reports=len(reports),
        child_safety_accounts=sum(reports),
        notices_delayed=[
            NoticeRow(basis=b, meaning=m, requests=bases.get(b, 0)) for b, m in NOTICE_BASES.items()
        ],
    )


# --- Rendering ----------------------------------------------------------------------------------

CSV_COLUMNS = ["section", "request_type", "process_type", "jurisdiction", *Figures.model_fields]


def to_csv(report: Transparency) -> str:
    """One flat table: ``section`` is type, jurisdiction, total, child_safety or notice."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    for section, rows in (
        ("type", report.by_type),
        ("jurisdiction", report.by_jurisdiction),
        ("total", [report.total]),
    ):
        for row in rows:
            writer.writerow({"section": section, **row.model_dump()})
    writer.writerow({"section": "child_safety_reports", "request_type": CHILD_SAFETY,
                     "requests": report.child_safety_reports,
                     "accounts": report.child_safety_accounts})  # fmt: skip
    for notice in report.notices_delayed:
        writer.writerow({"section": f"notice_delayed:{notice.basis}", "requests": notice.requests})
    return buffer.getvalue()


def to_json(report: Transparency) -> str:
    return report.model_dump_json(indent=2)


def _hours(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.1f}h"


def to_table(report: Transparency) -> str:
    """The figures as plain-text tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=io.StringIO(), width=190, color_system=None)
    heads = ("type", "process", "jurisd.", "requests", "accounts", "disclosed", "partially",
             "rejected", "withdrawn", "preserved", "pending", "respond p50", "p90")  # fmt: skip
    period = f"{report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC"
    for title, rows in (
        (f"Requests by type, received {period}", [*report.by_type, report.total]),
        ("Requests by jurisdiction", report.by_jurisdiction),
    ):
        table = Table(title=title)
        for name in heads:
            table.add_column(name)
        for r in rows:
            table.add_row(
                r.request_type, r.process_type, r.jurisdiction, str(r.requests), str(r.accounts),
                str(r.disclosed), str(r.partially), str(r.rejected), str(r.withdrawn),
                str(r.preserved), str(r.pending), _hours(r.respond_median_s),
                _hours(r.respond_p90_s),
            )  # fmt: skip
        console.print(table)
    console.print(
        f"Child-safety reports sent (CyberTipline): {report.child_safety_reports}, naming "
        f"{report.child_safety_accounts} accounts"
    )
    for n in report.notices_delayed:
        console.print(f"User notice delayed, {n.meaning}: {n.requests}")
    return console.file.getvalue()  # type: ignore[attr-defined]
