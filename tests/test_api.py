"""The HTTP API (issue 9): the role matrix enforced before anything reaches Temporal, the actor
always the signed-in person, restricted incidents invisible to outsiders, and every failure JSON
with the right status and a message naming what is wrong. On the real dev server, with stand-in
vendors; identity comes from an injected token table (the roster's tokens are tested apart)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest

from api.app import create_app
from api.authz import ACTIONS
from api.errors import Unauthenticated
from incidents.actions import handle
from settings import Settings
from tests.engine_support import wait_for_status

PEOPLE = {
    "tok-casey": ("casey", {"ic"}, set()),
    "tok-lena": ("lena", {"legal"}, set()),
    "tok-aud": ("audra", {"auditor"}, set()),
    "tok-kim": ("kim", {"ic", "cr"}, {"child-safety"}),
    "tok-lee": ("lee", {"lers", "comms"}, set()),
    "tok-pia": ("pia", {"privacy"}, set()),
}


@dataclass(frozen=True)
class Person:
    person: str
    roles: frozenset[str]
    groups: frozenset[str]


def authenticate(token: str) -> Person:
    if token == "tok-revoked":
        raise Unauthenticated("revoked", "this token was revoked")
    if token not in PEOPLE:
        raise Unauthenticated("unknown", "no such token")
    name, roles, groups = PEOPLE[token]
    return Person(name, frozenset(roles), frozenset(groups))


@pytest.fixture
async def api(h, tmp_path):
    settings = Settings(task_queue=h.task_queue, data_dir=tmp_path)
    app = create_app(settings, authenticate=authenticate, client=h.client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


def as_(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


PHYSICAL = {"jurisdiction": "us", "category": "physical_assault", "retailer_involved": "yes",
            "retailer_contact_email": "safety@retailer.example"}  # fmt: skip


async def test_tokens_roles_and_the_actor_is_the_signed_in_person(api, h):
    iid = f"API-{uuid.uuid4().hex[:6]}"
    body = {"playbook": "physical-safety", "summary": "assault", "fields": PHYSICAL, "id": iid}
    assert (await api.post("/incidents", json=body)).status_code == 401
    r = await api.post("/incidents", json=body, headers=as_("tok-revoked"))
    assert (r.status_code, r.json()["error"]) == (401, "revoked")
    r = await api.post("/incidents", json=body, headers=as_("tok-lena"))
    assert r.status_code == 403 and "ic" in r.json()["needed_roles"]
    r = await api.post("/incidents", json=body | {"summary": "x" * 501}, headers=as_("tok-casey"))
    assert r.status_code == 422 and "summary" in r.json()["message"]
    r = await api.post("/incidents", json=body, headers=as_("tok-casey"))
    assert r.status_code == 201, r.text
    h.handles.append(handle(h.client, iid))

    r = await api.post(f"/incidents/{iid}/actions/ack", json={}, headers=as_("tok-casey"))
    assert r.status_code == 200 and r.json()["actor"] == "casey"
    for name in ("safety_call_made", "accused_on_hold", "evidence_preserved", "classified",
                 "parties_updated"):  # fmt: skip
        r = await api.post(f"/incidents/{iid}/events", json={"name": name},
                           headers=as_("tok-casey"))  # fmt: skip
        assert r.status_code == 200, r.text
    r = await api.post(f"/incidents/{iid}/events", json={"name": "no_such_event"},
                       headers=as_("tok-casey"))  # fmt: skip
    assert r.status_code == 409 and "not declared" in r.json()["message"]
    await wait_for_status(handle(h.client, iid), lambda s: s.pending_approvals)
    decision = {"step": "retailer-notice-approval", "decision": "approve", "reason": "ok"}
    r = await api.post(f"/incidents/{iid}/decisions", json=decision | {"role": "legal"},
                       headers=as_("tok-casey"))  # fmt: skip
    assert r.status_code == 403 and r.json()["needed_roles"] == ["legal"]  # casey is not Legal
    r = await api.post(f"/incidents/{iid}/decisions", json=decision | {"role": "legal"},
                       headers=as_("tok-lena"))  # fmt: skip
    assert (r.status_code, r.json()["outcome"]) == (200, "approved")
    r = await api.get(f"/incidents/{iid}/timeline", headers=as_("tok-aud"))
    approved = next(e for e in r.json() if e["kind"] == "approved")
    assert (approved["actor"], approved["role"]) == ("lena", "legal")
    r = await api.post(f"/incidents/{iid}/actions/close", json={"reason": "x"},
                       headers=as_("tok-aud"))  # fmt: skip
    assert r.status_code == 403  # auditors read, never act
    r = await api.post(f"/incidents/{iid}/actions/close", json={"reason": "done"},
                       headers=as_("tok-casey"))  # fmt: skip
    assert r.status_code == 200
    await h.closed(handle(h.client, iid))
    r = await api.post(f"/incidents/{iid}/actions/close", json={"reason": "again"},
                       headers=as_("tok-casey"))  # fmt: skip
    assert r.status_code in (409, 404) and r.json()["error"] in ("incident_closed", "not_found")


async def test_a_restricted_incident_is_invisible_to_outsiders(api, h):
    iid = f"API-CS-{uuid.uuid4().hex[:6]}"
    body = {"playbook": "child-safety", "summary": "report", "id": iid,
            "fields": {"jurisdiction": "us"}}  # fmt: skip
    r = await api.post("/incidents", json=body, headers=as_("tok-casey"))
    assert r.status_code == 403  # casey is not in the child-safety group
    r = await api.post("/incidents", json=body, headers=as_("tok-kim"))
    if r.status_code == 422:  # the playbook's required fields, named by the door
        pytest.fail(r.text)
    assert r.status_code == 201, r.text
    h.handles.append(handle(h.client, iid))
    assert (await api.get(f"/incidents/{iid}", headers=as_("tok-casey"))).status_code == 404
    assert (await api.get(f"/incidents/{iid}", headers=as_("tok-aud"))).status_code == 404
    assert (await api.get(f"/incidents/{iid}", headers=as_("tok-kim"))).status_code == 200
    # An unknown incident answers exactly as a hidden one does.
    hidden = await api.get(f"/incidents/{iid}/timeline", headers=as_("tok-casey"))
    unknown = await api.get("/incidents/NO-SUCH-1/timeline", headers=as_("tok-casey"))
    assert (hidden.status_code, unknown.status_code) == (404, 404)
    assert hidden.json()["message"].replace(iid, "X") == unknown.json()["message"].replace(
        "NO-SUCH-1", "X"
    )
    # Reopening is refused to an outsider before anything else (it does not exist for them).
    reopen = await api.post(f"/incidents/{iid}/reopen", json={"reason": "peek"},
                            headers=as_("tok-casey"))  # fmt: skip
    assert reopen.status_code == 404, reopen.text


async def test_an_event_a_playbook_reserves_to_a_role_is_refused_to_others(api, h):
    """emergency-disclosure's data_produced is LERS's to send: a commander's is refused and
    recorded (403, naming who may), LERS's is recorded; the role is chosen for the sender."""
    iid = f"API-EV-{uuid.uuid4().hex[:6]}"
    body = {"playbook": "emergency-disclosure", "summary": "threat", "id": iid,
            "fields": {"requester_agency": "PD", "requester_email": "a@pd.gov",
                       "account_id": "acct-1"}}  # fmt: skip
    assert (await api.post("/incidents", json=body, headers=as_("tok-casey"))).status_code == 201
    h.handles.append(handle(h.client, iid))
    event = {"name": "data_produced"}
    r = await api.post(f"/incidents/{iid}/events", json=event, headers=as_("tok-casey"))
    assert (r.status_code, r.json()["error"]) == (403, "role_not_allowed"), r.text
    assert "data_produced is sent by lers only, not ic" in r.json()["message"]
    r = await api.post(f"/incidents/{iid}/events", json=event | {"role": "comms"},
                       headers=as_("tok-lee"))  # fmt: skip
    assert r.status_code == 403 and "not comms" in r.json()["message"]
    r = await api.post(f"/incidents/{iid}/events", json=event, headers=as_("tok-lee"))
    assert r.status_code == 200, r.text
    assert (r.json()["kind"], r.json()["actor"]) == ("event", "lee")
    timeline = (await api.get(f"/incidents/{iid}/timeline", headers=as_("tok-casey"))).json()
    refused = [e for e in timeline if e["kind"] == "message_refused"]
    assert [(e["actor"], e["role"], e["data"]["code"]) for e in refused] == [
        ("casey", "ic", "role_not_allowed"),
        ("lee", "comms", "role_not_allowed"),
    ]


