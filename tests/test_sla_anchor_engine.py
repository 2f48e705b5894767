"""Anchored SLA clocks and the top-severity escalation in IncidentWorkflow, on the time-skipping
test server (issue 8 items 9 and 14).

A step clock anchored at the incident, a date field or another step starts counting there, not when
its step starts: a step reached late may already be warned or breached, and says so at once. An
anchor that cannot be read falls back to the step's start and the timeline says why. An escalation
that would raise the severity of an incident already at sev0 is recorded as skipped, never as
"sev0 -> sev0". Instants are read from the workflow's own timeline (see tests/test_engine_sla.py).

The step-clock tests need ``IncidentWorkflow._run_step`` to start its clock through
``IncidentSlaRace._start_step_clock``; the incident-clock and severity tests do not.
"""

from __future__ import annotations

from datetime import timedelta

from tests.engine_support import (
    entries,
    has,
    incident_input,
    kinds,
    one,
    playbook,
    wait_for_timeline,
)
from workflows.incident import IncidentWorkflow
from workflows.models import ExternalEvent

LATENCY = timedelta(seconds=3)
NOTIFY = [{"notify": "#late"}]


def assert_fired_at(entry, at) -> None:
    late = entry.at - at
    assert timedelta(0) <= late < LATENCY, f"{entry.kind} at {entry.at}: {late} after {at}"


async def event(handle, name: str, **data: str) -> None:
    await handle.signal("event", ExternalEvent(name=name, data=data))


def first_then_anchored(sla: dict, **extra) -> object:
    """``first`` waits for event ``go``; ``anchored`` (the clock under test) then waits for ``done``."""
    return playbook(
        [
            {"id": "first", "kind": "wait_for", "event": "go"},
            {"id": "anchored", "kind": "wait_for", "event": "done", "sla": sla},
        ],
        **extra,
    )


async def test_a_clock_anchored_at_the_incident_counts_from_the_opening(ts_env, hts):
    sla = {"due": "1h", "warn_at": "30m", "anchor": "incident", "on_breach": NOTIFY}
    handle = await hts.open(incident_input(first_then_anchored(sla)))
    tl = await wait_for_timeline(handle, has("step_started", "first"))
    opened = one(tl, "opened")
    await ts_env.sleep(timedelta(minutes=40))
    await event(handle, "go")
    tl = await wait_for_timeline(handle, has("sla_warning", "anchored"))
    started = one(tl, "step_started", "anchored")
    assert started.at - opened.at >= timedelta(minutes=40)
    assert started.due_at == opened.at + timedelta(hours=1)  # not the step's start + 1 h
    # Reached 40 minutes in: the 30-minute warning is already due and fires at once.
    assert_fired_at(one(tl, "sla_warning", "anchored"), started.at)
    await ts_env.sleep(timedelta(minutes=30))
    tl = await wait_for_timeline(handle, has("escalation", "anchored"))
    assert_fired_at(one(tl, "sla_breach", "anchored"), opened.at + timedelta(hours=1))
    assert "sla_anchor_fallback" not in kinds(tl)
    await event(handle, "done")
    tl = await wait_for_timeline(handle, has("step_completed", "anchored"))
    assert one(tl, "step_completed", "anchored").sla == "met_late"
    await hts.close(handle)


async def test_a_step_reached_after_its_deadline_breaches_at_once_without_a_late_warning(
    ts_env, hts
):
    sla = {
        "due": "1h",
        "warn_at": "30m",
        "anchor": "incident",
        "on_breach": [{"notify": "#late"}, {"raise_severity": 1}],
    }
    handle = await hts.open(incident_input(first_then_anchored(sla), severity="sev0"))
    await wait_for_timeline(handle, has("step_started", "first"))
    await ts_env.sleep(timedelta(hours=2))
    await event(handle, "go")
    tl = await wait_for_timeline(handle, has("escalation", "anchored", 2))
    started, breach = one(tl, "step_started", "anchored"), one(tl, "sla_breach", "anchored")
    assert_fired_at(breach, started.at)
    assert breach.due_at == one(tl, "opened").at + timedelta(hours=1) < started.at
    assert "sla_warning" not in kinds(tl)
    channels = [n["args"]["channel"] for n in hts.stand_ins.named("notify.slack")]
    assert channels == ["#late"]  # the breach only; no warning message
    # Already sev0: the severity escalation is recorded as skipped, never "sev0 -> sev0".
    assert "severity_changed" not in kinds(tl)
    skipped = entries(tl, "escalation", "anchored")[1]
    assert skipped.detail == '{"raise_severity":1} skipped: the incident is already at sev0'
    assert skipped.data == {"skipped": "already_top_severity"}
    assert (await handle.query(IncidentWorkflow.status)).severity == "sev0"
    await hts.close(handle)


