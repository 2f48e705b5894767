"""The SLA report over seeded incidents whose figures are worked out by hand below.

Seeded (minutes after each incident's open; "now" is 2026-03-10 12:00 UTC):
  I1 account-takeover sev1, 2 days ago: ack 10, closed 120; ack clock met, resolve met,
     contain warned (warned 25, stopped 28 of 30).
  I2 account-takeover sev1 (raised from sev2), 3 days ago: ack 20, closed 300; ack breached,
     resolve breached, contain met.
  I3 account-takeover sev1, 6 hours ago, acknowledged at 5, still open: ack met, resolve running
     past its due (4h), contain running past due -> past due.
  I4 account-takeover sev2, 5 minutes ago, open: ack clock running, due in 10 minutes.
  I5 emergency-disclosure sev0, 1 day ago, escalation entry: ack 2, closed 60; ack met,
     legal-review breached.
  I6 emergency-disclosure sev0, 30 days ago (outside --since 7d): ack 30, closed 90; ack breached.

Since 7 days, account-takeover/sev1: ack [5, 10, 20] min -> p50 10m, p90 10 + 0.8*10 = 18m;
resolve [120, 300] -> p50 210m, p90 120 + 0.9*180 = 282m; clocks met 4, warned 1, breached 2,
pending 2 -> attainment 5/7; escalated 1/3; open 1, past due 1.
Total: ack [2, 5, 10, 20] -> p50 7.5m, p90 10 + 0.7*10 = 17m; resolve [60, 120, 300] -> p50 120m,
p90 120 + 0.8*180 = 264m; met 5, warned 1, breached 3, pending 3 -> 6/9; escalated 2/5; open 2,
past due 1.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import typer
from matplotlib.image import imread
from temporalio import activity
from temporalio.worker import Worker
from typer.testing import CliRunner

from activities import records
from records.chain import write_batch
from reports.chart import write_chart
from reports.cli import report_command
from reports.report import build_report, summary_text, to_csv, to_json, to_table
from reports.schedule import create_daily_schedule
from tests.records_db import batch, both_backends, clock, entry, records_url, state
from workflows.daily_report import SCHEDULE_ID, DailyReportRequest, DailyReportWorkflow
from workflows.models import ActionRequest, ActionResult

pytestmark = [both_backends, pytest.mark.usefixtures(records_url.__name__)]
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=7)
ATO, ED = "account-takeover", "emergency-disclosure"


def _incident(iid, playbook, sev, base, ack, closed, clocks, history=None, extra_kinds=()):
    timeline = [entry(0, 0, "ic", "opened", base=base)]
    if ack is not None:
        timeline.append(entry(len(timeline), ack, "ic", "acknowledged", base=base))
    for kind in extra_kinds:
        timeline.append(entry(len(timeline), 1, "mgr", kind, base=base))
    if closed is not None:
        timeline.append(entry(len(timeline), closed, "ic", "closed", base=base))
    snapshot = state(
        timeline,
        base=base,
        severity=sev,
        severity_history=history or [(base, sev)],
        status="closed" if closed is not None else ("acknowledged" if ack else "open"),
        acknowledged_at=base + timedelta(minutes=ack) if ack is not None else None,
        closed_at=base + timedelta(minutes=closed) if closed is not None else None,
        clocks={c.name: c for c in clocks},
    )
    write_batch(batch(iid, timeline, snapshot, playbook=playbook))


def seed() -> None:
    b1, b2, b3 = NOW - timedelta(days=2), NOW - timedelta(days=3), NOW - timedelta(hours=6)
    b4, b5, b6 = NOW - timedelta(minutes=5), NOW - timedelta(days=1), NOW - timedelta(days=30)
    ack, res = "incident.acknowledge", "incident.resolve"
    _incident("I1", ATO, "sev1", b1, 10, 120, [
        clock(ack, 15, b1, stopped=10), clock(res, 240, b1, stopped=120),
        clock("contain", 30, b1, warn=20, warned=25, stopped=28)])  # fmt: skip
    _incident("I2", ATO, "sev1", b2, 20, 300, [
        clock(ack, 15, b2, breached=15, stopped=20), clock(res, 240, b2, breached=240, stopped=300),
        clock("contain", 30, b2, stopped=15)],
        history=[(b2, "sev2"), (b2 + timedelta(minutes=5), "sev1")])  # fmt: skip
    _incident("I3", ATO, "sev1", b3, 5, None, [
        clock(ack, 15, b3, stopped=5), clock(res, 240, b3), clock("contain", 30, b3)])  # fmt: skip
    _incident("I4", ATO, "sev2", b4, None, None, [clock(ack, 15, b4)])
    _incident("I5", ED, "sev0", b5, 2, 60, [
        clock(ack, 5, b5, stopped=2), clock("legal-review", 30, b5, breached=30, stopped=45)],
        extra_kinds=["escalated"])  # fmt: skip
    _incident("I6", ED, "sev0", b6, 30, 90, [clock(ack, 5, b6, breached=5, stopped=30)])


def _group(report, playbook, severity):
    return next(g for g in report.groups if (g.playbook, g.severity) == (playbook, severity))


def test_figures_match_the_hand_computed_answers():
    seed()
    report = build_report(since=SINCE, now=NOW)
    ato1 = _group(report, ATO, "sev1")
    assert (ato1.incidents, ato1.open, ato1.past_due, ato1.escalated) == (3, 1, 1, 1)
    assert ato1.escalation_rate == pytest.approx(1 / 3)
    assert (ato1.ack_median_s, ato1.ack_p90_s) == pytest.approx((600, 1080))
    assert (ato1.resolve_median_s, ato1.resolve_p90_s) == pytest.approx((12600, 16920))
    assert (ato1.met, ato1.warned, ato1.breached, ato1.pending) == (4, 1, 2, 2)
    assert ato1.attainment == pytest.approx(5 / 7)
    ato2 = _group(report, ATO, "sev2")
    assert (ato2.incidents, ato2.open, ato2.past_due, ato2.escalation_rate) == (1, 1, 0, 0.0)
    assert (ato2.ack_median_s, ato2.resolve_median_s, ato2.attainment) == (None, None, None)
    ed0 = _group(report, ED, "sev0")
    assert (ed0.incidents, ed0.open, ed0.escalation_rate) == (1, 0, 1.0)
    assert (ed0.ack_median_s, ed0.ack_p90_s, ed0.resolve_median_s) == (120, 120, 3600)
    assert (ed0.met, ed0.breached, ed0.attainment) == (1, 1, 0.5)
    t = report.total
    assert (t.incidents, t.open, t.past_due, t.escalation_rate) == (5, 2, 1, 0.4)
    assert (t.ack_median_s, t.ack_p90_s) == pytest.approx((450, 1020))
    assert (t.resolve_median_s, t.resolve_p90_s) == pytest.approx((7200, 15840))
    assert (t.met, t.warned, t.breached, t.pending) == (5, 1, 3, 3)
    assert t.attainment == pytest.approx(6 / 9)
    assert [(s.playbook, s.severity, s.step, s.clocks, s.met, s.warned, s.breached, s.pending)
            for s in report.steps] == [
        (ATO, "sev1", "contain", 3, 1, 1, 0, 1),
        (ATO, "sev1", "incident.acknowledge", 3, 2, 0, 1, 0),
        (ATO, "sev1", "incident.resolve", 3, 1, 0, 1, 1),
        (ATO, "sev2", "incident.acknowledge", 1, 0, 0, 0, 1),
        (ED, "sev0", "incident.acknowledge", 1, 1, 0, 0, 0),
        (ED, "sev0", "legal-review", 1, 0, 0, 1, 0),
    ]  # fmt: skip
    assert [s.attainment for s in report.steps] == pytest.approx([1.0, 2 / 3, 0.5, None, 1.0, 0.0])


def test_since_and_playbook_filters():
    seed()
    everything = build_report(now=NOW)
    ed0 = _group(everything, ED, "sev0")
    assert (ed0.incidents, ed0.ack_median_s, ed0.escalation_rate) == (2, 960, 0.5)  # [2, 30] min
    assert everything.total.incidents == 6
    only_ed = build_report(since=SINCE, playbooks=[ED], now=NOW)
    assert [(g.playbook, g.severity) for g in only_ed.groups] == [(ED, "sev0")]
    assert {s.step for s in only_ed.steps} == {"incident.acknowledge", "legal-review"}


def test_csv_json_and_table_carry_the_same_figures():
    seed()
    report = build_report(since=SINCE, now=NOW)
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert [r["level"] for r in rows] == ["group"] * 3 + ["total"] + ["step"] * 6
    ato1 = rows[0]
    assert (ato1["playbook"], ato1["severity"], ato1["count"], ato1["past_due"]) == (
        ATO, "sev1", "3", "1")  # fmt: skip
    assert float(ato1["ack_p90_s"]) == 1080 and float(ato1["attainment"]) == pytest.approx(5 / 7)
    assert rows[1]["ack_median_s"] == "" and rows[1]["attainment"] == ""  # sev2: none yet
    assert (rows[4]["step"], rows[4]["count"], rows[4]["warned"]) == ("contain", "3", "1")
    data = json.loads(to_json(report))
    assert data["total"]["resolve_p90_s"] == 15840 and data["total"]["past_due"] == 1
    assert data["steps"][5] | {"attainment": 0.0} == {
        "playbook": ED, "severity": "sev0", "step": "legal-review", "clocks": 1,
        "met": 0, "warned": 0, "breached": 1, "pending": 0, "not_met": 0, "attainment": 0.0,
    }  # fmt: skip
    table = to_table(report)
    ato_line = next(
        line for line in table.splitlines() if "account-takeover" in line and "sev1" in line
    )
    for cell in ("10m", "18m", "3h30m", "4h42m", "33%", "71%"):
        assert cell in ato_line
    total_line = next(line for line in table.splitlines() if "│ *" in line)
    for cell in ("7m30s", "17m", "2h", "4h24m", "40%", "67%"):
        assert cell in total_line


def test_cli_formats_and_chart(tmp_path):
    seed()
    app = typer.Typer()
    app.command()(report_command)
    runner = CliRunner()
    out = runner.invoke(app, ["--format", "json", "--playbook", ED, "--since", "2026-03-03"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["total"]["incidents"] == 1
    out = runner.invoke(app, ["--format", "csv", "--since", "2026-03-03"])
    assert out.stdout.splitlines()[0].startswith("level,playbook,severity,step,count")
    chart = tmp_path / "sla.png"
    out = runner.invoke(app, ["--chart", str(chart)])
    assert out.exit_code == 0 and "SLA attainment by step" in out.stdout
    raw = chart.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    pixels = imread(chart)
    assert pixels.shape[0] >= 400 and pixels.shape[1] == 1300


def test_chart_of_an_empty_report_is_still_a_png(tmp_path):
    report = build_report(now=NOW)
    path = write_chart(report, [], tmp_path / "empty.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_text_for_slack():
    seed()
    text = summary_text(build_report(since=SINCE, now=NOW), "7d")
    assert text.splitlines()[1:] == [
        "5 incidents, 2 open, 1 open and past due",
        "SLA attainment 67% (met 5, warned 1, breached 3, pending 3)",
        "Time to acknowledge p50 7m30s / p90 17m; to resolve p50 2h / p90 4h24m",
        "Escalation rate 40%",
        "Most breaches: account-takeover/incident.acknowledge (1), "
        "account-takeover/incident.resolve (1), emergency-disclosure/legal-review (1)",
    ]


async def test_daily_report_schedule_and_workflow_post_through_notify_slack(dev_env):
    seed()
    client = dev_env.client
    queue = f"report-{uuid.uuid4().hex[:8]}"
    made = await create_daily_schedule(
        client, at="08:30", timezone="Europe/Dublin", channel="#ops", window="24h", task_queue=queue
    )
    assert made.startswith(f"schedule {SCHEDULE_ID} created: every day at 08:30 Europe/Dublin")
    again = await create_daily_schedule(
        client, at="09:15", timezone="Europe/Dublin", channel="#ops", window="24h", task_queue=queue
    )
    assert " updated: " in again
    described = await client.get_schedule_handle(SCHEDULE_ID).describe()
    spec = described.schedule.spec
    assert spec.time_zone_name == "Europe/Dublin"
    calendar = spec.calendars[0]
    assert (calendar.hour[0].start, calendar.minute[0].start) == (9, 15)
    assert described.schedule.action.workflow == "DailyReportWorkflow"  # type: ignore[attr-defined]

    posted: list[ActionRequest] = []

    @activity.defn(name="notify.slack")
    async def slack(request: ActionRequest) -> ActionResult:
        posted.append(request)
        return ActionResult(detail="posted")

    async with Worker(
        client, task_queue=queue, workflows=[DailyReportWorkflow],
        activities=[records.report_summary, slack],
    ):  # fmt: skip
        text = await client.execute_workflow(
            DailyReportWorkflow.run,
            DailyReportRequest(channel="#ops", window="3650d"),
            id=f"daily-report-{queue}",
            task_queue=queue,
        )
    assert len(posted) == 1 and posted[0].args == {"text": text, "channel": "#ops"}
    assert posted[0].idempotency_key == f"daily-report:daily-report-{queue}"
    assert "6 incidents, 2 open" in text
    assert "SLA attainment 60% (met 5, warned 1, breached 4, pending 3)" in text
    await client.get_schedule_handle(SCHEDULE_ID).delete()