async def test_purge_is_privacy_or_legal_and_refused_while_the_incident_runs(api, h):
    iid = f"API-P-{uuid.uuid4().hex[:6]}"
    body = {"playbook": "physical-safety", "summary": "assault", "fields": PHYSICAL, "id": iid}
    assert (await api.post("/incidents", json=body, headers=as_("tok-casey"))).status_code == 201
    h.handles.append(handle(h.client, iid))
    why = {"reason": "retention ended"}
    r = await api.post(f"/incidents/{iid}/purge", json=why, headers=as_("tok-casey"))
    assert r.status_code == 403 and "legal, privacy" in r.json()["message"]
    r = await api.post(f"/incidents/{iid}/purge", json=why, headers=as_("tok-pia"))
    assert (r.status_code, r.json()["error"]) == (409, "purge_refused"), r.text
    # (this harness keeps no records; tests/test_purge.py refuses a running one with them)
    assert (await api.get(f"/incidents/{iid}", headers=as_("tok-pia"))).status_code == 200
    r = await api.post("/incidents/NO-SUCH-2/purge", json=why, headers=as_("tok-pia"))
    assert r.status_code == 404
    r = await api.post(f"/incidents/{iid}/purge", json={"reason": ""}, headers=as_("tok-pia"))
    assert r.status_code == 422 and r.json()["field"] == "reason"