async def test_a_clock_anchored_at_a_date_field_counts_from_that_date(ts_env, hts):
    aware = await ts_env.get_current_time() - timedelta(hours=20)
    sla = {"due": "72h", "warn_at": "48h", "legal": True, "anchor": "field:aware_at"}
    pb = first_then_anchored(sla, fields={"aware_at": {"type": "datetime"}})
    handle = await hts.open(incident_input(pb, fields={"aware_at": aware.isoformat()}))
    await wait_for_timeline(handle, has("step_started", "first"))
    await event(handle, "go")
    tl = await wait_for_timeline(handle, has("step_started", "anchored"))
    assert one(tl, "step_started", "anchored").due_at == aware + timedelta(hours=72)
    status = await handle.query(IncidentWorkflow.status)
    (clock,) = [c for c in status.clocks if c.name == "anchored"]
    assert clock.warn_at == aware + timedelta(hours=48)
    assert timedelta(hours=51) < clock.remaining <= timedelta(hours=52)  # 20 h already counted
    await ts_env.sleep(timedelta(hours=29))
    tl = await wait_for_timeline(handle, has("sla_warning", "anchored"))
    assert_fired_at(one(tl, "sla_warning", "anchored"), aware + timedelta(hours=48))
    await hts.close(handle)


async def test_an_anchor_that_cannot_be_read_falls_back_to_the_step_and_says_why(ts_env, hts):
    sla = {"due": "1h", "anchor": "field:aware_at"}
    pb = first_then_anchored(sla, fields={"aware_at": {"type": "datetime"}})
    handle = await hts.open(incident_input(pb))
    await wait_for_timeline(handle, has("step_started", "first"))
    await ts_env.sleep(timedelta(minutes=10))
    await event(handle, "go")
    tl = await wait_for_timeline(handle, has("step_started", "anchored"))
    fallback, started = (
        one(tl, "sla_anchor_fallback", "anchored"),
        one(tl, "step_started", "anchored"),
    )
    assert fallback.detail == (
        "anchored counts from now, not from field:aware_at: field aware_at is not set"
    )
    assert fallback.data == {"anchor": "field:aware_at", "reason": "field aware_at is not set"}
    assert started.due_at == started.at + timedelta(hours=1) == fallback.due_at
    await hts.close(handle)


async def test_a_clock_anchored_at_another_step_counts_from_that_steps_start(ts_env, hts):
    pb = playbook(
        [
            {"id": "first", "kind": "wait_for", "event": "go"},
            {
                "id": "anchored",
                "kind": "wait_for",
                "event": "done",
                "sla": {"due": "2h", "anchor": "step:first"},
            },
        ]
    )
    handle = await hts.open(incident_input(pb))
    await wait_for_timeline(handle, has("step_started", "first"))
    await ts_env.sleep(timedelta(minutes=45))
    await event(handle, "go")
    tl = await wait_for_timeline(handle, has("step_started", "anchored"))
    first = one(tl, "step_started", "first")
    assert one(tl, "step_started", "anchored").due_at == first.at + timedelta(hours=2)
    await hts.close(handle)


async def test_an_incident_clock_anchored_at_a_field_starts_before_the_opening(ts_env, hts):
    received = await ts_env.get_current_time() - timedelta(hours=2)
    pb = playbook(
        [{"id": "wait", "kind": "wait_for", "event": "never"}],
        fields={"received_at": {"type": "datetime"}},
        sla={"resolve": {"due": "3h", "anchor": "field:received_at", "on_breach": NOTIFY}},
    )
    handle = await hts.open(incident_input(pb, fields={"received_at": received.isoformat()}))
    await wait_for_timeline(handle, has("step_started", "wait"))
    status = await handle.query(IncidentWorkflow.status)
    assert {c.name: c.due_at for c in status.clocks} == {
        "incident.resolve": received + timedelta(hours=3)
    }
    await ts_env.sleep(timedelta(hours=2))
    tl = await wait_for_timeline(handle, has("escalation", "incident.resolve"))
    assert_fired_at(one(tl, "sla_breach", "incident.resolve"), received + timedelta(hours=3))
    await hts.close(handle)


async def test_raising_an_incident_already_at_sev0_is_skipped_not_counted(ts_env, hts):
    """Issue 8 item 9: a breach on a sev0 incident recorded "severity_changed sev0 -> sev0"."""
    escalations = [{"raise_severity": 1}, {"notify": "#late"}]
    pb = playbook(
        [{"id": "wait", "kind": "wait_for", "event": "never"}],
        sla={"resolve": {"due": "30m", "on_breach": escalations}},
    )
    handle = await hts.open(incident_input(pb, severity="sev0"))
    await wait_for_timeline(handle, has("step_started", "wait"))
    await ts_env.sleep(timedelta(hours=1))
    tl = await wait_for_timeline(handle, has("escalation", "incident.resolve", 2))
    assert "severity_changed" not in kinds(tl)
    assert [e.detail for e in entries(tl, "escalation", "incident.resolve")] == [
        '{"raise_severity":1} skipped: the incident is already at sev0',
        '{"notify":"#late"}',
    ]
    status = await handle.query(IncidentWorkflow.status)
    assert (status.severity, status.sla_breached) == ("sev0", True)
    await hts.close(handle)
