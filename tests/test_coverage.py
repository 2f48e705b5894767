"""Workload and coverage on generated records with known answers (SQLite and PostgreSQL).

Time zone UTC, look-back 4 weeks, now = Monday 2026-03-16 00:10, so the coverage starts at 01:00
and the weeks looked back start on the Mondays 03-09 (week 0), 03-02, 02-23 and 02-16 (week 3).

Demand, Mondays 10:00-11:00 (hour of week 10), role lers:
  week 0: 4 steps (started 10:05, done 20 min later) + 2 pages answered by ann (paged 10:05 and
          10:15, acknowledged 5 min later, both in the 10:00 hour: ann's peak is 2 an hour);
  weeks 1, 2, 3: 3, 2 and 1 steps.
  -> per-week counts [6, 3, 2, 1]: mean 3, p90 = 3 + 0.7 * (6 - 3) = 5.1.
Role legal: one approval asked Tuesday 2026-03-03 14:00, decided by lena at 14:30 (30 min):
  hour of week 38, counts [0, 1, 0, 0]: mean 0.25, p90 0.7. One page nobody answered.

Roster: ann, ben (lers), lena (legal), cal (cr). lers rotation ann 00-12 / ben 12-24 from
03-16 00:00 (12 h shifts); an override puts ben on lers 03-16 10:00-11:00; cr's rotation starts
only on 03-20 00:00; legal has no rotation.

Coverage of 2 weeks (336 hours from 03-16 01:00): cr nobody on call 03-16 01:00 to 03-20 00:00
(95 h); legal nobody on call Tuesdays 14:00 (2 x 1 h, demand seen), idle otherwise; lers over
capacity Mondays 10:00: 03-16 with ben (capacity 1: he never handled anything, so 1) and 03-23
with ann (capacity 2: her peak); covered otherwise. 5 gaps.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from matplotlib.image import imread
from temporalio import activity
from temporalio.worker import Worker

from activities import records
from insights.charts import write_coverage_heatmap
from insights.coverage import build_coverage, coverage_csv, coverage_table, gap_summary
from insights.workload import build_workload, work_items, workload_csv, workload_table
from records.chain import write_batch
from reports.schedule import create_coverage_schedule
from roster import service
from tests.records_db import batch, both_backends, entry, records_url, state
from workflows.coverage_check import SCHEDULE_ID as COVERAGE_SCHEDULE_ID
from workflows.coverage_check import CoverageCheckRequest, CoverageCheckWorkflow
from workflows.models import ActionRequest, ActionResult

pytestmark = [both_backends, pytest.mark.usefixtures(records_url.__name__)]
NOW = datetime(2026, 3, 16, 0, 10, tzinfo=UTC)
MONDAYS = [datetime(2026, 3, d, 10, 0, tzinfo=UTC) for d in (9, 2)] + [
    datetime(2026, 2, d, 10, 0, tzinfo=UTC) for d in (23, 16)
]
ADMIN = "admin"


def _write(iid: str, base: datetime, rows: list[tuple[float, str, str, str | None, str | None]]):
    timeline = [entry(0, 0, "system", "opened", base=base)]
    for minutes, actor, kind, role, step in rows:
        timeline.append(entry(len(timeline), minutes, actor, kind, role=role, step=step, base=base))
    write_batch(batch(iid, timeline, state(timeline, base=base), playbook="legal-process"))


def seed() -> None:
    n = 0
    for week, steps in enumerate((4, 3, 2, 1)):
        for _ in range(steps):
            n += 1
            _write(f"S{n}", MONDAYS[week], [(5, "system", "step_started", "lers", "produce"),
                                           (25, "system", "step_completed", "lers", "produce")])  # fmt: skip
    for k, minute in enumerate((5, 15)):
        _write(f"P{k}", MONDAYS[0], [(minute, "system", "paged", None, None),
                                     (minute + 5, "ann", "acknowledged", "lers", None)])  # fmt: skip
    tuesday = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
    _write("A1", tuesday, [(0, "system", "approval_requested", "legal", "legal-review"),
                           (30, "lena", "approved", "legal", "legal-review")])  # fmt: skip
    _write("U1", tuesday, [(1, "system", "paged", None, None)])
    for handle, role in (("ann", "lers"), ("ben", "lers"), ("lena", "legal"), ("cal", "cr")):
        service.add_person(handle, display_name=handle.title(), roles=[role], actor=ADMIN)
    start = datetime(2026, 3, 16, tzinfo=UTC)
    service.add_rotation("lers", name="primary", people=["ann", "ben"], shift=timedelta(hours=12),
                         start=start, actor=ADMIN)  # fmt: skip
    service.add_rotation("cr", name="primary", people=["cal"], shift=timedelta(days=7),
                         start=datetime(2026, 3, 20, tzinfo=UTC), actor=ADMIN)  # fmt: skip
    service.add_override("lers", "ben", start=start + timedelta(hours=10),
                         end=start + timedelta(hours=11), reason="swap", actor=ADMIN)  # fmt: skip


def test_workload_per_role_and_hour_of_week():
    seed()
    report = build_workload(NOW - timedelta(weeks=4), NOW, "UTC", now=NOW)
    rows = {(r.role, r.hour_of_week): r for r in report.rows}
    lers = rows[("lers", 10)]
    assert (lers.steps, lers.steps_done, lers.step_p50_s, lers.step_p90_s) == (10, 10, 1200, 1200)
    assert (lers.pages_answered, lers.answer_p50_s, lers.approvals_decided) == (2, 300, 0)
    legal = rows[("legal", 38)]
    assert (legal.approvals_decided, legal.decision_p50_s, legal.steps) == (1, 1800, 0)
    assert rows[("(unanswered)", 38)].pages_answered == 0
    assert {r.role for r in report.rows if r.hour_of_week == -1} == {
        "lers",
        "legal",
        "(unanswered)",
    }
    assert "reactive" in report.note
    assert "lers" in workload_table(report) and workload_csv(report).startswith("role,")
    assert len(work_items(NOW - timedelta(weeks=4), NOW)) == 10 + 2 + 1 + 1


def test_coverage_forecast_schedule_and_gaps(tmp_path):
    seed()
    cov = build_coverage("UTC", weeks=2, lookback=4, now=NOW)
    assert "mean and p90" in cov.method and "last 4 weeks" in cov.method
    by = {(s.role, s.start.astimezone(UTC)): s for s in cov.slots}
    assert len(cov.slots) == 3 * 336
    first_monday = by[("lers", datetime(2026, 3, 16, 10, tzinfo=UTC))]
    assert (first_monday.demand_mean, first_monday.demand_p90) == (3.0, 5.1)
    assert (first_monday.scheduled, first_monday.capacity, first_monday.status) == (
        ["ben"], 1, "over_capacity")  # fmt: skip
    second = by[("lers", datetime(2026, 3, 23, 10, tzinfo=UTC))]
    assert (second.scheduled, second.capacity, second.status) == (["ann"], 2, "over_capacity")
    assert by[("lers", datetime(2026, 3, 16, 13, tzinfo=UTC))].scheduled == ["ben"]
    assert by[("lers", datetime(2026, 3, 17, 1, tzinfo=UTC))].scheduled == ["ann"]
    tuesday = by[("legal", datetime(2026, 3, 17, 14, tzinfo=UTC))]
    assert (tuesday.demand_mean, tuesday.demand_p90, tuesday.status) == (
        0.25,
        0.7,
        "nobody_on_call",
    )
    gaps = [(g.role, g.status, g.start.astimezone(UTC), g.hours, g.scheduled) for g in cov.gaps]
    assert gaps == [
        ("cr", "nobody_on_call", datetime(2026, 3, 16, 1, tzinfo=UTC), 95, []),
        ("legal", "nobody_on_call", datetime(2026, 3, 17, 14, tzinfo=UTC), 1, []),
        ("legal", "nobody_on_call", datetime(2026, 3, 24, 14, tzinfo=UTC), 1, []),
        ("lers", "over_capacity", datetime(2026, 3, 16, 10, tzinfo=UTC), 1, ["ben"]),
        ("lers", "over_capacity", datetime(2026, 3, 23, 10, tzinfo=UTC), 1, ["ann"]),
    ]
    states = {role: sum(s.role == role and s.status == "covered" for s in cov.slots)
              for role in ("cr", "legal", "lers")}  # fmt: skip
    assert states == {"cr": 241, "legal": 0, "lers": 334}
    rows = list(csv.DictReader(io.StringIO(coverage_csv(cov))))
    assert len(rows) == 3 * 336 and rows[0]["role"] == "cr"
    assert "Gaps (5)" in coverage_table(cov) and "Method:" in coverage_table(cov)
    png = write_coverage_heatmap(cov, tmp_path / "coverage.png")
    assert imread(png).shape[1] > 500


def test_the_next_24_hours_and_the_page_text():
    seed()
    day = build_coverage("UTC", hours=24, lookback=4, now=NOW)
    assert [(g.role, g.status, g.hours) for g in day.gaps] == [
        ("cr", "nobody_on_call", 24), ("lers", "over_capacity", 1)]  # fmt: skip
    text = gap_summary(day)
    assert text.startswith("Coverage gaps in the next 24 h (UTC): cr nobody on call Mon 01:00")
    assert "lers over capacity Mon 10:00-11:00 (p90 5.1, on call: ben)" in text
    quiet = build_coverage("UTC", hours=24, lookback=4, now=NOW + timedelta(days=5))
    assert [g.role for g in quiet.gaps] == [] and gap_summary(quiet) == ""


async def test_daily_coverage_check_pages_the_team_lead_on_a_gap(dev_env):
    client = dev_env.client
    queue = f"coverage-{uuid.uuid4().hex[:8]}"
    made = await create_coverage_schedule(
        client, at="07:30", timezone="Europe/Dublin", policy="tns-lead", task_queue=queue
    )
    assert made.startswith(f"schedule {COVERAGE_SCHEDULE_ID} created: every day at 07:30")
    described = await client.get_schedule_handle(COVERAGE_SCHEDULE_ID).describe()
    assert described.schedule.action.workflow == "CoverageCheckWorkflow"  # type: ignore[attr-defined]
    await client.get_schedule_handle(COVERAGE_SCHEDULE_ID).delete()
    paged: list[ActionRequest] = []

    @activity.defn(name="notify.pagerduty")
    async def pagerduty(request: ActionRequest) -> ActionResult:
        paged.append(request)
        return ActionResult(detail="paged")

    service.add_person("cal", display_name="Cal", roles=["cr"], actor=ADMIN)
    later = datetime.now(UTC) + timedelta(hours=30)  # nobody on call for cr until then
    service.add_rotation("cr", name="primary", people=["cal"], shift=timedelta(days=7),
                         start=later, actor=ADMIN)  # fmt: skip
    request = CoverageCheckRequest(policy="tns-lead", timezone="UTC")
    async with Worker(client, task_queue=queue, workflows=[CoverageCheckWorkflow],
                      activities=[records.coverage_gaps, pagerduty]):  # fmt: skip
        text = await client.execute_workflow(
            CoverageCheckWorkflow.run, request, id=f"coverage-{queue}", task_queue=queue
        )
        assert text.startswith("Coverage gaps in the next 24 h (UTC): cr nobody on call")
        assert len(paged) == 1 and paged[0].args["escalation_policy"] == "tns-lead"
        assert paged[0].args["summary"] == text and paged[0].incident_id == f"coverage-{queue}"
        service.add_override("cr", "cal", start=datetime.now(UTC) - timedelta(hours=1),
                             end=later, reason="cover", actor=ADMIN)  # fmt: skip
        quiet = await client.execute_workflow(
            CoverageCheckWorkflow.run, request, id=f"coverage-2-{queue}", task_queue=queue
        )
    assert quiet == "no coverage gap in the next 24 hours" and len(paged) == 1


def test_only_work_a_person_does_counts_as_a_step():
    base = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    _write("K1", base, [
        (1, "system", "step_started", "lers", "open-case"),  # an action: it runs itself
        (2, "system", "step_completed", "lers", "open-case"),
        (3, "system", "step_started", "lers", "legal-review"),  # an approval: counted as one
        (3, "system", "approval_requested", "legal", "legal-review"),
        (9, "lena", "approved", "legal", "legal-review"),
        (9, "system", "step_completed", "legal", "legal-review"),
        (10, "system", "step_started", "lers", "service-check"),  # a wait_for: a person's work
        (40, "ben", "event", None, None),
        (40, "system", "step_completed", "lers", "service-check"),
    ])  # fmt: skip
    items = work_items(base, base + timedelta(hours=1))
    assert [(i.kind, i.role, i.handled_by, i.seconds) for i in items] == [
        ("approval", "legal", "lena", 360.0), ("step", "lers", "ben", 1800.0)]  # fmt: skip


def test_the_commands(tmp_path, capsys):
    from starter import run

    seed()
    png = tmp_path / "heat.png"
    assert run(["coverage", "--weeks", "1", "--timezone", "UTC", "--heatmap", str(png)]) == 0
    out = capsys.readouterr()
    assert "Method: Forecast per role and hour of the week" in out.out and png.exists()
    assert run(["coverage", "--format", "csv", "--heatmap", str(png)]) == 0
    assert capsys.readouterr().out.startswith("role,start,hour_of_week")
    assert run(["coverage", "--timezone", "Mars/Olympus", "--heatmap", str(png)]) == 2
    assert "'Mars/Olympus' is not an IANA time zone" in capsys.readouterr().err
    assert run(["coverage", "--weeks", "0"]) == 2
    capsys.readouterr()
    assert run(["workload", "--since", "3650d", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("role,hour_of_week")
    assert run(["workload", "--since", "someday"]) == 2
    assert "--since" in capsys.readouterr().err
