"""Playbook flow in IncidentWorkflow: branches, parallel joins and failures, waits, timers,
templating, closing, duplicate opens, commander Updates and search attributes.

Steps without timers run on the real dev server; waits with a timeout and timers run on the
time-skipping server (see ``test_engine_sla`` for the latency bound on fired instants).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import WorkflowAlreadyStartedError

from incidents.service import start_incident
from tests.engine_support import (
    approval,
    commander,
    entries,
    has,
    incident_input,
    kinds,
    one,
    playbook,
    refusal,
    start,
    wait_for_status,
    wait_for_timeline,
)
from workflows.incident import IncidentWorkflow
from workflows.models import ExternalEvent
from workflows.names import (
    SA_BREACHED,
    SA_PLAYBOOK,
    SA_SEVERITY,
    SA_STATUS,
    SIGNAL_APPROVE,
    SIGNAL_EVENT,
    workflow_id_for,
)

LATENCY = timedelta(seconds=3)


def action(step_id: str, activity: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "kind": "action", "activity": activity or f"case.{step_id}", **extra}


def wait(step_id: str, event: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "kind": "wait_for", "event": event or step_id, **extra}


async def event(handle, name: str, **data: str) -> None:
    await handle.signal(SIGNAL_EVENT, ExternalEvent(name=name, data=data))


def ran(h) -> list[str]:
    """Step ids of the action stand-in calls, in call order."""
    return [c.payload["step_id"] for c in h.stand_ins.calls if c.operation.startswith("case.")]


# --- branch -----------------------------------------------------------------------------------

ROUTE = {
    "id": "route",
    "kind": "branch",
    "cases": [
        {"when": {"field": "jurisdiction", "in": ["us", "ca"]}, "steps": [action("domestic")]},
        {"when": {"field": "jurisdiction", "equals": "us"}, "steps": [action("us_only")]},
        {"steps": [action("foreign")]},
    ],
}


@pytest.mark.parametrize(
    ("jurisdiction", "label", "expected"),
    [
        ("us", "case 1", ["domestic", "after"]),  # first match wins over case 2
        ("CA", "case 1", ["domestic", "after"]),
        ("fr", "case 3 (default)", ["foreign", "after"]),
    ],
)
async def test_branch_takes_the_first_matching_case_or_the_default(
    h, jurisdiction, label, expected
):
    pb = playbook([ROUTE, action("after")])
    handle = await h.open(incident_input(pb, fields={"jurisdiction": jurisdiction}))
    tl = await wait_for_timeline(handle, has("playbook_complete"))
    assert one(tl, "branch_taken", "route").detail == label
    assert one(tl, "step_completed", "route").detail == label
    assert ran(h) == expected
    started = [e.step for e in entries(tl, "step_started")]
    assert started == ["route", expected[0], "after"]


async def test_branch_with_no_matching_case_continues(h):
    no_default = {**ROUTE, "cases": ROUTE["cases"][:2]}
    handle = await h.open(incident_input(playbook([no_default, action("after")])))
    tl = await wait_for_timeline(handle, has("playbook_complete"))
    assert one(tl, "branch_taken", "route").detail == "no case matched"
    assert ran(h) == ["after"]


@pytest.mark.parametrize("severity", ["sev0", "sev2"])
async def test_goto_skips_the_steps_in_between(h, severity):
    steps = [
        {
            "id": "triage",
            "kind": "branch",
            "cases": [
                {
                    "when": {"field": "severity", "equals": "sev0"},
                    "steps": [action("page_now")],
                    "goto": "wrap_up",
                }
            ],
        },
        action("review"),
        action("second_review"),
        action("wrap_up"),
    ]
    handle = await h.open(incident_input(playbook(steps), severity=severity))
    tl = await wait_for_timeline(handle, has("playbook_complete"))
    if severity == "sev0":
        assert one(tl, "branch_taken", "triage").detail == "case 1, then to wrap_up"
        assert ran(h) == ["page_now", "wrap_up"]
        skipped = entries(tl, "step_skipped")
        assert [e.step for e in skipped] == ["review", "second_review"]
        assert {e.detail for e in skipped} == {"branch triage jumped to wrap_up"}
        assert one(tl, "step_completed", "triage").seq < skipped[0].seq
        assert skipped[-1].seq < one(tl, "step_started", "wrap_up").seq
    else:
        assert ran(h) == ["review", "second_review", "wrap_up"]
        assert "step_skipped" not in kinds(tl)


# --- parallel ---------------------------------------------------------------------------------


def parallel(*branches: tuple[str, list[dict[str, Any]]], **extra: Any) -> dict[str, Any]:
    return {
        "id": "fan_out",
        "kind": "parallel",
        "branches": [{"name": name, "steps": steps} for name, steps in branches],
        **extra,
    }


async def test_parallel_runs_every_branch_and_joins(h):
    pb = playbook(
        [
            parallel(("legal", [action("hold")]), ("comms", [wait("statement"), action("post")])),
            action("joined"),
        ]
    )
    handle = await h.open(incident_input(pb))
    tl = await wait_for_timeline(handle, has("step_started", "statement"))
    assert one(tl, "step_started", "hold").seq < one(tl, "step_started", "statement").seq
    assert "joined" not in {e.step for e in tl}  # the join waits for the slow branch
    await event(handle, "statement")
    tl = await wait_for_timeline(handle, has("playbook_complete"))
    assert sorted(ran(h)) == ["hold", "joined", "post"] and ran(h)[-1] == "joined"
    joined = one(tl, "step_completed", "fan_out")
    assert joined.detail == "2 branches done"
    for step in ("hold", "statement", "post"):
        assert one(tl, "step_completed", step).seq < joined.seq
    assert joined.seq < one(tl, "step_started", "joined").seq


async def test_a_failing_branch_cancels_its_siblings_and_halts(h):
    h.stand_ins.fail.add("case.boom")
    pb = playbook(
        [
            parallel(
                ("doomed", [action("boom", retry={"max_attempts": 1})]),
                ("waiting", [wait("reply")]),
                ("asking", [{"id": "ok", "kind": "approval", "roles": ["legal"]}]),
            ),
            action("never"),
        ]
    )
    handle = await h.open(incident_input(pb))
    tl = await wait_for_timeline(handle, has("playbook_halted"))
    assert "case.boom failed" in one(tl, "step_failed", "boom").detail
    for sibling in ("reply", "ok"):
        assert one(tl, "step_cancelled", sibling).detail == "cancelled: a sibling branch failed"
    failed = one(tl, "step_failed", "fan_out")
    assert failed.detail.startswith("fan_out: 1 branch(es) failed")
    assert one(tl, "playbook_halted").seq > failed.seq
    assert "never" not in {e.step for e in tl}
    status = await handle.query(IncidentWorkflow.status)
    assert (status.active_steps, status.pending_approvals) == ([], [])
    # The cancelled approval step awaits no decision any more.
    late = handle.execute_update(IncidentWorkflow.approve, approval("ok"))
    assert await refusal(late) == "not_awaiting_decision"
    await handle.signal(SIGNAL_APPROVE, approval("ok"))
    tl = await wait_for_timeline(handle, has("approval_refused"))
    assert one(tl, "approval_refused", "ok").data["code"] == "not_awaiting_decision"
    assert "approved" not in kinds(tl)


async def test_siblings_finish_when_cancel_siblings_on_failure_is_false(h):
    h.stand_ins.fail.add("case.boom")
    pb = playbook(
        [
            parallel(
                ("doomed", [action("boom", retry={"max_attempts": 1})]),
                ("waiting", [wait("reply"), action("answer")]),
                cancel_siblings_on_failure=False,
            ),
            action("never"),
        ]
    )
    handle = await h.open(incident_input(pb))
    tl = await wait_for_timeline(handle, has("step_failed", "boom"))
    assert "step_failed" not in [e.kind for e in tl if e.step == "fan_out"]
    await event(handle, "reply")
    tl = await wait_for_timeline(handle, has("playbook_halted"))
    assert "step_cancelled" not in kinds(tl)
    assert one(tl, "step_completed", "answer").seq < one(tl, "step_failed", "fan_out").seq
    assert ran(h) == ["boom", "answer"]


# --- wait_for, timers -------------------------------------------------------------------------


async def test_wait_for_counts_an_event_sent_before_the_step_starts(h):
    pb = playbook([wait("gate", "go"), wait("collect", "evidence"), action("after")])
    handle = await h.open(incident_input(pb))
    await wait_for_timeline(handle, has("step_started", "gate"))
    await event(handle, "evidence", case_ref="LE-42")
    await wait_for_timeline(handle, has("event"))
    assert "collect" not in {e.step for e in await handle.query(IncidentWorkflow.timeline)}
    await event(handle, "go")
    tl = await wait_for_timeline(handle, has("playbook_complete"))
    collect_started = one(tl, "step_started", "collect")
    assert one(tl, "step_completed", "collect").detail == "evidence received"
    assert entries(tl, "event")[0].seq < collect_started.seq
    assert entries(tl, "event")[0].data == {"case_ref": "LE-42"}
    status = await handle.query(IncidentWorkflow.status)
    assert status.fields["case_ref"] == "LE-42"  # event data lands in the incident fields


@pytest.mark.parametrize("on_timeout", ["continue", "fail"])
async def test_wait_for_timeout(hts, ts_env, on_timeout):
    pb = playbook([wait("le", "le_response", timeout="2h", on_timeout=on_timeout), action("next")])
    handle = await hts.open(incident_input(pb))
    await wait_for_timeline(handle, has("step_started", "le"))
    await ts_env.sleep(timedelta(hours=3))
    finished = "playbook_complete" if on_timeout == "continue" else "playbook_halted"
    tl = await wait_for_timeline(handle, has(finished))
    started = one(tl, "step_started", "le")
    if on_timeout == "continue":
        done = one(tl, "step_completed", "le")
        assert done.detail == "timed out waiting for le_response"
        assert ran(hts) == ["next"]
    else:
        done = one(tl, "step_failed", "le")
        assert done.detail == "no le_response before the timeout"
        assert ran(hts) == []
    late = done.at - (started.at + timedelta(hours=2))
    assert timedelta(0) <= late < LATENCY


async def test_timer_until_an_iso_date_from_an_incident_field(hts, ts_env):
    now = await ts_env.get_current_time()
    day = (now + timedelta(days=3)).date()
    target = datetime(day.year, day.month, day.day, tzinfo=UTC)
    pb = playbook([{"id": "hold", "kind": "timer", "until_field": "hold_until"}, action("release")])
    handle = await hts.open(incident_input(pb, fields={"hold_until": day.isoformat()}))
    tl = await wait_for_timeline(handle, has("timer_set", "hold"))
    assert one(tl, "timer_set", "hold").detail == f"fires at {target.isoformat()}"
    await ts_env.sleep(target - now - timedelta(hours=1))
    assert "release" not in {e.step for e in await handle.query(IncidentWorkflow.timeline)}
    await ts_env.sleep(timedelta(hours=2))
    tl = await wait_for_timeline(handle, has("step_completed", "release"))
    late = one(tl, "step_completed", "hold").at - target
    assert timedelta(0) <= late < LATENCY


async def test_timer_with_a_field_that_is_not_a_date_fails_the_step(h):
    pb = playbook([{"id": "hold", "kind": "timer", "until_field": "hold_until"}])
    handle = await h.open(incident_input(pb, fields={"hold_until": "next week"}))
    tl = await wait_for_timeline(handle, has("playbook_halted"))
    assert "must be an ISO date" in one(tl, "step_failed", "hold").detail


# --- templating, closing, opening -------------------------------------------------------------


async def test_templated_args_are_rendered_into_the_activity_call(h):
    steps = [
        {"id": "ok", "kind": "approval", "roles": ["legal"]},
        action(
            "notify",
            "notify.email",
            args={
                "subject": "[{{ severity }}] {{ playbook }} {{ incident_id }}",
                "to": "{{requester_email}}",
                "body": ["{{ summary }}", "decided: {{ decision.ok }}", "{{ nobody }}."],
                "meta": {"owner": "{{ owner }}", "step": "{{ step_id }}", "attempts": 3},
            },
        ),
    ]
    inp = incident_input(
        playbook(steps),
        summary="credible threat",
        fields={"requester_email": "agent@example.gov"},
    )
    handle = await h.open(inp)
    await wait_for_status(handle, lambda s: s.pending_approvals)
    await handle.execute_update(IncidentWorkflow.approve, approval("ok"))
    await wait_for_timeline(handle, has("playbook_complete"))
    (call,) = h.stand_ins.named("notify.email")
    assert call["args"] == {
        "subject": f"[sev1] test-playbook {inp.incident_id}",
        "to": "agent@example.gov",
        "body": ["credible threat", "decided: approved", "."],
        "meta": {"owner": "alice", "step": "notify", "attempts": 3},
    }
    assert (call["step_id"], call["operation"], call["severity"]) == (
        "notify",
        "notify.email",
        "sev1",
    )
    assert call["idempotency_key"] == f"{inp.incident_id}:notify"


async def test_close_while_steps_run_cancels_them(h):
    h.stand_ins.hold("case.slow")
    pb = playbook(
        [
            parallel(("waiting", [wait("reply")]), ("working", [action("slow")])),
            action("never"),
        ]
    )
    handle = await h.open(incident_input(pb))
    await wait_for_timeline(handle, has("step_started", "slow"))
    await wait_for_status(handle, lambda s: h.stand_ins.started.get("case.slow") == 1)
    outcome = await h.close(handle, reason="false alarm", settle=False)  # case.slow in flight
    assert (outcome.status, outcome.resolution) == ("closed", "false alarm")
    tl = await handle.query(IncidentWorkflow.timeline)
    closed = one(tl, "closed")
    cancelled = entries(tl, "step_cancelled")
    assert {e.step for e in cancelled} == {"reply", "slow", "fan_out"}
    assert {e.detail for e in cancelled} == {"cancelled: incident closed"}
    assert all(e.seq > closed.seq for e in cancelled)
    assert "never" not in {e.step for e in tl}
    assert "playbook_halted" not in kinds(tl) and "playbook_complete" not in kinds(tl)


async def test_a_second_open_of_the_same_incident_reports_the_existing_one(h):
    inp = incident_input(playbook([wait("reply")]))
    first = await start_incident(h.client, inp, h.task_queue)
    h.handles.append(h.client.get_workflow_handle(first.workflow_id))
    again = await start_incident(h.client, inp.model_copy(update={"summary": "dup"}), h.task_queue)
    assert (first.created, again.created) == (True, False)
    assert again.workflow_id == first.workflow_id == workflow_id_for(inp.incident_id)
    assert again.run_id == first.run_id
    assert again.playbook_hash == inp.playbook_hash
    with pytest.raises(WorkflowAlreadyStartedError):
        await start(h.client, h.task_queue, inp)
    handle = h.client.get_workflow_handle(first.workflow_id)
    tl = await wait_for_timeline(handle, has("step_started", "reply"))
    assert len(entries(tl, "opened")) == 1
    assert (await handle.query(IncidentWorkflow.status)).summary == "test incident"


# --- commander Updates, search attributes -----------------------------------------------------


async def attributes(h, handle) -> dict[str, Any]:
    found = (await h.latest(handle)).typed_search_attributes
    return {key.name: found.get(key) for key in (SA_SEVERITY, SA_STATUS, SA_PLAYBOOK, SA_BREACHED)}


async def test_commander_updates_and_search_attributes(h):
    steps = [{"id": "ok", "kind": "approval", "roles": ["legal"]}, wait("reply")]
    # Its records flush is held below: a local activity, kept alive by the worker's workflow
    # task heartbeats (every 0.8 task timeouts), which is when each message gets its answer.
    handle = await h.open(
        incident_input(playbook(steps), severity="sev1"), task_timeout=timedelta(seconds=2)
    )
    await wait_for_status(handle, lambda s: s.pending_approvals)
    assert await attributes(h, handle) == {
        "IncidentSeverity": "sev1",
        "IncidentStatus": "open",
        "IncidentPlaybook": "test-playbook",
        "SlaBreached": False,
    }

    ack = await handle.execute_update(
        IncidentWorkflow.acknowledge, commander("ivan", reason="on it")
    )
    assert (ack.kind, ack.actor, ack.role, ack.detail) == ("acknowledged", "ivan", "ic", "on it")
    again = handle.execute_update(IncidentWorkflow.acknowledge, commander("ivan"))
    assert await refusal(again) == "already_acknowledged"
    status = await handle.query(IncidentWorkflow.status)
    assert (status.status, status.owner) == ("acknowledged", "ivan")  # the acker owns it
    assert status.acknowledged_at == ack.at

    assigned = await handle.execute_update(IncidentWorkflow.assign, commander("ivan", to="jo"))
    assert (assigned.detail, assigned.data) == ("ivan -> jo", {"from": "ivan", "to": "jo"})
    no_one = handle.execute_update(IncidentWorkflow.assign, commander("ivan"))
    assert await refusal(no_one) == "missing_assignee"
    assert (await handle.query(IncidentWorkflow.status)).owner == "jo"

    for severity in ("sev1", "sev2", "sev3"):  # same or lower is not an escalation
        down = handle.execute_update(IncidentWorkflow.escalate, commander(severity=severity))
        assert await refusal(down) == "not_an_escalation"
    assert await refusal(handle.execute_update(IncidentWorkflow.escalate, commander())) == (
        "not_an_escalation"
    )
    up = await handle.execute_update(
        IncidentWorkflow.escalate, commander("jo", severity="sev0", reason="credible threat")
    )
    assert (up.kind, up.data, up.detail) == (
        "severity_changed",
        {"from": "sev1", "to": "sev0"},
        "sev1 -> sev0: credible threat",
    )

    note = await handle.execute_update(IncidentWorkflow.note, commander("jo", reason="called LE"))
    assert (note.kind, note.actor, note.detail) == ("note", "jo", "called LE")
    blank = handle.execute_update(IncidentWorkflow.note, commander("jo", reason="  "))
    assert await refusal(blank) == "empty_note"

    status = await handle.query(IncidentWorkflow.status)
    assert (status.severity, status.status, status.owner) == ("sev0", "acknowledged", "jo")
    assert await attributes(h, handle) == {
        "IncidentSeverity": "sev0",
        "IncidentStatus": "acknowledged",
        "IncidentPlaybook": "test-playbook",
        "SlaBreached": False,
    }
    tl = await handle.query(IncidentWorkflow.timeline)
    assert kinds(tl)[-4:] == ["acknowledged", "assigned", "severity_changed", "note"]

    no_resolution = handle.execute_update(IncidentWorkflow.close, commander("jo", reason=" "))
    assert await refusal(no_resolution) == "missing_resolution"

    # Hold the final records flush so the closed incident stays running while we knock.
    await h.settle(handle)
    h.stand_ins.hold("records.append")
    closed = await handle.execute_update(IncidentWorkflow.close, commander("jo", reason="handled"))
    assert (closed.kind, closed.detail) == ("closed", "handled")
    for update, request in [
        (IncidentWorkflow.acknowledge, commander("jo")),
        (IncidentWorkflow.assign, commander("jo", to="kim")),
        (IncidentWorkflow.escalate, commander("jo", severity="sev0")),
        (IncidentWorkflow.note, commander("jo", reason="late note")),
        (IncidentWorkflow.close, commander("jo", reason="again")),
        (IncidentWorkflow.approve, approval("ok")),
        (IncidentWorkflow.reject, approval("ok")),
    ]:
        assert await refusal(handle.execute_update(update, request)) == "incident_closed"
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    tl = await handle.query(IncidentWorkflow.timeline)
    assert "late note" not in {e.detail for e in tl}
    h.stand_ins.release("records.append")
    outcome = await handle.result()
    assert (outcome.status, outcome.resolution, outcome.sla_breached) == (
        "closed",
        "handled",
        False,
    )
    assert (await attributes(h, handle))["IncidentStatus"] == "closed"


async def test_acknowledging_after_the_playbook_completed_keeps_its_status(h):
    handle = await h.open(incident_input(playbook([action("only")])))
    await wait_for_status(handle, lambda s: s.status == "playbook_complete")
    ack = await handle.execute_update(IncidentWorkflow.acknowledge, commander("ivan"))
    status = await handle.query(IncidentWorkflow.status)
    assert (status.status, status.owner, status.acknowledged_at) == (
        "playbook_complete",
        "ivan",
        ack.at,
    )
    assert (await attributes(h, handle))["IncidentStatus"] == "playbook_complete"


async def test_sla_breached_search_attribute_on_the_dev_server(h):
    pb = playbook([wait("reply", sla={"due": "1s"})])
    handle = await h.open(incident_input(pb))
    await wait_for_timeline(handle, has("sla_breach", "reply"), timeout=10)
    await wait_for_status(handle, lambda s: s.sla_breached)
    assert (await attributes(h, handle))["SlaBreached"] is True
