"""Approval steps of IncidentWorkflow on the real dev server: who may decide, by Update or signal.

A refused decision must change nothing: the pending approval (its decisions and outcome) and the
step's status are compared before and after every attempt. Authorization refusals are recorded in
the timeline (``approval_refused`` with ``data["code"]``); stale Updates are rejected by the
validator and leave no trace, while a stale signal (which cannot answer) is recorded too.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine_support import (
    approval,
    awaiting,
    commander,
    entries,
    has,
    incident_input,
    kinds,
    one,
    playbook,
    refusal,
    wait_for_status,
    wait_for_timeline,
)
from workflows.incident import IncidentWorkflow
from workflows.models import ApprovalRequest, ExternalEvent
from workflows.names import SIGNAL_APPROVE, SIGNAL_EVENT, SIGNAL_REJECT


def disclosure(on_reject: str = "fail", **approval_extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": "disclose",
            "kind": "approval",
            "roles": ["legal"],
            "on_reject": on_reject,
            "prompt": "Disclose account data to the requesting agency?",
            **approval_extra,
        },
        {"id": "send", "kind": "action", "activity": "case.disclose"},
        {"id": "publish", "kind": "approval", "roles": ["comms"]},
    ]


async def snapshot(handle) -> tuple[Any, ...]:
    """What a refused decision must not change: approvals and step states."""
    status = await handle.query(IncidentWorkflow.status)
    return (
        [a.model_dump() for a in status.pending_approvals],
        [(s.step_id, s.status) for s in status.active_steps],
    )


async def test_right_role_approves_and_the_playbook_moves_on(h):
    handle = await h.open(incident_input(playbook(disclosure())))
    await wait_for_status(handle, awaiting("disclose"))
    result = await handle.execute_update(
        IncidentWorkflow.approve, approval("disclose", "lena", "legal", "lawful request")
    )
    assert (result.step_id, result.outcome) == ("disclose", "approved")
    tl = await wait_for_timeline(handle, has("approval_requested", "publish"))

    requested = one(tl, "approval_requested", "disclose")
    assert (requested.actor, requested.role) == ("alice", "legal")
    assert requested.detail == "Disclose account data to the requesting agency?"
    approved = one(tl, "approved", "disclose")
    assert (approved.actor, approved.role, approved.detail) == ("lena", "legal", "lawful request")
    assert one(tl, "step_completed", "disclose").detail == "approved by lena"
    assert one(tl, "step_started", "send").seq > approved.seq
    assert [c["step_id"] for c in h.stand_ins.named("case.disclose")] == ["send"]
    asks = [c["args"]["text"] for c in h.stand_ins.named("notify.slack")]
    assert any("decision needed from legal on disclose" in text for text in asks)
    status = await handle.query(IncidentWorkflow.status)
    assert [a.step_id for a in status.pending_approvals] == ["publish"]


# (request, expected code, recorded in the timeline when sent by Update)
REFUSALS = [
    (approval("disclose", "carl", "comms"), "role_not_allowed", True),
    (approval("disclose", "alice", "legal"), "self_approval", True),  # alice opened it
    (approval("no-such-step"), "unknown_step", False),
    (approval("publish", "cora", "comms"), "not_awaiting_decision", False),
]


async def test_refused_update_decisions_change_nothing(h):
    handle = await h.open(incident_input(playbook(disclosure())))
    await wait_for_status(handle, awaiting("disclose"))
    for request, code, recorded in REFUSALS:
        for update in (IncidentWorkflow.approve, IncidentWorkflow.reject):
            before, tl_before = (
                await snapshot(handle),
                await handle.query(IncidentWorkflow.timeline),
            )
            assert await refusal(handle.execute_update(update, request)) == code
            tl = await handle.query(IncidentWorkflow.timeline)
            assert await snapshot(handle) == before
            if recorded:
                assert len(tl) == len(tl_before) + 1
                refused = tl[-1]
                assert (refused.kind, refused.step, refused.actor) == (
                    "approval_refused",
                    "disclose",
                    request.actor,
                )
                assert refused.data == {"code": code, "reason": "ok"}
            else:
                assert tl == tl_before  # rejected by the validator: no trace at all

    await handle.execute_update(IncidentWorkflow.approve, approval("disclose", "lena"))
    await wait_for_status(handle, awaiting("publish"))
    before, tl_before = await snapshot(handle), await handle.query(IncidentWorkflow.timeline)
    for update in (IncidentWorkflow.approve, IncidentWorkflow.reject):
        late = approval("disclose", "lou", "legal")
        assert await refusal(handle.execute_update(update, late)) == "already_decided"
    assert await snapshot(handle) == before
    assert await handle.query(IncidentWorkflow.timeline) == tl_before
    tl = await handle.query(IncidentWorkflow.timeline)
    assert [(e.kind, e.actor) for e in entries(tl, "approved")] == [("approved", "lena")]
    assert one(tl, "step_completed", "disclose").detail == "approved by lena"


async def signal_refused(handle, signal: Any, request: ApprovalRequest, code: str) -> None:
    """Send a decision by signal that must be refused with ``code`` and change nothing."""
    before = await snapshot(handle)
    count = len(entries(await handle.query(IncidentWorkflow.timeline), "approval_refused"))
    await handle.signal(signal, request)
    tl = await wait_for_timeline(handle, has("approval_refused", count=count + 1))
    refused = entries(tl, "approval_refused")[-1]
    assert refused.data == {"code": code, "reason": request.reason}
    assert (refused.actor, refused.role) == (request.actor, request.role)
    assert refused.step == (request.step_id if request.step_id != "no-such-step" else None)
    assert await snapshot(handle) == before


async def test_refused_signal_decisions_change_nothing_and_are_recorded(h):
    handle = await h.open(incident_input(playbook(disclosure())))
    await wait_for_status(handle, awaiting("disclose"))
    for request, code, _ in REFUSALS:
        await signal_refused(handle, SIGNAL_APPROVE, request, code)
        await signal_refused(handle, SIGNAL_REJECT, request, code)

    await handle.signal(SIGNAL_APPROVE, approval("disclose", "lena"))
    await wait_for_status(handle, awaiting("publish"))
    late = approval("disclose", "lou")
    await signal_refused(handle, SIGNAL_REJECT, late, "already_decided")
    tl = await handle.query(IncidentWorkflow.timeline)
    assert len(entries(tl, "approval_refused")) == 2 * len(REFUSALS) + 1
    assert [e.actor for e in entries(tl, "approved", "disclose")] == ["lena"]
    assert "rejected" not in kinds(tl)


async def test_second_approver_must_be_another_person_of_the_second_role(h):
    steps = disclosure(second_approver={"roles": ["director"]})
    handle = await h.open(incident_input(playbook(steps)))
    await wait_for_status(handle, awaiting("disclose"))
    first = await handle.execute_update(IncidentWorkflow.approve, approval("disclose", "lena"))
    assert first.outcome == "awaiting_second_approver"
    status = await handle.query(IncidentWorkflow.status)
    (pending,) = status.pending_approvals
    assert ([d.actor for d in pending.decisions], pending.outcome) == (["lena"], None)
    assert [s.step_id for s in status.active_steps] == ["disclose"]

    before = await snapshot(handle)
    for request, code in [
        (approval("disclose", "lena", "director"), "same_approver"),
        (approval("disclose", "lou", "legal"), "role_not_allowed"),  # second must be director
        (approval("disclose", "alice", "director"), "self_approval"),
    ]:
        assert await refusal(handle.execute_update(IncidentWorkflow.approve, request)) == code
        assert await snapshot(handle) == before

    second = await handle.execute_update(
        IncidentWorkflow.approve, approval("disclose", "dora", "director", "agreed")
    )
    assert second.outcome == "approved"
    tl = await wait_for_timeline(handle, has("step_completed", "disclose"))
    assert one(tl, "step_completed", "disclose").detail == "approved by lena, dora"
    assert [(e.actor, e.role) for e in entries(tl, "first_approval", "disclose")] == [
        ("lena", "legal")
    ]
    assert [(e.actor, e.role) for e in entries(tl, "approved", "disclose")] == [
        ("dora", "director")
    ]
    assert [e.data["code"] for e in entries(tl, "approval_refused")] == [
        "same_approver",
        "role_not_allowed",
        "self_approval",
    ]


async def test_reject_with_on_reject_fail_halts_the_playbook(h):
    handle = await h.open(incident_input(playbook(disclosure(on_reject="fail"))))
    await wait_for_status(handle, awaiting("disclose"))
    result = await handle.execute_update(
        IncidentWorkflow.reject, approval("disclose", "lena", reason="overbroad request")
    )
    assert result.outcome == "rejected"
    tl = await wait_for_timeline(handle, has("playbook_halted"))
    rejected = one(tl, "rejected", "disclose")
    assert (rejected.actor, rejected.detail) == ("lena", "overbroad request")
    assert one(tl, "step_failed", "disclose").detail == "disclose was rejected: overbroad request"
    assert "send" not in {e.step for e in tl}
    assert h.stand_ins.named("case.disclose") == []
    status = await handle.query(IncidentWorkflow.status)
    assert (status.active_steps, status.pending_approvals) == ([], [])


@pytest.mark.parametrize("decision", ["approve", "reject"])
async def test_on_reject_continue_lets_a_branch_follow_the_decision(h, decision):
    steps = [
        {"id": "disclose", "kind": "approval", "roles": ["legal"], "on_reject": "continue"},
        {
            "id": "route",
            "kind": "branch",
            "cases": [
                {
                    "when": {"field": "decision.disclose", "equals": "rejected"},
                    "steps": [{"id": "decline", "kind": "action", "activity": "case.decline"}],
                },
                {"steps": [{"id": "send", "kind": "action", "activity": "case.disclose"}]},
            ],
        },
    ]
    handle = await h.open(incident_input(playbook(steps)))
    await wait_for_status(handle, awaiting("disclose"))
    signal = SIGNAL_REJECT if decision == "reject" else SIGNAL_APPROVE
    await handle.signal(signal, approval("disclose", "lena", reason="decided"))
    tl = await wait_for_timeline(handle, has("playbook_complete"))
    taken = one(tl, "branch_taken", "route").detail
    outcome = one(tl, "step_completed", "disclose").detail
    if decision == "reject":
        assert (taken, outcome) == ("case 1", "rejected by lena")
        assert [c["step_id"] for c in h.stand_ins.named("case.decline")] == ["decline"]
        assert h.stand_ins.named("case.disclose") == []
    else:
        assert (taken, outcome) == ("case 2 (default)", "approved by lena")
        assert [c["step_id"] for c in h.stand_ins.named("case.disclose")] == ["send"]
        assert h.stand_ins.named("case.decline") == []


async def test_requester_is_the_owner_when_the_approval_step_starts(h):
    steps = [{"id": "ready", "kind": "wait_for", "event": "ready"}, *disclosure()]
    handle = await h.open(incident_input(playbook(steps)))
    await wait_for_timeline(handle, has("step_started", "ready"))
    await handle.execute_update(IncidentWorkflow.assign, commander("alice", to="bob"))
    await handle.signal(SIGNAL_EVENT, ExternalEvent(name="ready"))
    await wait_for_status(handle, awaiting("disclose"))
    status = await handle.query(IncidentWorkflow.status)
    assert (status.owner, status.pending_approvals[0].requested_by) == ("bob", "bob")

    bob = approval("disclose", "bob", "legal")
    assert await refusal(handle.execute_update(IncidentWorkflow.approve, bob)) == "self_approval"
    # Reassigning while the approval waits does not change who requested it.
    await handle.execute_update(IncidentWorkflow.assign, commander("bob", to="carol"))
    assert (await handle.query(IncidentWorkflow.status)).owner == "carol"
    assert await refusal(handle.execute_update(IncidentWorkflow.approve, bob)) == "self_approval"
    carol = approval("disclose", "carol", "legal")
    assert (await handle.execute_update(IncidentWorkflow.approve, carol)).outcome == "approved"
    tl = await wait_for_timeline(handle, has("step_completed", "disclose"))
    assert one(tl, "approval_requested", "disclose").actor == "bob"
    assert [e.data for e in entries(tl, "assigned")] == [
        {"from": "alice", "to": "bob"},
        {"from": "bob", "to": "carol"},
    ]


async def test_an_approval_request_names_the_people_who_may_decide(h):
    """From the roster the incident was opened with: people holding a step's role, not the
    requester; the decision-needed message names them, after who is on call (here the roster
    stand-in answers nobody: tests/test_engine_on_call.py has a real roster)."""
    roster = {"lena": ["legal"], "sam": ["Legal", "ic"], "casey": ["ic"], "alice": ["legal", "ic"]}
    handle = await h.open(incident_input(playbook(disclosure()), roster=roster))
    await wait_for_status(handle, awaiting("disclose"))
    status = await handle.query(IncidentWorkflow.status)
    assert status.pending_approvals[0].eligible == ["lena", "sam"]  # alice requested it
    tl = await handle.query(IncidentWorkflow.timeline)
    assert one(tl, "approval_requested", "disclose").data == {
        "eligible": "lena, sam",
        "on_call": "nobody on call",
    }
    texts = [c["args"]["text"] for c in h.stand_ins.named("notify.slack")]
    expected = "decision needed from legal on disclose: nobody on call; eligible: lena, sam"
    assert any(expected in t for t in texts), texts
    await h.close(handle)
