"""Signed actions (issue 9): the API's keys (identity/keys.py) and the workflow's pure check
(workflows/signatures.py), without a Temporal server."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import pytest

from identity.keys import KeyRingError, load_or_create
from workflows import signatures as signed
from workflows.models import ApprovalRequest, CommanderRequest, ExternalEvent

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def request(**extra) -> ApprovalRequest:
    values = dict(step_id="legal-review", actor="lena", role="legal", reason="ok")
    return ApprovalRequest(**{**values, **extra})


def signed_request(ring, req=None, action="approve", incident="SEC-01", **sign_extra):
    req = req or request()
    fields = signed.fields_of(incident, action, req)
    sig = ring.sign(fields, issued_at=sign_extra.pop("issued_at", NOW), **sign_extra)
    return req.model_copy(update={"signature": sig})


def check(req, ring_keys, action="approve", incident="SEC-01", now=NOW):
    fields = signed.fields_of(incident, action, req)
    return signed.verify(req.signature, fields, ring_keys, now)


@pytest.fixture
def ring(tmp_path):
    return load_or_create(tmp_path)


def test_the_key_file_is_created_once_private_and_reloaded(tmp_path):
    ring = load_or_create(tmp_path)
    path = tmp_path / "signing-keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create(tmp_path).public_keys() == ring.public_keys()
    ((key_id, public),) = ring.public_keys().items()
    assert len(key_id) == 16 and int(key_id, 16) >= 0
    assert len(public) == 44  # base64 of 32 raw bytes


def test_a_signed_message_verifies_and_survives_the_wire(ring):
    req = signed_request(ring)
    assert check(req, ring.public_keys()) is None
    wire = ApprovalRequest.model_validate_json(req.model_dump_json())
    assert check(wire, ring.public_keys()) is None


def test_signing_input_is_canonical():
    fields = signed.SignedFields("SEC-01", "approve", "s1", "lena", "legal", "ab" * 32)
    data = signed.signing_input(
        fields, issued_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), nonce="n" * 16, key_id="0" * 16
    )
    assert data == (
        b"critical-response/signed-action/v1\n"
        b'{"action":"approve","actor":"lena","incident_id":"SEC-01","issued_at":'
        b'"2026-01-02T03:04:05.000000Z","key_id":"0000000000000000","nonce":"nnnnnnnnnnnnnnnn",'
        b'"payload_sha256":"' + b"ab" * 32 + b'","role":"legal","step_id":"s1"}'
    )


@pytest.mark.parametrize(
    "change",
    [
        {"actor": "mallory"},
        {"role": "privacy"},
        {"step_id": "other-step"},
        {"reason": "changed my mind"},
        {"request_id": "r-2"},
    ],
)
def test_a_tampered_field_is_a_bad_signature(ring, change):
    req = signed_request(ring)
    tampered = req.model_copy(update=change)
    assert check(tampered, ring.public_keys()).startswith("bad signature")


def test_another_incident_or_action_is_a_bad_signature(ring):
    req = signed_request(ring)
    assert check(req, ring.public_keys(), incident="SEC-02").startswith("bad signature")
    assert check(req, ring.public_keys(), action="reject").startswith("bad signature")


def test_unsigned_unknown_key_and_malformed(ring, tmp_path):
    assert check(request(), ring.public_keys()).startswith("unsigned")
    other = load_or_create(tmp_path / "other")
    assert check(signed_request(other), ring.public_keys()).startswith("unknown key id")
    req = signed_request(ring)
    for bad in ({"value": "not base64!"}, {"value": "AAAA"}, {"key_id": "XYZ"}, {"nonce": "a"}):
        broken = req.model_copy(update={"signature": req.signature.model_copy(update=bad)})
        assert check(broken, ring.public_keys()).startswith("malformed"), bad


def test_a_signature_too_far_from_now_is_stale(ring):
    req = signed_request(ring)
    assert check(req, ring.public_keys(), now=NOW + timedelta(minutes=9)) is None
    assert check(req, ring.public_keys(), now=NOW + timedelta(minutes=11)).startswith("stale")
    assert check(req, ring.public_keys(), now=NOW - timedelta(minutes=11)).startswith("stale")


def test_rotation_old_signatures_verify_while_their_key_is_trusted(ring, tmp_path):
    old_keys = ring.public_keys()
    before = signed_request(ring)
    new_id = ring.rotate()
    assert load_or_create(tmp_path).public_keys().keys() == {*old_keys, new_id}
    after = signed_request(ring)
    assert after.signature.key_id == new_id
    assert check(before, ring.public_keys()) is None
    assert check(after, ring.public_keys()) is None
    # An incident opened before the rotation trusts only the old key: sign with it.
    for_old = signed_request(ring, trusted=old_keys)
    assert for_old.signature.key_id in old_keys
    assert check(for_old, old_keys) is None
    assert check(after, old_keys).startswith("unknown key id")
    (old_id,) = old_keys
    ring.retire(old_id)
    assert check(before, ring.public_keys()).startswith("unknown key id")
    with pytest.raises(KeyRingError):
        ring.sign(signed.fields_of("SEC-01", "approve", request()), trusted=old_keys)
    with pytest.raises(KeyRingError):
        ring.retire(new_id)


def test_replay_and_nonce_pruning(ring):
    req = signed_request(ring)
    fields = signed.fields_of("SEC-01", "approve", req)
    used: dict[str, datetime] = {}
    assert signed.refusal(req.signature, fields, ring.public_keys(), NOW, used) is None
    used[req.signature.nonce] = req.signature.issued_at
    code, _ = signed.refusal(req.signature, fields, ring.public_keys(), NOW, used)
    assert code == signed.REPLAYED
    signed.prune_nonces(used, NOW + timedelta(minutes=5))
    assert used
    signed.prune_nonces(used, NOW + timedelta(minutes=11))
    assert not used
    code, _ = signed.refusal(None, fields, ring.public_keys(), NOW, {})
    assert code == signed.UNSIGNED


def test_every_message_kind_signs_its_own_fields(ring):
    for action, msg in [
        ("note", CommanderRequest(actor="alice", reason="hello")),
        ("event", ExternalEvent(name="reply", actor="intake", data={"a": "b"})),
    ]:
        fields = signed.fields_of("SEC-01", action, msg)
        sig = ring.sign(fields, issued_at=NOW)
        assert signed.verify(sig, fields, ring.public_keys(), NOW) is None
        changed = msg.model_copy(update={"actor": "mallory"})
        other = signed.fields_of("SEC-01", action, changed)
        assert signed.verify(sig, other, ring.public_keys(), NOW).startswith("bad signature")


def test_role_held_per_roster():
    roster = {"Lena": ["legal"], "alice": ["ic"]}
    assert signed.role_not_held("lena", "Legal", roster) is None
    assert "does not hold" in signed.role_not_held("alice", "legal", roster)
    assert "not on this incident's roster" in signed.role_not_held("mallory", "legal", roster)
    assert signed.role_not_held("mallory", "legal", {}) is None
    assert signed.role_not_held("intake", None, roster) is None
