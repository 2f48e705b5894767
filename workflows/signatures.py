"""Signed actions: the bytes the API signs and the check the workflow runs on every message.

The HTTP API signs each action it forwards to an incident (Ed25519, ``identity/keys.py``); an
incident whose input carries trusted public keys verifies every Update and signal here before it
acts, so a message sent straight to Temporal changes nothing. Pure and deterministic (no clock, no
file, no network: the time to compare against is ``workflow.now()``, passed in), so it runs inside
workflow code, imported through ``workflow.unsafe.imports_passed_through()``.

What is signed (``signing_input``): a fixed prefix line, then canonical JSON (keys sorted, no
spaces, ASCII only) of the action's identity (incident, action, step, actor, role), the SHA-256 of
the message's own canonical JSON without its signature (``payload_digest``), and the signature's
``issued_at`` (UTC, microseconds), ``nonce`` and ``key_id``. The workflow derives the same fields
from the message it received (``fields_of``), so a signature made for another message, incident,
step, person or role does not verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import BaseModel

from workflows.models import Signature
from workflows.names import SIGNAL_APPROVE, SIGNAL_EVENT, SIGNAL_REJECT

SIGNING_PREFIX = b"critical-response/signed-action/v1\n"
FRESHNESS = timedelta(minutes=10)  # a signature is accepted this long either side of now
KEY_ID_PATTERN = r"^[0-9a-f]{16}$"
NONCE_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"

# The action a message stands for: the Update's name, or for a signal its verb.
SIGNAL_ACTIONS = {SIGNAL_APPROVE: "approve", SIGNAL_REJECT: "reject", SIGNAL_EVENT: "event"}

# Refusal codes (``ApplicationError.type`` of a refused Update, ``data.code`` in the timeline).
UNSIGNED, BAD_SIGNATURE, REPLAYED, ROLE_NOT_HELD = (
    "unsigned",
    "bad_signature",
    "replayed",
    "role_not_held",
)


@dataclass(frozen=True)
class SignedFields:
    """What a signature vouches for, besides its own issued_at, nonce and key id."""

    incident_id: str
    action: str  # approve, reject, acknowledge, assign, escalate, note, close, retry_step, ...
    step_id: str  # "" when the action names no step
    actor: str
    role: str  # "" when the message carries no role (an event)
    payload_digest: str  # hex SHA-256 of the message's canonical JSON without its signature


def canonical_json(value: Any) -> bytes:
    """Keys sorted, no spaces, ASCII only: the same bytes on every machine."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def payload_digest(message: BaseModel) -> str:
    """SHA-256 (hex) of the message's fields other than ``signature`` (those left at their
    defaults omitted, so a field added later with a default keeps older signatures valid)."""
    body = message.model_dump(mode="json", exclude={"signature"}, exclude_defaults=True)
    return hashlib.sha256(canonical_json(body)).hexdigest()


def fields_of(incident_id: str, action: str, message: BaseModel) -> SignedFields:
    """The fields a signature on ``message`` must cover; the API and the workflow both call it."""
    step = getattr(message, "step_id", None) or ""
    role = getattr(message, "role", None) or ""
    return SignedFields(
        incident_id=incident_id,
        action=action,
        step_id=str(step),
        actor=str(getattr(message, "actor", "")),
        role=str(role),
        payload_digest=payload_digest(message),
    )


def format_time(at: datetime) -> str:
    """``issued_at`` in the signed bytes: UTC, microseconds, ``Z`` (a naive time is refused)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("issued_at has no time zone")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def signing_input(fields: SignedFields, *, issued_at: datetime, nonce: str, key_id: str) -> bytes:
    """The exact bytes an Ed25519 signature covers."""
    body = {
        "incident_id": fields.incident_id,
        "action": fields.action,
        "step_id": fields.step_id,
        "actor": fields.actor,
        "role": fields.role,
        "payload_sha256": fields.payload_digest,
        "issued_at": format_time(issued_at),
        "nonce": nonce,
        "key_id": key_id,
    }
    return SIGNING_PREFIX + canonical_json(body)


def key_id_for(public_key_raw: bytes) -> str:
    """A key's id: the first 16 hex digits of SHA-256 of its raw 32-byte public key."""
    return hashlib.sha256(public_key_raw).hexdigest()[:16]


