"""Transparency figures over a known set of requests, every cell checked (SQLite and PostgreSQL).

Period: March 2026 (received 2026-03-01 to 2026-03-31 inclusive). Minutes after each opening:
  E1 emergency-disclosure us, accounts a1,a2: data produced at 60 -> disclosed; notice: emergency.
  E2 emergency-disclosure eu, 1 account: legal-determination rejected at 30 -> rejected.
  E3 emergency-disclosure us, 1 account, disclosure partial, produced at 120 -> partially; Legal
     rejected user notice -> legal_bar.
  E4 emergency-disclosure us, 1 account: first recorded open (pending), then closed -> withdrawn.
  P1 preservation us, accounts x;y;z: snapshot taken at 600 -> preserved.
  P2 preservation uk, 1 account, open -> pending.
  L1 legal-process subpoena us, NDO, produced at 1440 -> disclosed; notice: ndo.
  L2 legal-process warrant eu: legal-review rejected at 2880 -> rejected.
  L3 legal-process subpoena us received in February -> outside the period.
  C1 child-safety, accounts c1,c2, CyberTipline report at 300 -> sent in March.
  C2 child-safety opened 2026-02-28 23:00, report at 120 (March 1st) -> sent in March, 1 account.
  C3 child-safety, no report yet -> not sent.  A1 account-takeover -> no request at all.

Totals: 8 requests, 11 accounts; disclosed 2, partially 1, rejected 2, withdrawn 1, preserved 1,
pending 1; answered in [30, 60, 120, 600, 1440, 2880] min -> p50 360 min, p90 1440 + 0.5 * 1440 =
2160 min. Emergency: 4, 5 accounts, [30, 60, 120] -> p50 60, p90 60 + 0.8 * 60 = 108 min.
Preservation: 2, 4 accounts, [600]. Legal process: 2, 2 accounts, [1440, 2880] -> p50 2160,
p90 1440 + 0.9 * 1440 = 2736 min. Child safety: 2 reports, 3 accounts. Notices: ndo 1,
emergency 1, legal_bar 1.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from matplotlib.image import imread
from sqlmodel import Session, select

from insights.transparency import build_transparency, to_csv, to_json, to_table
from records.chain import write_batch
from records.requests import count_ids
from records.tables import RequestRecord, records_engine
from starter import run
from tests.records_db import batch, both_backends, entry, records_url, state
from workflows.models import Decision, PendingApproval, StepState

pytestmark = [both_backends, pytest.mark.usefixtures(records_url.__name__)]
START, END = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
MARCH = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
ED, PR, LP, CS = "emergency-disclosure", "preservation", "legal-process", "child-safety"


def _step(name: str, base: datetime, minutes: float) -> StepState:
    return StepState(step_id=name, kind="wait_for", status="completed", started_at=base,
                     finished_at=base + timedelta(minutes=minutes))  # fmt: skip


def _decided(name: str, base: datetime, minutes: float, outcome: str) -> PendingApproval:
    at = base + timedelta(minutes=minutes)
    return PendingApproval(
        step_id=name, roles=["legal"], requested_by="system", requested_at=base,
        decisions=[Decision(actor="lena", role="legal", reason="r",
                            decision="reject" if outcome == "rejected" else "approve", at=at)],
        outcome=outcome,
    )  # fmt: skip


def _write(iid, playbook, fields, *, base=MARCH, steps=(), approvals=(), closed=None):
    timeline = [entry(0, 0, "ic", "opened", base=base)]
    snapshot = state(
        timeline,
        base=base,
        fields=fields,
        steps={s.step_id: s for s in steps},
        approvals={a.step_id: a for a in approvals},
        status="closed" if closed is not None else "open",
        closed_at=base + timedelta(minutes=closed) if closed is not None else None,
    )
    write_batch(batch(iid, timeline, snapshot, playbook=playbook))


def seed() -> None:
    b = MARCH
    _write(
        "E1",
        ED,
        {"jurisdiction": "us", "account_id": "a1, a2"},
        steps=[_step("produce-data", b, 60)],
    )
    _write(
        "E2",
        ED,
        {"jurisdiction": "eu", "account_id": "a3"},
        approvals=[_decided("legal-determination", b, 30, "rejected")],
    )
    _write(
        "E3",
        ED,
        {"jurisdiction": "us", "account_id": "a4", "disclosure": "partial"},
        steps=[_step("produce-data", b, 120)],
        approvals=[
            _decided("legal-determination", b, 20, "approved"),
            _decided("user-notice-decision", b, 9000, "rejected"),
        ],
    )
    _write("E4", ED, {"jurisdiction": "us", "account_id": "a5"})
    _write("E4", ED, {"jurisdiction": "us", "account_id": "a5"}, closed=50)
    _write(
        "P1",
        PR,
        {"jurisdiction": "us", "account_id": "x;y;z"},
        steps=[_step("legal-hold-snapshot", b, 600)],
    )
    _write("P2", PR, {"jurisdiction": "uk", "account_id": "p"})
    _write(
        "L1",
        LP,
        {
            "jurisdiction": "us",
            "account_id": "l1",
            "process_type": "subpoena",
            "ndo_expiry": "2026-09-01",
        },
        steps=[_step("produce", b, 1440)],
    )
    _write(
        "L2",
        LP,
        {"jurisdiction": "eu", "account_id": "l2", "process_type": "warrant"},
        approvals=[_decided("legal-review", b, 2880, "rejected")],
    )
    _write(
        "L3",
        LP,
        {"jurisdiction": "us", "account_id": "l3", "process_type": "subpoena"},
        base=datetime(2026, 2, 10, tzinfo=UTC),
    )
    _write(
        "C1",
        CS,
        {"jurisdiction": "us", "account_ids": "c1,c2"},
        steps=[_step("cybertip-report", b, 300)],
    )
    feb = datetime(2026, 2, 28, 23, 0, tzinfo=UTC)
    _write(
        "C2",
        CS,
        {"jurisdiction": "eu", "account_ids": "c9"},
        base=feb,
        steps=[_step("cybertip-report", feb, 120)],
    )
    _write("C3", CS, {"jurisdiction": "us", "account_ids": "c7"})
    _write("A1", "account-takeover", {})  # fmt: skip


def _row(csv_text: str, section: str, kind: str, process: str = "*", place: str = "*") -> dict:
    for row in csv.DictReader(io.StringIO(csv_text)):
        if (row["section"], row["request_type"], row["process_type"], row["jurisdiction"]) == (
            section, kind, process, place,
        ):  # fmt: skip
            return row
    raise AssertionError(f"no row {section} {kind} {process} {place}")


def _cells(row: dict) -> tuple:
    keys = ("requests", "accounts", "disclosed", "partially", "rejected", "withdrawn",
            "preserved", "pending", "answered")  # fmt: skip
    waits = tuple(None if row[k] == "" else round(float(row[k]) / 60, 6)
                  for k in ("respond_median_s", "respond_p90_s"))  # fmt: skip
    return (*(int(row[k]) for k in keys), *waits)


def test_every_cell_reconciles_with_the_known_set():
    seed()
    report = build_transparency(START, END)
    text = to_csv(report)
    #                                       req acc dis par rej wdr pre pen ans  p50   p90
    assert _cells(_row(text, "total", "*")) == (8, 11, 2, 1, 2, 1, 1, 1, 6, 360.0, 2160.0)
    assert _cells(_row(text, "type", "emergency_disclosure")) == (
        4, 5, 1, 1, 1, 1, 0, 0, 3, 60.0, 108.0)  # fmt: skip
    assert _cells(_row(text, "type", "preservation")) == (2, 4, 0, 0, 0, 0, 1, 1, 1, 600.0, 600.0)
    assert _cells(_row(text, "type", "legal_process")) == (
        2, 2, 1, 0, 1, 0, 0, 0, 2, 2160.0, 2736.0)  # fmt: skip
    assert _cells(_row(text, "type", "legal_process", "subpoena")) == (
        1, 1, 1, 0, 0, 0, 0, 0, 1, 1440.0, 1440.0)  # fmt: skip
    assert _cells(_row(text, "type", "legal_process", "warrant")) == (
        1, 1, 0, 0, 1, 0, 0, 0, 1, 2880.0, 2880.0)  # fmt: skip
    juris = {(r.request_type, r.jurisdiction): (r.requests, r.accounts)
             for r in report.by_jurisdiction}  # fmt: skip
    assert juris == {
        ("emergency_disclosure", "us"): (3, 4), ("emergency_disclosure", "eu"): (1, 1),
        ("preservation", "us"): (1, 3), ("preservation", "uk"): (1, 1),
        ("legal_process", "us"): (1, 1), ("legal_process", "eu"): (1, 1),
    }  # fmt: skip
    by_place = {  # req acc dis par rej wdr pre pen ans  p50   p90
        ("emergency_disclosure", "us"): (3, 4, 1, 1, 0, 1, 0, 0, 2, 90.0, 114.0),
        ("emergency_disclosure", "eu"): (1, 1, 0, 0, 1, 0, 0, 0, 1, 30.0, 30.0),
        ("preservation", "us"): (1, 3, 0, 0, 0, 0, 1, 0, 1, 600.0, 600.0),
        ("preservation", "uk"): (1, 1, 0, 0, 0, 0, 0, 1, 0, None, None),
        ("legal_process", "us"): (1, 1, 1, 0, 0, 0, 0, 0, 1, 1440.0, 1440.0),
        ("legal_process", "eu"): (1, 1, 0, 0, 1, 0, 0, 0, 1, 2880.0, 2880.0),
    }  # fmt: skip
    for (kind, place), cells in by_place.items():
        assert _cells(_row(text, "jurisdiction", kind, place=place)) == cells, (kind, place)
    assert sum(1 for r in csv.DictReader(io.StringIO(text)) if r["section"] == "jurisdiction") == 6
    assert (report.child_safety_reports, report.child_safety_accounts) == (2, 3)
    assert {n.basis: n.requests for n in report.notices_delayed} == {
        "ndo": 1, "emergency": 1, "legal_bar": 1}  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["requests"] for r in rows if r["section"].startswith("notice")] == ["1", "1", "1"]
    assert [(r["requests"], r["accounts"]) for r in rows
            if r["section"] == "child_safety_reports"] == [("2", "3")]  # fmt: skip
    assert '"requests": 8' in to_json(report)
    table = to_table(report)
    assert "Child-safety reports sent (CyberTipline): 2" in table and "legal_process" in table


def test_an_empty_period_has_zeros_and_no_times():
    seed()
    report = build_transparency(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC))
    assert report.total.requests == 0 and report.total.respond_median_s is None
    assert report.by_type == [] and report.child_safety_reports == 0


def test_the_command_writes_csv_and_a_chart(tmp_path, capsys):
    seed()
    png = tmp_path / "t.png"
    code = run(["transparency", "--from", "2026-03-01", "--to", "2026-03-31", "--format", "csv",
                "--chart", str(png)])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert _cells(_row(out.out, "total", "*"))[:2] == (8, 11)
    assert imread(png).shape[0] > 100
    assert run(["transparency", "--from", "March"]) == 2
    assert capsys.readouterr().err.count("\n") == 1  # one line, naming the option
    assert run(["transparency", "--from", "2026-03-02", "--to", "2026-03-01"]) == 2
    assert "--to" in capsys.readouterr().err


def test_ids_are_counted_and_no_field_text_is_stored(records_url):
    assert [count_ids(v) for v in ("", "a", "a, b", "a;b ; c", None)] == [0, 1, 2, 3, 0]
    seed()
    with Session(records_engine(records_url)) as s:
        stored = " ".join(
            str(v) for r in s.exec(select(RequestRecord)) for v in r.model_dump().values()
        )
    assert "a1" not in stored and "x;y" not in stored and "2026-09-01" not in stored