CMD = {"ic", "cr", "cr_lead", "mgr", "admin"}
SPEC = {"lers", "legal", "privacy", "sec", "comms", "child_safety", "data", "food_safety",
        "catalog_ops", "retail_mgr"}  # fmt: skip


def test_the_role_matrix_row_by_row():
    """Every row written out: a change to who may do what is a change to this test too."""
    expected = {
        "open": CMD | {"intake"}, "ack": CMD, "assign": CMD, "escalate": CMD,
        "note": CMD | SPEC, "close": CMD, "reopen": CMD, "retry": CMD, "skip": CMD | {"legal"},
        "event": CMD | SPEC | {"intake"}, "read": CMD | SPEC | {"auditor"},
        "list": CMD | SPEC | {"auditor"}, "export": {"auditor", "legal", "admin"},
        "report": {"mgr", "auditor", "admin"}, "oncall": CMD | SPEC | {"auditor"},
        "roster_admin": {"admin"}, "purge": {"admin", "privacy", "legal"},
        "suggest": CMD | SPEC | {"intake"}, "triage": CMD,
    }  # fmt: skip
    assert {action: set(roles) for action, roles in ACTIONS.items()} == expected
    assert "auditor" not in ACTIONS["close"] | ACTIONS["event"] | ACTIONS["open"]


def test_every_role_a_playbook_names_may_read_and_work_its_incidents():
    """A step's owner or approver who could not read the incident could not do the step."""
    from playbooks.loader import scan_playbooks
    from playbooks.schema import ApprovalStep
    from settings import get_settings

    named: set[str] = set()
    for loaded in scan_playbooks(get_settings().playbooks_dir)[0]:
        for step in loaded.playbook.iter_steps():
            named |= {step.owner} if step.owner else set()
            named |= set(step.roles) if isinstance(step, ApprovalStep) else set()
            for event in loaded.playbook.events.values():
                named |= set(event.roles)
    named -= {"system"}  # the engine itself, not a person
    assert named <= set(ACTIONS["read"]) & set(ACTIONS["note"]) & set(ACTIONS["event"]), (
        named - set(ACTIONS["read"])
    )


