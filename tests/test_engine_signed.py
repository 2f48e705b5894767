"""Decisions the workflow can verify (issue 9) on the real dev server: an incident opened with
trusted keys and a roster acts only on messages the API signed, by a person holding the role.

Anything else (unsigned, signed by a key it does not trust, replayed, or by someone acting in a
role they did not hold), whether an Update or a signal sent through a raw Temporal client, is
refused, recorded as ``message_refused`` with its code, and changes nothing. An incident opened
without trusted keys behaves as it always did.
"""

from __future__ import annotations

from typing import Any

import pytest

from identity.keys import KeyRing, load_or_create
from tests.engine_support import (
    approval,
    awaiting,
    commander,
    entries,
    has,
    incident_input,
    playbook,
    refusal,
    wait_for_status,
    wait_for_timeline,
)
from workflows import signatures as signed
from workflows.incident import IncidentWorkflow
from workflows.models import ExternalEvent
from workflows.names import SIGNAL_APPROVE, SIGNAL_EVENT

STEPS = [
    {"id": "disclose", "kind": "approval", "roles": ["legal"]},
    {"id": "reply", "kind": "wait_for", "event": "reply"},
]
ROSTER = {"alice": ["ic"], "lena": ["legal"], "mallory": ["ic"]}


@pytest.fixture
def ring(tmp_path) -> KeyRing:
    return load_or_create(tmp_path / "api")


def sign(ring: KeyRing, incident_id: str, action: str, message: Any) -> Any:
    signature = ring.sign(signed.fields_of(incident_id, action, message))
    return message.model_copy(update={"signature": signature})


async def open_signed(h, ring: KeyRing):
    inp = incident_input(playbook(STEPS), trusted_keys=ring.public_keys(), roster=ROSTER)
    handle = await h.open(inp)
    await wait_for_status(handle, awaiting("disclose"))
    return inp.incident_id, handle


def refused(code: str, count: int = 1):
    return lambda tl: (
        len([e for e in tl if e.kind == "message_refused" and e.data.get("code") == code]) >= count
    )


async def pending_decisions(handle) -> list[Any]:
    status = await handle.query(IncidentWorkflow.status)
    return [(a.step_id, len(a.decisions), a.outcome) for a in status.pending_approvals]


async def test_a_signed_approval_by_a_role_holder_is_accepted(h, ring):
    incident, handle = await open_signed(h, ring)
    request = sign(ring, incident, "approve", approval("disclose", "lena", "legal"))
    result = await handle.execute_update(IncidentWorkflow.approve, request)
    assert result.outcome == "approved"
    tl = await wait_for_timeline(handle, has("step_started", "reply"))
    assert entries(tl, "approved", "disclose")[0].actor == "lena"
    assert not entries(tl, "message_refused")
    # A signed event and a signed commander note are accepted too.
    note = sign(ring, incident, "note", commander("alice", reason="on it"))
    await handle.execute_update(IncidentWorkflow.note, note)
    event = sign(ring, incident, "event", ExternalEvent(name="reply", actor="intake"))
    await handle.signal(SIGNAL_EVENT, event)
    tl = await wait_for_timeline(handle, has("event"))
    assert entries(tl, "note")[0].actor == "alice"
    assert not entries(tl, "message_refused")


async def test_unsigned_update_and_signal_are_refused_and_recorded(h, ring):
    incident, handle = await open_signed(h, ring)
    before = await pending_decisions(handle)
    update = handle.execute_update(IncidentWorkflow.approve, approval("disclose", "lena", "legal"))
    assert await refusal(update) == "unsigned"
    await handle.signal(SIGNAL_APPROVE, approval("disclose", "lena", "legal"))
    await handle.signal(SIGNAL_EVENT, ExternalEvent(name="reply", actor="mallory"))
    assert await refusal(handle.execute_update(IncidentWorkflow.note, commander(reason="x"))) == (
        "unsigned"
    )
    tl = await wait_for_timeline(handle, refused("unsigned", 4))
    messages = [e.data["message"] for e in entries(tl, "message_refused")]
    assert messages == ["approve", SIGNAL_APPROVE, SIGNAL_EVENT, "note"]
    first = entries(tl, "message_refused")[0]
    assert (first.actor, first.step, first.data["claimed_actor"]) == ("system", "disclose", "lena")
    assert await pending_decisions(handle) == before
    assert not entries(tl, "event") and not entries(tl, "note")


