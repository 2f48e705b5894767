"""A failed step says what it means (issue 8, item 7): the playbook's ``on_failure`` halts the
walk, continues, or asks the commander to retry or skip; a failure that does not halt never stops
an independent branch; whatever needs a person is visible (status, the NeedsAttention search
attribute, a page) and a statutory step is skipped only by Legal.
"""

from __future__ import annotations

import pytest

from tests.engine_support import (
    commander,
    entries,
    has,
    incident_input,
    kinds,
    playbook,
    refusal,
    wait_for_status,
    wait_for_timeline,
)
from workflows.incident import IncidentWorkflow
from workflows.models import StepRequest
from workflows.names import SA_ATTENTION


def steps(on_failure: str | None = None, legal: bool = False) -> list[dict]:
    first = {"id": "notify-retailer", "kind": "action", "activity": "case.email",
             "retry": {"max_attempts": 1}}  # fmt: skip
    if on_failure:
        first["on_failure"] = on_failure
    if legal:
        first["sla"] = {"due": "72h", "legal": True}
    return [first, {"id": "after", "kind": "action", "activity": "case.note"}]


def request(step: str = "notify-retailer", **extra) -> StepRequest:
    return StepRequest(step_id=step, actor="casey", **extra)


async def attention_flag(handle) -> bool | None:
    return (await handle.describe()).typed_search_attributes.get(SA_ATTENTION)


async def test_ask_waits_is_visible_pages_and_a_retry_after_the_fix_goes_on(h):
    h.stand_ins.fail.add("case.email")
    handle = await h.open(incident_input(playbook(steps(), on_failure="ask")))
    status = await wait_for_status(handle, lambda s: s.failed_steps)
    assert [s.step_id for s in status.failed_steps] == ["notify-retailer"]
    assert status.attention and "notify-retailer failed" in status.attention[0]
    assert status.status == "open" and status.walk == "running"
    assert await attention_flag(handle) is True
    pages = h.stand_ins.named("notify.pagerduty")
    assert [p["args"]["action"] for p in pages] == ["trigger"]
    assert "after" not in {
        c.payload["step_id"] for c in h.stand_ins.calls if c.operation.startswith("case.")
    }

    h.stand_ins.fail.discard("case.email")  # the commander fixed the address
    await handle.execute_update(IncidentWorkflow.retry_step, request(reason="address fixed"))
    tl = await wait_for_timeline(handle, has("step_completed", "after"))
    assert kinds(tl).count("step_started") == 3  # notify-retailer twice, then after
    emails = [c.payload for c in h.stand_ins.calls if c.operation == "case.email"]
    assert [e["idempotency_key"].rsplit(":", 1)[-1] for e in emails] == [
        "notify-retailer",
        "notify-retailer#2",
    ]
    status = await handle.query(IncidentWorkflow.status)
    assert status.attention == [] and status.failed_steps == []
    assert await attention_flag(handle) is False
    await h.close(handle)


async def test_skip_goes_on_and_a_statutory_step_is_skipped_only_by_legal(h):
    h.stand_ins.fail.add("case.email")
    handle = await h.open(incident_input(playbook(steps("ask", legal=True))))
    await wait_for_status(handle, lambda s: s.failed_steps)
    refused = await refusal(
        handle.execute_update(IncidentWorkflow.skip_step, request(reason="no address"))
    )
    assert refused == "legal_required"
    assert (
        await refusal(handle.execute_update(IncidentWorkflow.skip_step, request(role="legal")))
        == "missing_reason"
    )
    assert await refusal(handle.execute_update(IncidentWorkflow.retry_step, request("after"))) in (
        "unknown_step",
        "not_waiting",
    )
    await handle.execute_update(
        IncidentWorkflow.skip_step, request(role="legal", reason="retailer closed down")
    )
    tl = await wait_for_timeline(handle, has("step_completed", "after"))
    skipped = entries(tl, "step_skipped", "notify-retailer")[0]
    assert "skipped by casey (legal): retailer closed down" in skipped.detail
    status = await handle.query(IncidentWorkflow.status)
    clock = next(c for c in status.clocks if c.name == "notify-retailer")
    assert clock.state != "met"  # a skipped statutory step did not meet its clock
    await h.close(handle)


