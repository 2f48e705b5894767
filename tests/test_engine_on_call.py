"""Requests and pages go to whoever is on call (issue 9), on the time-skipping test server.

The real ``roster.on_call`` activity answers from a roster in a throw-away records database (a
rotation, then an override); every other integration is a stand-in. Rotations and overrides span
years around the test server's clock, so who is on call never depends on when the test runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import ActivityEnvironment

from activities import on_call
from records import store
from roster import service, tables
from settings import get_settings
from tests.engine_support import (
    approval,
    awaiting,
    engine_harness,
    entries,
    has,
    incident_input,
    one,
    playbook,
    wait_for_status,
    wait_for_timeline,
)
from tests.records_db import records_url  # noqa: F401 - the fixture
from workflows.incident import IncidentWorkflow
from workflows.models import ActionRequest
from workflows.on_call import OnCall, answer, paged_role

FROM, UNTIL = datetime(2025, 1, 1, tzinfo=UTC), datetime(2035, 1, 1, tzinfo=UTC)
ADMIN = "admin"


@pytest.fixture
async def oc(ts_env) -> AsyncIterator[Any]:
    """The engine harness on the time-skipping server, with the real on-call activity."""
    async with engine_harness(ts_env, on_call.ACTIVITIES) as harness:
        yield harness


@pytest.fixture
def roster(records_url) -> str:  # noqa: F811
    """lena and sam take turns in legal (lena's turn lasts ten years), omar holds ic, and alice
    (who opens every incident here) and kim take turns in comms (alice's turn first)."""
    tables._ready.clear()
    people = {"lena": ["legal"], "sam": ["legal"], "omar": ["ic"], "alice": ["legal", "comms"],
              "kim": ["comms"]}  # fmt: skip
    for handle, roles in people.items():
        service.add_person(handle, display_name=handle.title(), roles=roles, actor=ADMIN)
    for role, turns in (("legal", ["lena", "sam"]), ("comms", ["alice", "kim"])):
        service.add_rotation(
            role, name="primary", people=turns, shift=UNTIL - FROM, start=FROM, actor=ADMIN
        )
    return records_url


@pytest.fixture
def unreachable(tmp_path, monkeypatch) -> Iterator[None]:
    """A records database that cannot be opened: its directory would be inside a file."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("CR_DATABASE_URL", f"sqlite:///{blocker / 'records.db'}")
    get_settings.cache_clear()
    store.reset_engines()
    yield
    store.reset_engines()
    get_settings.cache_clear()


# --- the rules and the activity, without a server ------------------------------------------------


def test_a_policy_pages_the_role_it_is_named_after():
    assert paged_role("ic-oncall") == "ic"
    assert paged_role("food_safety-oncall") == "food_safety"
    for policy in ("lers-secondary", "tns-lers", "oncall", "-oncall", "ic-oncall-backup"):
        assert paged_role(policy) is None, policy


def test_the_answer_is_bounded_each_person_named_once_and_never_the_requester():
    found = {"legal": "ann,bob,cat,dan,eve", "comms": "ann,fay", "ic": ""}
    got = answer(found, ["legal", "comms", "ic", "lers"], exclude="bob")
    assert got.holders == [("ann", "legal"), ("cat", "legal"), ("dan", "legal"), ("fay", "comms")]
    assert got.text == "ann (legal), cat (legal), dan (legal), fay (comms)"
    assert OnCall().text == "nobody on call"
    assert OnCall(reached=False).data == {"on_call": "nobody on call", "roster": "unreachable"}


async def test_the_activity_answers_from_the_roster_at_the_time_asked(roster):
    for handle in ("uma", "vic", "wes"):
        service.add_person(handle, display_name=handle, roles=["legal"], actor=ADMIN)
    args = {"roles": ["legal", "ic", "comms", "lers"], "at": FROM.isoformat()}
    req = ActionRequest(
        incident_id="i1", step_id="s", operation="roster.on_call", args=args, idempotency_key="k"
    )
    result = await ActivityEnvironment().run(on_call.on_call, req)
    assert result.data == {"legal": "lena", "ic": "omar", "comms": "alice", "lers": ""}
    before = req.model_copy(update={"args": {**args, "at": "2024-06-01T00:00:00+00:00"}})
    result = await ActivityEnvironment().run(on_call.on_call, before)  # before the rotations:
    assert result.data["legal"] == "alice,lena,sam"  # every grantee, at most three


def asks(harness: Any) -> list[str]:
    return [c["args"]["text"] for c in harness.stand_ins.named("notify.slack")]


def two_legal_approvals() -> list[dict[str, Any]]:
    return [
        {"id": "disclose", "kind": "approval", "roles": ["legal"]},
        {"id": "publish", "kind": "approval", "roles": ["legal"]},
    ]


async def test_a_request_names_the_holder_and_the_next_follows_an_override(oc, roster):
    team = {"lena": ["legal"], "sam": ["legal"], "alice": ["legal", "ic"]}
    handle = await oc.open(incident_input(playbook(two_legal_approvals()), roster=team))
    status = await wait_for_status(handle, awaiting("disclose"))
    assert status.pending_approvals[0].on_call == ["lena"]
    tl = await handle.query(IncidentWorkflow.timeline)
    assert one(tl, "approval_requested", "disclose").data == {
        "eligible": "lena, sam",
        "on_call": "lena (legal)",
    }
    assert any(
        "decision needed from legal on disclose: on call lena (legal); also eligible: sam" in t
        for t in asks(oc)
    ), asks(oc)

    service.add_override(
        "legal", "sam", start=FROM, end=UNTIL, reason="lena is in court", actor=ADMIN
    )
    await handle.execute_update(IncidentWorkflow.approve, approval("disclose", "lena"))
    status = await wait_for_status(handle, awaiting("publish"))
    assert status.pending_approvals[0].on_call == ["sam"]
    tl = await handle.query(IncidentWorkflow.timeline)
    assert one(tl, "approval_requested", "publish").data["on_call"] == "sam (legal)"
    assert any(
        "decision needed from legal on publish: on call sam (legal); also eligible: lena" in t
        for t in asks(oc)
    ), asks(oc)
    await oc.close(handle)


async def test_the_requester_is_never_named_on_call_for_their_own_request(oc, roster):
    """alice is on shift for comms, but she requested the decision (she opened the incident)."""
    steps = [{"id": "statement", "kind": "approval", "roles": ["comms"]}]
    handle = await oc.open(
        incident_input(playbook(steps), roster={"kim": ["comms"], "alice": ["ic"]})
    )
    status = await wait_for_status(handle, awaiting("statement"))
    assert status.pending_approvals[0].on_call == []
    tl = await handle.query(IncidentWorkflow.timeline)
    requested = one(tl, "approval_requested", "statement")
    assert (requested.actor, requested.data) == (
        "alice",
        {"eligible": "kim", "on_call": "nobody on call"},
    )
    assert any(
        "decision needed from comms on statement: nobody on call; eligible: kim" in t
        for t in asks(oc)
    ), asks(oc)
    await oc.close(handle)


def paging_playbook() -> list[dict[str, Any]]:
    """A page from an action step (legal's on-call), then an SLA breach paging ic's on-call."""
    return [
        {
            "id": "page-legal",
            "kind": "action",
            "activity": "notify.pagerduty",
            "args": {"summary": "subpoena received", "escalation_policy": "legal-oncall"},
        },
        {
            "id": "evidence",
            "kind": "wait_for",
            "event": "evidence_in",
            "sla": {"due": "30m", "on_breach": [{"page": "ic-oncall"}, {"page": "lers-tier2"}]},
        },
    ]


async def test_a_page_names_the_holder_of_the_role_its_policy_pages(ts_env, oc, roster):
    handle = await oc.open(incident_input(playbook(paging_playbook())))
    await wait_for_timeline(handle, has("step_started", "evidence"))
    await ts_env.sleep(timedelta(hours=1))
    tl = await wait_for_timeline(handle, has("escalation", "evidence", 2))

    pages = oc.stand_ins.named("notify.pagerduty")
    assert [(p["args"]["escalation_policy"], p["args"].get("on_call")) for p in pages] == [
        ("legal-oncall", "lena (legal)"),
        ("ic-oncall", "omar (ic)"),
        ("lers-tier2", None),  # not a <role>-oncall policy: it names nobody, asks nobody
    ]
    paged = [e for e in tl if e.kind == "paged"]
    assert [(e.step, e.detail, e.data) for e in paged] == [
        ("page-legal", "legal-oncall: lena (legal)",
         {"policy": "legal-oncall", "on_call": "lena (legal)"}),
        ("evidence", "ic-oncall: omar (ic)", {"policy": "ic-oncall", "on_call": "omar (ic)"}),
    ]  # fmt: skip
    first_escalation = entries(tl, "escalation", "evidence")[0]
    assert paged[1].seq + 1 == first_escalation.seq  # recorded just before its escalation
    await oc.close(handle)


async def test_an_unreachable_roster_still_requests_and_pages_naming_nobody(
    ts_env, oc, unreachable
):
    steps = [*paging_playbook()[:1], {"id": "disclose", "kind": "approval", "roles": ["legal"]}]
    handle = await oc.open(
        incident_input(playbook(steps), roster={"lena": ["legal"], "alice": ["ic"]})
    )
    await wait_for_status(handle, awaiting("disclose"))
    tl = await handle.query(IncidentWorkflow.timeline)

    (page,) = oc.stand_ins.named("notify.pagerduty")
    assert page["args"]["on_call"] == "nobody on call"
    nobody = {"on_call": "nobody on call", "roster": "unreachable"}
    assert one(tl, "paged", "page-legal").data == {"policy": "legal-oncall", **nobody}
    assert one(tl, "step_completed", "page-legal").detail == "notify.pagerduty ok"
    assert one(tl, "approval_requested", "disclose").data == {"eligible": "lena", **nobody}
    assert any(
        "decision needed from legal on disclose: nobody on call; eligible: lena" in t
        for t in asks(oc)
    ), asks(oc)
    await oc.close(handle)


async def test_someone_granted_the_role_after_the_open_is_eligible_and_may_decide(oc, roster):
    """The roster at request time counts, not only the one the incident opened with: nora joins
    Legal after the open, is named eligible, and her decision is admitted; a person the roster
    never granted legal is still refused."""
    steps = [{"id": "ready", "kind": "wait_for", "event": "go"}, *two_legal_approvals()[:1]]
    handle = await oc.open(
        incident_input(playbook(steps), roster={"lena": ["legal"], "alice": ["ic"]})
    )
    await wait_for_status(handle, lambda s: any(a.step_id == "ready" for a in s.active_steps))
    service.add_person("nora", display_name="Nora", roles=["legal"], actor=ADMIN)
    await handle.signal("event", {"name": "go", "actor": "alice"})
    await wait_for_status(handle, awaiting("disclose"))
    tl = await handle.query(IncidentWorkflow.timeline)
    assert one(tl, "approval_requested", "disclose").data["eligible"] == "lena, nora, sam"

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(IncidentWorkflow.approve, approval("disclose", "mallory"))
    assert refused.value.cause.type == "role_not_held"  # type: ignore[attr-defined]
    result = await handle.execute_update(IncidentWorkflow.approve, approval("disclose", "nora"))
    assert result.outcome == "approved"
    await oc.close(handle)