async def test_a_replayed_signature_is_refused(h, ring):
    incident, handle = await open_signed(h, ring)
    note = sign(ring, incident, "note", commander("alice", reason="once"))
    await handle.execute_update(IncidentWorkflow.note, note)
    assert await refusal(handle.execute_update(IncidentWorkflow.note, note)) == "replayed"
    # The same signature on the signal path, and a signed signal sent twice.
    request = sign(ring, incident, "approve", approval("disclose", "lena", "legal"))
    await handle.signal(SIGNAL_APPROVE, request)
    await handle.signal(SIGNAL_APPROVE, request)
    tl = await wait_for_timeline(handle, refused("replayed", 2))
    assert len(entries(tl, "note")) == 1
    assert len(entries(tl, "approved", "disclose")) == 1


async def test_a_signature_by_an_untrusted_key_or_for_another_message_is_refused(h, ring, tmp_path):
    incident, handle = await open_signed(h, ring)
    before = await pending_decisions(handle)
    forger = load_or_create(tmp_path / "forger")
    forged = sign(forger, incident, "approve", approval("disclose", "lena", "legal"))
    assert await refusal(handle.execute_update(IncidentWorkflow.approve, forged)) == "bad_signature"
    # A real signature lifted onto another person, or onto another incident's message.
    lifted = sign(ring, incident, "approve", approval("disclose", "alice", "legal"))
    lifted = lifted.model_copy(update={"actor": "lena"})
    assert await refusal(handle.execute_update(IncidentWorkflow.approve, lifted)) == "bad_signature"
    elsewhere = sign(ring, "OTHER-1", "approve", approval("disclose", "lena", "legal"))
    await handle.signal(SIGNAL_APPROVE, elsewhere)
    tl = await wait_for_timeline(handle, refused("bad_signature", 3))
    reasons = [e.detail for e in entries(tl, "message_refused")]
    assert "unknown key id" in reasons[0] and "bad signature" in reasons[1]
    assert await pending_decisions(handle) == before


async def test_a_person_acting_in_a_role_they_do_not_hold_is_refused(h, ring):
    incident, handle = await open_signed(h, ring)
    before = await pending_decisions(handle)
    as_legal = sign(ring, incident, "approve", approval("disclose", "mallory", "legal"))
    assert await refusal(handle.execute_update(IncidentWorkflow.approve, as_legal)) == (
        "role_not_held"
    )
    stranger = sign(ring, incident, "approve", approval("disclose", "eve", "legal"))
    await handle.signal(SIGNAL_APPROVE, stranger)
    tl = await wait_for_timeline(handle, refused("role_not_held", 2))
    first, second = entries(tl, "message_refused")
    assert (first.actor, first.role) == ("mallory", "legal")
    assert "does not hold the role 'legal'" in first.detail
    assert "not on this incident's roster" in second.detail
    assert await pending_decisions(handle) == before


async def test_without_trusted_keys_unsigned_messages_act_as_before(h):
    handle = await h.open(incident_input(playbook(STEPS)))
    await wait_for_status(handle, awaiting("disclose"))
    await handle.signal(SIGNAL_APPROVE, approval("disclose", "lena", "legal"))
    await wait_for_timeline(handle, has("step_started", "reply"))
    await handle.execute_update(IncidentWorkflow.note, commander(reason="unsigned is fine"))
    await handle.signal(SIGNAL_EVENT, ExternalEvent(name="reply"))
    tl = await wait_for_timeline(handle, has("event"))
    assert not entries(tl, "message_refused")
    assert entries(tl, "approved", "disclose")[0].actor == "lena"