async def test_continue_passes_over_the_failure(h):
    h.stand_ins.fail.add("case.email")
    handle = await h.open(incident_input(playbook(steps("continue"))))
    tl = await wait_for_timeline(handle, has("step_completed", "after"))
    assert "playbook_halted" not in kinds(tl)
    assert "(the playbook continues)" in entries(tl, "step_failed", "notify-retailer")[0].detail
    await h.close(handle)


async def test_halt_is_visible_and_pages(h):
    h.stand_ins.fail.add("case.email")
    handle = await h.open(incident_input(playbook(steps())))  # playbook default: halt
    await wait_for_timeline(handle, has("playbook_halted"))
    status = await wait_for_status(handle, lambda s: s.attention)
    assert status.walk == "halted" and "playbook halted" in status.attention[0]
    assert await attention_flag(handle) is True
    assert [p["args"]["action"] for p in h.stand_ins.named("notify.pagerduty")] == ["trigger"]
    await h.close(handle)


async def test_a_failure_that_asks_does_not_stop_an_independent_branch(h):
    h.stand_ins.fail.add("case.email")
    pb = playbook(
        [{"id": "both", "kind": "parallel", "branches": [
            {"name": "retailer", "steps": steps()[:1]},
            {"name": "reporter", "steps": [
                {"id": "call", "kind": "action", "activity": "case.call"},
                {"id": "follow-up", "kind": "action", "activity": "case.note"},
            ]},
        ]}],
        on_failure="ask",
    )  # fmt: skip
    handle = await h.open(incident_input(pb))
    await wait_for_timeline(handle, has("step_completed", "follow-up"))
    status = await handle.query(IncidentWorkflow.status)
    assert [s.step_id for s in status.failed_steps] == ["notify-retailer"]
    assert [s.step_id for s in status.active_steps] == ["both"]
    await handle.execute_update(IncidentWorkflow.acknowledge, commander())
    await h.close(handle)


@pytest.mark.parametrize("policy", ["halt", "continue", "ask"])
def test_on_failure_is_validated(policy):
    assert playbook(steps(policy)).steps[0].on_failure == policy


async def test_close_reports_unfinished_steps_as_not_met_never_met(h):
    """Issue 8, item 8: closing before a step ran is not meeting its SLA."""
    from records.projection import clock_outcome
    from workflows.models import SlaClock

    pb = playbook(
        [{"id": "evidence", "kind": "wait_for", "event": "evidence_in", "sla": {"due": "2h"}}],
        sla={"acknowledge": {"due": "30m"}, "resolve": {"due": "4h"}},
    )
    handle = await h.open(incident_input(pb))
    await wait_for_timeline(handle, has("step_started", "evidence"))
    await h.close(handle, settle=False)
    status = await handle.query(IncidentWorkflow.status)
    states = {c.name: c.state for c in status.clocks}
    assert states == {
        "evidence": "not_met",
        "incident.acknowledge": "not_met",  # nobody acknowledged: closing is not acknowledging
        "incident.resolve": "met",
    }
    tl = await handle.query(IncidentWorkflow.timeline)
    assert entries(tl, "step_cancelled", "evidence")[0].sla == "not_met"
    assert status.status == "closed"
    batch = h.stand_ins.named("records.append")[-1]  # what the records receive at close
    snapshot = batch["snapshot"]["clocks"]
    assert {n: clock_outcome(SlaClock.model_validate(c)) for n, c in snapshot.items()} == {
        "evidence": "not_met",
        "incident.acknowledge": "not_met",
        "incident.resolve": "met",
    }
