"""Continue-as-new of IncidentWorkflow: a long incident split over several runs loses nothing.

``continue_as_new_after_events`` forces a new run every few dozen history events. Handles are
not pinned to a run, so queries, signals and Updates follow the incident into its newest run.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus

from tests.engine_support import (
    approval,
    awaiting,
    commander,
    entries,
    full_timeline,
    has,
    incident_input,
    kinds,
    one,
    playbook,
    wait_for_run_status,
    wait_for_status,
    wait_for_timeline,
)
from workflows.incident import IncidentWorkflow
from workflows.models import ExternalEvent, TimelineEntry
from workflows.names import SIGNAL_EVENT

LATENCY = timedelta(seconds=3)


def action(step_id: str, **extra):
    return {"id": step_id, "kind": "action", "activity": f"case.{step_id}", **extra}


LONG_PLAYBOOK = [
    action("open_case", args={"summary": "{{ summary }}"}),
    action("freeze_account"),
    {"id": "disclose", "kind": "approval", "roles": ["legal"]},
    action("send_records"),
    {"id": "receipt", "kind": "wait_for", "event": "receipt"},
    {
        "id": "follow_up",
        "kind": "parallel",
        "branches": [
            {"name": "legal", "steps": [action("file_report")]},
            {"name": "comms", "steps": [action("tell_user"), action("log_contact")]},
        ],
    },
    action("wrap_up"),
]


async def notes(handle, start: int, count: int) -> None:
    for n in range(start, start + count):
        await handle.execute_update(IncidentWorkflow.note, commander("ivan", reason=f"note {n}"))


async def test_a_long_incident_over_several_runs_loses_nothing(h):
    inp = incident_input(playbook(LONG_PLAYBOOK), continue_as_new_after_events=40)
    first = await h.open(inp)
    handle = h.follow(first)
    await wait_for_status(handle, awaiting("disclose"))
    await notes(handle, 0, 12)
    status = await wait_for_status(handle, lambda s: s.run > 1)
    # The approval requested in run 1 is still pending, and can be decided now.
    assert [a.step_id for a in status.pending_approvals] == ["disclose"]
    assert status.pending_approvals[0].requested_by == "alice"
    decided = await handle.execute_update(IncidentWorkflow.approve, approval("disclose", "lena"))
    assert decided.outcome == "approved"
    await wait_for_timeline(handle, has("step_started", "receipt"))
    await notes(handle, 12, 12)
    await handle.signal(SIGNAL_EVENT, ExternalEvent(name="receipt"))
    await wait_for_timeline(handle, has("playbook_complete"))
    await notes(handle, 24, 6)
    outcome = await h.close(handle, "ivan", reason="records sent")
    assert (outcome.status, outcome.resolution) == ("closed", "records sent")

    # The last run carries only the latest entries (continue-as-new stays small however long the
    # incident); the whole timeline is what the records mirror received, run after run.
    carried = await handle.query(IncidentWorkflow.timeline)
    mirrored = {e["seq"]: e for b in h.stand_ins.named("records.append") for e in b["entries"]}
    tl = [TimelineEntry.model_validate(mirrored[seq]) for seq in sorted(mirrored)]
    assert carried[0].seq > 1 and [e.seq for e in carried] == list(
        range(carried[0].seq, len(tl) + 1)
    )
    assert [e.model_dump() for e in carried] == [e.model_dump() for e in tl[-len(carried) :]]
    runs = len(entries(tl, "continued")) + 1
    assert runs >= 3
    assert (await handle.query(IncidentWorkflow.status)).run == runs
    assert [e.seq for e in tl] == list(range(1, len(tl) + 1))
    assert all(a.at <= b.at for a, b in zip(tl, tl[1:], strict=False))
    assert [e.detail for e in entries(tl, "note")] == [f"note {n}" for n in range(30)]
    assert [e.detail for e in entries(tl, "continued")] == [
        f"run {n} resumes the incident" for n in range(2, runs + 1)
    ]
    steps = [s["id"] for s in LONG_PLAYBOOK] + ["file_report", "tell_user", "log_contact"]
    for kind in ("step_started", "step_completed"):
        assert sorted(e.step for e in entries(tl, kind)) == sorted(steps), kind
    assert one(tl, "approval_requested", "disclose").actor == "alice"
    assert one(tl, "approved", "disclose").actor == "lena"
    assert kinds(tl)[0] == "opened" and kinds(tl).count("opened") == 1
    assert kinds(tl)[-1] == "closed"
    # Every action ran exactly once across all runs; nothing was redone after a new run.
    actions = [c.payload["step_id"] for c in h.stand_ins.calls if c.operation.startswith("case.")]
    assert sorted(actions) == sorted(
        s for s in steps if s not in ("disclose", "receipt", "follow_up")
    )
    # The records mirror saw every entry, run after run.
    assert set(mirrored) == set(range(1, len(tl) + 1))


async def test_continue_as_new_waits_for_the_activity_in_flight(h):
    h.stand_ins.hold("case.open_case")
    inp = incident_input(playbook(LONG_PLAYBOOK), continue_as_new_after_events=30)
    first = await h.open(inp)
    handle = h.follow(first)
    await wait_for_status(handle, lambda s: h.stand_ins.started.get("case.open_case") == 1)
    await notes(handle, 0, 10)  # well past 30 events, while open_case is still running
    status = await handle.query(IncidentWorkflow.status)
    assert status.run == 1
    assert [s.step_id for s in status.active_steps] == ["open_case"]
    h.stand_ins.release("case.open_case")
    status = await wait_for_status(handle, lambda s: s.run > 1)
    tl = await wait_for_timeline(handle, has("approval_requested", "disclose"))
    # The step finished in the old run and was not started again in the new one.
    assert h.stand_ins.started["case.open_case"] == 1
    assert len(entries(tl, "step_started", "open_case")) == 1
    completed = one(tl, "step_completed", "open_case")
    assert completed.seq < entries(tl, "continued")[0].seq
    assert [e.detail for e in entries(tl, "note")] == [f"note {n}" for n in range(10)]


@pytest.mark.parametrize("local_calls", [False, True])
async def test_sla_clocks_keep_their_original_start_across_runs(hts, ts_env, local_calls):
    pb = playbook(
        [
            {
                "id": "evidence",
                "kind": "wait_for",
                "event": "evidence_in",
                "sla": {"due": "2h", "warn_at": "1h", "on_breach": [{"page": "lers"}]},
            }
        ],
        sla={"acknowledge": {"due": "30m"}},
    )
    first = await hts.open(
        incident_input(pb, continue_as_new_after_events=25, local_calls=local_calls)
    )
    handle = hts.follow(first)
    await wait_for_timeline(handle, has("step_started", "evidence"))
    await ts_env.sleep(timedelta(minutes=10))
    # Events nobody waits for grow the history until a new run starts (how many it takes depends
    # on how the server batches them into workflow tasks); the clocks must not restart.
    run_1 = hts.client.get_workflow_handle(first.id, run_id=first.first_execution_run_id)
    for n in range(100):
        await handle.signal(SIGNAL_EVENT, ExternalEvent(name="noise", data={"n": str(n)}))
        if (await run_1.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW:
            break
    # A run that decides to continue as new while signals keep arriving has that task refused
    # (UNHANDLED_COMMAND) and tries again with them: the first run may end after the last signal.
    await wait_for_run_status(run_1, WorkflowExecutionStatus.CONTINUED_AS_NEW)
    await hts.settle(handle)
    # Asked of the newest run by its run id: the time-skipping test server can keep routing a
    # query by workflow id alone to the run that just continued as new.
    newest = (await handle.describe()).run_id
    latest = hts.client.get_workflow_handle_for(IncidentWorkflow.run, first.id, run_id=newest)
    status = await wait_for_status(latest, lambda s: s.run > 1)
    assert {c.name: c.state for c in status.clocks} == {
        "incident.acknowledge": "on_track",
        "evidence": "on_track",
    }
    await ts_env.sleep(timedelta(hours=3))
    await wait_for_timeline(handle, has("escalation", "evidence"))
    tl = await full_timeline(hts, handle)
    assert [e.seq for e in tl] == list(range(1, len(tl) + 1))
    assert entries(tl, "continued")
    opened, started = one(tl, "opened"), one(tl, "step_started", "evidence")
    for entry, base, offset in [
        (one(tl, "sla_breach", "incident.acknowledge"), opened.at, timedelta(minutes=30)),
        (one(tl, "sla_warning", "evidence"), started.at, timedelta(hours=1)),
        (one(tl, "sla_breach", "evidence"), started.at, timedelta(hours=2)),
    ]:
        assert timedelta(0) <= entry.at - (base + offset) < LATENCY, entry
        assert entry.seq > entries(tl, "continued")[0].seq  # fired in a later run
    assert [p["args"]["escalation_policy"] for p in hts.stand_ins.named("notify.pagerduty")] == [
        "lers"
    ]
    status = await handle.query(IncidentWorkflow.status)
    assert status.run == len(entries(tl, "continued")) + 1


async def test_a_close_during_the_drain_closes_this_run_instead_of_starting_another(h):
    h.stand_ins.hold("case.open_case")
    inp = incident_input(playbook(LONG_PLAYBOOK), continue_as_new_after_events=30)
    handle = h.follow(await h.open(inp))
    await wait_for_status(handle, lambda s: h.stand_ins.started.get("case.open_case") == 1)
    await notes(handle, 0, 10)  # a new run is due, and waits for open_case
    closed = await handle.execute_update(IncidentWorkflow.close, commander(reason="withdrawn"))
    h.stand_ins.release("case.open_case")
    outcome = await handle.result()
    assert (outcome.status, outcome.resolution) == ("closed", "withdrawn")
    tl = await handle.query(IncidentWorkflow.timeline)
    assert "continued" not in kinds(tl)
    assert (await handle.query(IncidentWorkflow.status)).run == 1
    assert one(tl, "closed").seq == closed.seq
    assert one(tl, "step_completed", "open_case").seq > closed.seq
    assert {e.detail for e in entries(tl, "step_cancelled")} <= {"cancelled: incident closed"}
    assert h.stand_ins.started["case.open_case"] == 1