async def test_a_forged_decision_sent_straight_to_temporal_is_refused_and_recorded(api, h):
    """An incident opened through the API trusts only the API's keys: an approval sent with a
    raw Temporal client (no signature, or someone else's) changes nothing and is recorded."""
    from temporalio.client import WorkflowUpdateFailedError

    from workflows.incident import IncidentWorkflow
    from workflows.models import ApprovalRequest
    from workflows.names import SIGNAL_APPROVE

    iid = f"API-F-{uuid.uuid4().hex[:6]}"
    body = {"playbook": "physical-safety", "summary": "assault", "fields": PHYSICAL, "id": iid}
    assert (await api.post("/incidents", json=body, headers=as_("tok-casey"))).status_code == 201
    target = handle(h.client, iid)
    h.handles.append(target)
    for name in ("safety_call_made", "accused_on_hold", "evidence_preserved", "classified",
                 "parties_updated"):  # fmt: skip
        r = await api.post(f"/incidents/{iid}/events", json={"name": name},
                           headers=as_("tok-casey"))  # fmt: skip
        assert r.status_code == 200, r.text
    await wait_for_status(target, lambda s: s.pending_approvals)
    forged = ApprovalRequest(step_id="retailer-notice-approval", actor="mallory", role="legal",
                             reason="trust me")  # fmt: skip
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await target.execute_update(IncidentWorkflow.approve, forged)
    assert refused.value.cause.type == "unsigned"  # type: ignore[union-attr]
    await target.signal(SIGNAL_APPROVE, forged)
    status = await wait_for_status(target, lambda s: s.pending_approvals)
    assert status.pending_approvals[0].decisions == []  # nothing changed
    timeline = (await api.get(f"/incidents/{iid}/timeline", headers=as_("tok-aud"))).json()
    refusals = [e for e in timeline if e["kind"] == "message_refused"]
    assert len(refusals) >= 2 and all(e["data"]["code"] == "unsigned" for e in refusals)
    r = await api.post(f"/incidents/{iid}/actions/close", json={"reason": "done"},
                       headers=as_("tok-casey"))  # fmt: skip
    assert r.status_code == 200, r.text
    await h.closed(target)


async def test_an_action_learns_its_incident_from_describe_not_a_query(api, h, tmp_path):
    """Before acting, the API reads whose playbook and which keys from the incident's search
    attributes and memo: a query would be a task of its worker, which forgets the run after
    it, so the action would replay the whole history. Shown on a queue no worker polls, where a
    query could never be answered; an incident started without the memo is asked its status."""
    import asyncio

    from incidents.actions import Target, status, target
    from incidents.service import build_input, start_incident
    from tests.engine_support import incident_input, playbook

    iid = f"API-T-{uuid.uuid4().hex[:6]}"
    body = {"playbook": "physical-safety", "summary": "assault", "fields": PHYSICAL, "id": iid}
    assert (await api.post("/incidents", json=body, headers=as_("tok-casey"))).status_code == 201
    h.handles.append(handle(h.client, iid))
    found = await target(h.client, iid)
    known = await status(h.client, iid)
    assert found == Target(iid, "physical-safety", known.trusted_key_ids)
    assert found.trusted_key_ids  # opened through the API: it trusts the API's keys

    idle = f"API-I-{uuid.uuid4().hex[:6]}"
    inp = build_input(playbook="physical-safety", severity=None, summary="nobody works it",
                      fields=PHYSICAL, incident_id=idle, opened_by="casey",
                      settings=Settings(data_dir=tmp_path))  # fmt: skip
    await start_incident(h.client, inp, f"no-worker-{uuid.uuid4().hex[:6]}")
    try:
        assert await asyncio.wait_for(target(h.client, idle), 10) == Target(
            idle, "physical-safety", []
        )
    finally:
        await handle(h.client, idle).terminate("test done")

    without_memo = incident_input(playbook([{"id": "w", "kind": "wait_for", "event": "x"}]))
    bare = await h.open(without_memo)
    fallback = await target(h.client, without_memo.incident_id)
    assert not isinstance(fallback, Target) and fallback.playbook == "test-playbook"
    await h.close(bare)