def _b64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _warm_up() -> None:
    """Refuse one bad signature at import, outside the workflow sandbox: ``cryptography`` sets up
    what it needs to raise ``InvalidSignature`` lazily, on the first refusal, and when that first
    refusal happens inside the sandbox the worker process aborts (seen with cryptography 50,
    temporalio 1.35.0; tests/test_engine_signed.py covers it)."""
    key = Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()
    try:
        key.verify(bytes(64), SIGNING_PREFIX)
    except InvalidSignature:
        return
    raise AssertionError("an all-zero Ed25519 signature verified")


_warm_up()


def verify(
    signature: Signature | None,
    fields: SignedFields,
    trusted_keys: dict[str, str],
    now: datetime,
    freshness: timedelta = FRESHNESS,
) -> str | None:
    """None when ``signature`` is a valid, fresh signature of ``fields`` by a trusted key; else a
    one-line reason (unsigned, malformed, unknown key id, issued too far from now, bad signature).

    ``trusted_keys``: key id -> base64 of the raw 32-byte Ed25519 public key."""
    if signature is None:
        return "unsigned: this incident accepts only messages signed by the API"
    if not re.fullmatch(KEY_ID_PATTERN, signature.key_id):
        return "malformed signature: key_id is not 16 hex digits"
    if not re.fullmatch(NONCE_PATTERN, signature.nonce):
        return "malformed signature: nonce is not 16-64 characters of [A-Za-z0-9_-]"
    public = trusted_keys.get(signature.key_id)
    if public is None:
        return f"unknown key id {signature.key_id}: not a key this incident trusts"
    try:
        value = _b64(signature.value)
        raw_key = _b64(public)
        data = signing_input(
            fields, issued_at=signature.issued_at, nonce=signature.nonce, key_id=signature.key_id
        )
    except (binascii.Error, ValueError, UnicodeEncodeError) as err:
        return f"malformed signature: {' '.join(str(err).split())[:120]}"
    if len(value) != 64:
        return f"malformed signature: {len(value)} bytes, an Ed25519 signature has 64"
    if len(raw_key) != 32:
        return f"trusted key {signature.key_id} is not a raw 32-byte Ed25519 public key"
    skew = signature.issued_at - now
    if abs(skew) > freshness:
        minutes = int(freshness.total_seconds() // 60)
        when = "before" if skew < timedelta(0) else "after"
        return f"stale signature: issued {abs(skew)} {when} now (at most {minutes} min either side)"
    try:
        Ed25519PublicKey.from_public_bytes(raw_key).verify(value, data)
    except InvalidSignature:
        return "bad signature: it does not match this message, incident, step, actor or role"
    return None


def refusal(
    signature: Signature | None,
    fields: SignedFields,
    trusted_keys: dict[str, str],
    now: datetime,
    used_nonces: dict[str, datetime],
) -> tuple[str, str] | None:
    """(code, reason) when the message must be refused, else None: ``verify`` plus the replay
    check (``used_nonces``: nonces already accepted in this incident)."""
    if (reason := verify(signature, fields, trusted_keys, now)) is not None:
        return (UNSIGNED if signature is None else BAD_SIGNATURE), reason
    assert signature is not None
    if signature.nonce in used_nonces:
        return REPLAYED, f"replayed: nonce {signature.nonce[:24]} was already used in this incident"
    return None


def role_not_held(actor: str, role: str | None, roster: dict[str, list[str]]) -> str | None:
    """A reason when ``roster`` (person -> roles held at open) is given and ``actor`` did not
    hold ``role``; None otherwise (no roster, or a message carrying no role)."""
    if not roster or not role:
        return None
    held = {p.lower(): {r.lower() for r in roles} for p, roles in roster.items()}
    roles = held.get(actor.lower())
    if roles is None:
        return f"{actor} is not on this incident's roster"
    if role.lower() not in roles:
        holds = ", ".join(sorted(roles)) or "none"
        return f"{actor} does not hold the role {role!r} (holds: {holds})"
    return None


def prune_nonces(
    used: dict[str, datetime], now: datetime, freshness: timedelta = FRESHNESS
) -> None:
    """Forget nonces issued more than ``freshness`` before now: a replay of one is stale anyway,
    so what continue-as-new carries stays small."""
    for nonce in [n for n, at in used.items() if at < now - freshness]:
        del used[nonce]
