"""SLA enforcement of IncidentWorkflow on the time-skipping test server.

Every instant is read from the workflow's own timeline. A timer starts when the server processes
the workflow task that set it, a few milliseconds after that task's ``workflow.now()``, so each
threshold is asserted to fire no earlier than its exact offset and no later than ``LATENCY``
after it, while the projected deadlines (``due_at``) are asserted to the microsecond.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.engine_support import (
    commander,
    entries,
    has,
    incident_input,
    kinds,
    one,
    playbook,
    wait_for_timeline,
)
from workflows import sla as clocks
from workflows.incident import IncidentWorkflow
from workflows.models import BusinessCalendar, ExternalEvent
from workflows.names import SIGNAL_EVENT

LATENCY = timedelta(seconds=3)


def assert_fired_at(entry, base: datetime, offset: timedelta) -> None:
    """``entry`` happened ``offset`` after ``base``: never early, late only by server latency."""
    late = entry.at - (base + offset)
    assert timedelta(0) <= late < LATENCY, f"{entry.kind} at {entry.at}: {late} off {offset}"


async def event(handle, name: str, **data: str) -> None:
    await handle.signal(SIGNAL_EVENT, ExternalEvent(name=name, data=data))


async def test_warning_then_breach_at_offsets_escalations_run_and_step_continues(ts_env, hts):
    pb = playbook(
        [
            {
                "id": "evidence",
                "kind": "wait_for",
                "event": "evidence_in",
                "sla": {
                    "due": "1h",
                    "warn_at": "45m",
                    "on_breach": [
                        {"page": "lers-secondary"},
                        {"notify": "#tns-leadership"},
                        {"raise_severity": 1},
                    ],
                },
            },
            {"id": "after", "kind": "action", "activity": "case.note"},
        ]
    )
    handle = await hts.open(incident_input(pb, severity="sev2"))
    await wait_for_timeline(handle, has("step_started", "evidence"))
    await ts_env.sleep(timedelta(hours=2))
    tl = await wait_for_timeline(handle, has("escalation", "evidence", 3))

    started = one(tl, "step_started", "evidence")
    assert started.sla == "on_track"
    assert started.due_at - started.at == timedelta(hours=1)
    warning, breach = one(tl, "sla_warning", "evidence"), one(tl, "sla_breach", "evidence")
    assert_fired_at(warning, started.at, timedelta(minutes=45))
    assert_fired_at(breach, started.at, timedelta(hours=1))
    assert (warning.sla, breach.sla) == ("warned", "breached")
    assert warning.due_at == breach.due_at == started.due_at

    # Escalations, in playbook order, each right after the breach.
    escalations = entries(tl, "escalation", "evidence")
    assert [e.detail for e in escalations] == [
        '{"page":"lers-secondary"}',
        '{"notify":"#tns-leadership"}',
        '{"raise_severity":1}',
    ]
    pages = hts.stand_ins.named("notify.pagerduty")
    assert [p["args"]["escalation_policy"] for p in pages] == ["lers-secondary"]
    assert pages[0]["idempotency_key"] == f"{pages[0]['incident_id']}:breach:evidence:0"
    assert pages[0]["args"]["action"] == "trigger"
    slack_channels = [p["args"]["channel"] for p in hts.stand_ins.named("notify.slack")]
    assert slack_channels == ["#tns-critical-response", "#tns-leadership"]  # warning, breach
    raised = one(tl, "severity_changed")
    assert raised.data == {"from": "sev2", "to": "sev1"}
    assert raised.at >= breach.at
    status = await handle.query(IncidentWorkflow.status)
    assert status.severity == "sev1"
    assert status.sla_breached is True
    assert [c.state for c in status.clocks] == ["breached"]

    # By default the step keeps running after its breach; the event still completes it.
    assert [s.step_id for s in status.active_steps] == ["evidence"]
    assert "step_failed" not in kinds(tl) and "step_started" not in kinds(tl)[2:]
    await event(handle, "evidence_in")
    tl = await wait_for_timeline(handle, has("playbook_complete"))
    assert one(tl, "step_completed", "evidence").sla == "met_late"
    assert one(tl, "step_started", "after").at >= one(tl, "event").at
    assert len(hts.stand_ins.named("case.note")) == 1
    assert (await handle.query(IncidentWorkflow.status)).status == "playbook_complete"

    outcome = await hts.close(handle, reason="contained")
    assert (outcome.status, outcome.sla_breached, outcome.resolution) == (
        "closed",
        True,
        "contained",
    )


async def test_on_breach_fail_fails_the_step_and_halts_the_playbook(ts_env, hts):
    pb = playbook(
        [
            {
                "id": "preserve",
                "kind": "wait_for",
                "event": "preserved",
                "sla": {"due": "30m", "on_breach": ["fail"]},
            },
            {"id": "never", "kind": "action", "activity": "case.note"},
        ]
    )
    handle = await hts.open(incident_input(pb))
    await wait_for_timeline(handle, has("step_started", "preserve"))
    await ts_env.sleep(timedelta(hours=1))
    tl = await wait_for_timeline(handle, has("playbook_halted"))

    started, breach = one(tl, "step_started", "preserve"), one(tl, "sla_breach", "preserve")
    assert_fired_at(breach, started.at, timedelta(minutes=30))
    failed = one(tl, "step_failed", "preserve")
    assert failed.at == breach.at
    assert "SLA" in failed.detail
    assert kinds(tl).index("step_failed") < kinds(tl).index("playbook_halted")
    assert "never" not in {e.step for e in tl}
    assert hts.stand_ins.named("case.note") == []
    status = await handle.query(IncidentWorkflow.status)
    assert status.active_steps == []
    assert status.status == "open"  # halted walk; the incident stays open for the commander
    assert status.sla_breached is True


async def test_paused_clock_does_not_run_and_breach_shifts_by_paused_time(ts_env, hts):
    pb = playbook(
        [
            {
                "id": "vendor",
                "kind": "wait_for",
                "event": "vendor_done",
                "sla": {
                    "due": "1h",
                    "pauses_on": ["waiting_on_vendor"],
                    "resumes_on": ["vendor_replied"],
                    "on_breach": [{"notify": "#late"}],
                },
            }
        ]
    )
    handle = await hts.open(incident_input(pb))
    await wait_for_timeline(handle, has("step_started", "vendor"))
    await ts_env.sleep(timedelta(minutes=20))
    await event(handle, "waiting_on_vendor")
    await wait_for_timeline(handle, has("sla_paused", "vendor"))
    await ts_env.sleep(timedelta(hours=3))  # the unpaused clock would have breached at 1h
    tl = await handle.query(IncidentWorkflow.timeline)
    assert "sla_breach" not in kinds(tl)
    status = await handle.query(IncidentWorkflow.status)
    (clock,) = status.clocks
    assert (clock.state, clock.due_at) == ("paused", None)
    started, paused = one(tl, "step_started", "vendor"), one(tl, "sla_paused", "vendor")
    # Counted time stops at the pause: what is left is exactly due minus the time run so far.
    assert clock.remaining == timedelta(hours=1) - (paused.at - started.at)

    await event(handle, "vendor_replied")
    tl = await wait_for_timeline(handle, has("sla_resumed", "vendor"))
    resumed = one(tl, "sla_resumed", "vendor")
    paused_for = resumed.at - paused.at
    assert paused_for >= timedelta(hours=3)
    assert resumed.due_at == started.due_at + paused_for  # projection shifted exactly
    await ts_env.sleep(timedelta(hours=2))
    tl = await wait_for_timeline(handle, has("escalation", "vendor"))
    assert_fired_at(one(tl, "sla_breach", "vendor"), started.at, timedelta(hours=1) + paused_for)
    assert [p["args"]["channel"] for p in hts.stand_ins.named("notify.slack")] == ["#late"]
    status = await handle.query(IncidentWorkflow.status)
    assert status.clocks[0].paused_total == paused_for


def next_weekday_at(now: datetime, weekday: int, hour: int) -> datetime:
    """The first ``weekday`` (Monday = 0) at ``hour``:00 UTC at least a day after ``now``."""
    day = (now + timedelta(days=1)).date()
    while day.weekday() != weekday:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


async def test_business_hours_clock_skips_nights_and_weekends(ts_env, hts):
    calendar = BusinessCalendar(timezone="UTC", days=[0, 1, 2, 3, 4])  # Mon-Fri 09:00-17:00
    pb = playbook(
        [
            {
                "id": "review",
                "kind": "wait_for",
                "event": "reviewed",
                "sla": {"due": "10h", "warn_at": "9h", "clock": "business"},
            }
        ]
    )
    # Open the incident on a Friday at 18:00 UTC, after hours.
    friday = next_weekday_at(await ts_env.get_current_time(), 4, 18)
    await ts_env.sleep(friday - await ts_env.get_current_time())
    handle = await hts.open(incident_input(pb, calendar=calendar))
    tl = await wait_for_timeline(handle, has("step_started", "review"))
    started = one(tl, "step_started", "review")
    assert timedelta(0) <= started.at - friday < LATENCY
    # By hand: nothing counts until Monday 09:00; Monday gives 8h; Tuesday 09:00 + 2h = 11:00.
    tuesday = friday + timedelta(days=4)
    due, warn = tuesday.replace(hour=11), tuesday.replace(hour=10)
    assert (
        started.due_at
        == due
        == clocks.add_counted("business", started.at, timedelta(hours=10), calendar)
    )
    assert clocks.add_counted("business", started.at, timedelta(hours=9), calendar) == warn

    await ts_env.sleep(tuesday.replace(hour=12) - await ts_env.get_current_time())
    tl = await wait_for_timeline(handle, has("sla_breach", "review"))
    assert_fired_at(one(tl, "sla_warning", "review"), warn, timedelta(0))
    assert_fired_at(one(tl, "sla_breach", "review"), due, timedelta(0))
    # Wall time from open to breach is 3 days 17 hours; only 10 of those hours counted.
    assert clocks.counted("business", started.at, due, calendar) == timedelta(hours=10)


async def test_ninety_day_timer_reminds_at_day_75_and_fires_at_day_90(ts_env, hts):
    pb = playbook(
        [
            {
                "id": "hold",
                "kind": "timer",
                "duration": "90d",
                "remind_before": "15d",
                "reminder": "#legal-holds",
            },
            {"id": "release", "kind": "action", "activity": "case.note"},
        ]
    )
    wall = time.monotonic()
    handle = await hts.open(incident_input(pb))
    await wait_for_timeline(handle, has("timer_set", "hold"))
    await ts_env.sleep(timedelta(days=91))
    tl = await wait_for_timeline(handle, has("step_completed", "release"))
    assert time.monotonic() - wall < 20  # ninety days in (milli)seconds

    started, timer_set = one(tl, "step_started", "hold"), one(tl, "timer_set", "hold")
    assert timer_set.detail == f"fires at {(started.at + timedelta(days=90)).isoformat()}"
    assert_fired_at(one(tl, "reminder", "hold"), started.at, timedelta(days=75))
    assert_fired_at(one(tl, "step_completed", "hold"), started.at, timedelta(days=90))
    reminders = hts.stand_ins.named("notify.slack")
    assert [r["args"]["channel"] for r in reminders] == ["#legal-holds"]
    assert "reminder" in reminders[0]["args"]["text"]
    assert reminders[0]["idempotency_key"].endswith(":reminder:hold")
    assert one(tl, "step_started", "release").at >= started.at + timedelta(days=90)


ACK_SLA = {"acknowledge": {"due": "15m", "warn_at": "10m", "on_breach": [{"page": "ic-primary"}]}}
WAITING = [{"id": "wait", "kind": "wait_for", "event": "never"}]


async def test_incident_acknowledge_sla_breaches_when_nobody_acks(ts_env, hts):
    handle = await hts.open(incident_input(playbook(WAITING, sla=ACK_SLA)))
    await wait_for_timeline(handle, has("step_started", "wait"))
    await ts_env.sleep(timedelta(minutes=30))
    tl = await wait_for_timeline(handle, has("escalation", "incident.acknowledge"))
    opened = one(tl, "opened")
    assert_fired_at(
        one(tl, "sla_warning", "incident.acknowledge"), opened.at, timedelta(minutes=10)
    )
    breach = one(tl, "sla_breach", "incident.acknowledge")
    assert_fired_at(breach, opened.at, timedelta(minutes=15))
    assert breach.due_at == opened.at + timedelta(minutes=15)
    assert [p["args"]["escalation_policy"] for p in hts.stand_ins.named("notify.pagerduty")] == [
        "ic-primary"
    ]
    status = await handle.query(IncidentWorkflow.status)
    assert status.sla_breached is True
    assert {c.name: c.state for c in status.clocks} == {"incident.acknowledge": "breached"}

    # A late ack stops the clock as met late.
    ack = await handle.execute_update(IncidentWorkflow.acknowledge, commander("ivan"))
    assert ack.sla == "met_late"
    outcome = await hts.close(handle, "ivan", reason="done")
    assert outcome.sla_breached is True
    assert outcome.time_to_acknowledge >= timedelta(minutes=30)
    # Closing resolves the alert it raised: same policy, so the same PagerDuty dedup key.
    pages = hts.stand_ins.named("notify.pagerduty")
    assert [(p["args"]["action"], p["args"]["escalation_policy"]) for p in pages] == [
        ("trigger", "ic-primary"),
        ("resolve", "ic-primary"),
    ]
    tl = await handle.query(IncidentWorkflow.timeline)
    assert one(tl, "pages_resolved").detail == "PagerDuty alerts resolved: ic-primary"
    assert kinds(tl).index("pages_resolved") > kinds(tl).index("closed")


async def test_incident_acknowledge_sla_met_when_acked_in_time(ts_env, hts):
    handle = await hts.open(incident_input(playbook(WAITING, sla=ACK_SLA)))
    await wait_for_timeline(handle, has("step_started", "wait"))
    ack = await handle.execute_update(IncidentWorkflow.acknowledge, commander("ivan"))
    assert (ack.kind, ack.actor, ack.sla) == ("acknowledged", "ivan", "met")
    await ts_env.sleep(timedelta(hours=1))
    tl = await handle.query(IncidentWorkflow.timeline)
    assert not {"sla_warning", "sla_breach", "escalation"} & set(kinds(tl))
    assert hts.stand_ins.named("notify.pagerduty") == []
    status = await handle.query(IncidentWorkflow.status)
    assert (status.status, status.owner, status.sla_breached) == ("acknowledged", "ivan", False)
    assert {c.name: c.state for c in status.clocks} == {"incident.acknowledge": "met"}
    outcome = await hts.close(handle, "ivan", reason="done")
    assert outcome.sla_breached is False
    assert outcome.time_to_acknowledge < timedelta(minutes=15)


@pytest.mark.parametrize("pagerduty_down", [False, True])
async def test_the_close_sends_its_calls_together_then_the_last_records_batch(
    ts_env, hts, pagerduty_down
):
    """``close_together`` (the front door's default): resolving the page, the closing message and
    the archiver's start leave in one workflow task; the last records batch follows them and
    holds what they recorded, a resolution that failed included."""
    from temporalio.api.enums.v1 import EventType

    from audit.replay import rebuild
    from workflows.names import RECORDS_ACTIVITY

    if pagerduty_down:
        hts.stand_ins.fail.add("notify.pagerduty")
    inp = incident_input(playbook(WAITING, sla=ACK_SLA), local_calls=False, close_together=True)
    handle = await hts.open(inp)
    await wait_for_timeline(handle, has("step_started", "wait"))
    await ts_env.sleep(timedelta(minutes=30))
    await wait_for_timeline(handle, has("escalation", "incident.acknowledge"))
    await handle.execute_update(IncidentWorkflow.acknowledge, commander("ivan"))
    await hts.close(handle, "ivan", reason="done")

    pages = hts.stand_ins.named("notify.pagerduty")
    assert [p["args"]["action"] for p in pages] == ["trigger", "resolve"]
    closing = hts.stand_ins.named("notify.slack")[-1]["args"]["text"]
    assert closing.endswith("closed; resolving its pages (ic-primary)"), closing
    history = await handle.fetch_history()
    by_task: dict[int, list[str]] = {}
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = e.activity_task_scheduled_event_attributes
            by_task.setdefault(attrs.workflow_task_completed_event_id, []).append(
                attrs.activity_type.name
            )
        if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            attrs_child = e.start_child_workflow_execution_initiated_event_attributes
            by_task.setdefault(attrs_child.workflow_task_completed_event_id, []).append("archive")
    closing_task = next(task for task, calls in by_task.items() if "archive" in calls)
    assert sorted(by_task[closing_task]) == ["archive", "notify.pagerduty", "notify.slack"]
    last_task = max(by_task)
    assert last_task > closing_task and by_task[last_task] == [RECORDS_ACTIVITY]
    batch = hts.stand_ins.named(RECORDS_ACTIVITY)[-1]
    assert [e["kind"] for e in batch["entries"]][-1] == "pages_resolved"
    resolution = batch["entries"][-1]["detail"]
    if pagerduty_down:
        assert resolution == "PagerDuty alerts resolved: none; not resolved: ic-primary"
        assert "notification_failed" in [e["kind"] for e in batch["entries"]]
    else:
        assert resolution == "PagerDuty alerts resolved: ic-primary"
    tl = await handle.query(IncidentWorkflow.timeline)
    assert kinds(tl).index("pages_resolved") > kinds(tl).index("closed")
    assert [e.kind for e in rebuild(handle.id, [history]).timeline] == kinds(tl)
