"""Payload encryption (issue 10): the codec seals every payload with AES-256-GCM under the data
key of its workflow, master keys rotate, one incident's key can be destroyed without touching
another's, plaintext from before passes through, tampering is caught, failure messages are sealed
too, and an incident opened with personal data leaves none of it in Temporal's history.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    WorkflowSerializationContext,
)
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from connection import DATA_CONVERTER, data_converter, decode_payloads, failure_message
from encryption import master
from encryption.codec import EncryptionCodec, Keys, PayloadCryptoError, is_sealed
from encryption.keystore import DataKeyDestroyed, DataKeyRow, KeyStore
from settings import Settings
from tests.codec_workflows import FAILING_ACTIVITY, FailingStepWorkflow
from tests.engine_support import has, incident_input, playbook, wait_for_timeline
from tests.records_db import BACKENDS, fresh_database
from workflows.incident import IncidentWorkflow
from workflows.models import IncidentInput
from workflows.names import workflow_id_for

CANARY = "+15550104242"  # a phone number that must never be readable in Temporal's storage


@pytest.fixture
def keystore_url(request, tmp_path) -> Iterator[str]:
    """An empty keystore database: SQLite, or PostgreSQL for the tests marked ``both``."""
    with fresh_database(request, tmp_path, "keystore") as url:
        yield url


both = pytest.mark.parametrize("keystore_url", BACKENDS, indirect=True)


def keys_in(tmp_path: Path, url: str, ring: master.MasterKeys | None = None, **kw) -> Keys:
    ring = ring or master.load_or_create(tmp_path)
    return Keys.of(ring, KeyStore(ring, url, **kw))


def for_workflow(converter: DataConverter, workflow_id: str | None) -> DataConverter:
    if workflow_id is None:
        return converter
    return converter.with_context(WorkflowSerializationContext("default", workflow_id))


async def seal(converter: DataConverter, value: object, workflow_id: str | None = None) -> Payload:
    [payload] = await for_workflow(converter, workflow_id).encode([value])
    return payload


def meta(payload: Payload) -> dict[str, str]:
    return {k: v.decode() for k, v in payload.metadata.items()}


def label(payload: Payload) -> tuple[str, str, str]:
    """(format and flags, key id, data key) from a sealed payload's ``encryption`` entry."""
    flags, key_id, data_key = meta(payload)["encryption"].split(" ", 2)
    return flags, key_id, data_key


def relabelled(payload: Payload, text: str) -> Payload:
    moved = Payload()
    moved.CopyFrom(payload)
    moved.metadata["encryption"] = text.encode()
    return moved


# --- the codec on its own -------------------------------------------------------------------


@both
async def test_a_payload_round_trips_sealed_under_its_workflows_data_key(tmp_path, keystore_url):
    dc = data_converter(keys=keys_in(tmp_path, keystore_url))
    payload = await seal(dc, {"phone": CANARY}, "incident-A")
    assert sorted(meta(payload)) == ["encoding", "encryption"]
    assert meta(payload)["encoding"] == "binary/encrypted"
    flags, key_id, data_key = label(payload)
    # Format 2; the plaintext is the JSON alone (its metadata was the usual json/plain).
    assert (flags, data_key) == ("2j", "workflow:incident-A") and key_id.startswith("dk-")
    assert CANARY.encode() not in payload.SerializeToString()
    assert await dc.decode([payload]) == [{"phone": CANARY}]  # no context needed to open
    # Activities of the workflow seal under the same key.
    context = ActivitySerializationContext("default", "1", "a", "q", "incident-A", "W", False)
    [by_activity] = await dc.with_context(context).encode(["x"])
    assert label(by_activity)[1] == key_id


@both
async def test_a_payload_of_no_workflow_is_sealed_under_the_newest_master_key(
    tmp_path, keystore_url
):
    ring = master.load_or_create(tmp_path)
    dc = data_converter(keys=keys_in(tmp_path, keystore_url, ring))
    payload = await seal(dc, CANARY)
    assert label(payload)[1:] == (ring.current.key_id, "global")
    assert await dc.decode([payload]) == [CANARY]


@both
async def test_rotation_old_payloads_open_and_new_ones_use_the_newest_key(tmp_path, keystore_url):
    ring = master.load_or_create(tmp_path)
    store = KeyStore(ring, keystore_url)
    dc = data_converter(keys=Keys.of(ring, store))
    first = ring.current.key_id
    old_global = await seal(dc, "before")
    old_incident = await seal(dc, "before", "incident-old")

    # Another process loaded the ring before the rotation; it learns the new key from the file.
    other_ring = master.load_or_create(tmp_path)
    other = data_converter(keys=keys_in(tmp_path, keystore_url, other_ring))
    newest = ring.rotate()
    assert newest != first and [k.key_id for k in ring.keys] == [first, newest]

    new_global = await seal(dc, "after")
    assert label(new_global)[1] == newest
    await seal(dc, "after", "incident-new")
    assert await dc.decode([old_global, old_incident, new_global]) == ["before"] * 2 + ["after"]
    assert await other.decode([new_global, old_global]) == ["after", "before"]

    # The new incident's data key is wrapped by the newest key; rewrap moves the old one too.
    def wrapping() -> dict[str, str]:
        with Session(store.engine()) as s:
            return {r.scope: r.master_key_id for r in s.exec(select(DataKeyRow)).all()}

    assert wrapping() == {"incident-old": first, "incident-new": newest}
    assert store.rewrap() == 1
    assert wrapping() == {"incident-old": newest, "incident-new": newest}
    fresh = data_converter(keys=keys_in(tmp_path, keystore_url, master.load_or_create(tmp_path)))
    assert await fresh.decode([old_incident]) == ["before"]


@both
async def test_each_incident_has_its_own_data_key(tmp_path, keystore_url):
    dc = data_converter(keys=keys_in(tmp_path, keystore_url))
    a = await seal(dc, CANARY, "incident-A")
    b = await seal(dc, CANARY, "incident-B")
    assert label(a)[1] != label(b)[1]
    assert a.data != b.data
    # A's ciphertext relabelled as B's does not open (the label is authenticated, the key differs).
    with pytest.raises(PayloadCryptoError, match="does not open"):
        await dc.decode([relabelled(a, meta(b)["encryption"])])


@both
async def test_a_destroyed_data_key_shreds_that_incident_and_no_other(tmp_path, keystore_url):
    keys = keys_in(tmp_path, keystore_url)
    dc = data_converter(keys=keys)
    a = await seal(dc, CANARY, "incident-A")
    b = await seal(dc, "bystander", "incident-B")
    other_process = data_converter(keys=keys_in(tmp_path, keystore_url, cache_seconds=0))
    assert await other_process.decode([a]) == [CANARY]

    _, store = keys.get()
    assert store.destroy("incident-A") is True
    assert store.destroy("incident-A") is False  # already a tombstone
    for converter in (dc, other_process):
        with pytest.raises(DataKeyDestroyed, match="incident-A was destroyed"):
            await converter.decode([a])
        assert await converter.decode([b]) == ["bystander"]
    with pytest.raises(DataKeyDestroyed):  # and it never gets a new key
        await seal(dc, "more", "incident-A")
    assert store.scopes("incident-") == ["incident-B"]
    assert store.scopes("incident-", destroyed=True) == ["incident-A"]


@both
async def test_plaintext_payloads_pass_through_unchanged(tmp_path, keystore_url):
    dc = data_converter(keys=keys_in(tmp_path, keystore_url))
    plain = await pydantic_data_converter.encode([{"summary": CANARY}, 7])
    assert not any(is_sealed(p) for p in plain)
    assert await dc.decode(plain) == [{"summary": CANARY}, 7]
    assert decode_payloads(plain) == plain


@both
async def test_tampered_ciphertext_fails_with_a_clear_error(tmp_path, keystore_url):
    dc = data_converter(keys=keys_in(tmp_path, keystore_url))
    for workflow_id in ("incident-A", None):
        payload = await seal(dc, CANARY, workflow_id)
        payload.data = payload.data[:-1] + bytes([payload.data[-1] ^ 1])
        with pytest.raises(PayloadCryptoError, match="altered") as caught:
            await dc.decode([payload])
        assert CANARY not in str(caught.value)
    truncated = await seal(dc, CANARY, "incident-A")
    truncated.data = truncated.data[:10]
    with pytest.raises(PayloadCryptoError, match="altered"):
        await dc.decode([truncated])


@both
async def test_a_large_payload_is_compressed_then_sealed_and_the_flag_is_bound(
    tmp_path, keystore_url
):
    """A playbook snapshot or an echoed timeline shrinks several times before sealing; a small
    payload is sealed as it is; the compression flag is part of what the seal authenticates, and
    a payload that would inflate past the bound is refused."""
    from encryption import codec

    dc = data_converter(keys=keys_in(tmp_path, keystore_url))
    timeline = [
        {"seq": n, "kind": "step_started", "detail": f"{CANARY} step {n}"} for n in range(40)
    ]
    big = await seal(dc, timeline, "incident-A")
    flags, key_id, data_key = label(big)
    assert flags == "2jz"
    assert len(big.data) < len(json.dumps(timeline)) / 3
    assert CANARY.encode() not in big.SerializeToString()
    assert await dc.decode([big]) == [timeline]
    small = await seal(dc, {"phone": CANARY}, "incident-A")
    assert label(small)[0] == "2j"
    assert await dc.decode([small]) == [{"phone": CANARY}]

    for altered in ("2j", "2z", "2"):  # a flag dropped: the seal no longer opens
        with pytest.raises(PayloadCryptoError, match="altered"):
            await dc.decode([relabelled(big, f"{altered} {key_id} {data_key}")])
    with pytest.raises(PayloadCryptoError, match="flags we do not know"):
        await dc.decode([relabelled(big, f"2jzb {key_id} {data_key}")])
    for unreadable in ("3j dk-1 workflow:incident-A", "2j dk-1", ""):
        with pytest.raises(PayloadCryptoError, match="label we cannot read"):
            await dc.decode([relabelled(big, unreadable)])

    ring, store = keys_in(tmp_path, keystore_url).get()
    key = store.data_key("incident-A")
    bomb = zlib.compress(b"\0" * (codec.MAX_PLAINTEXT + 1))
    bomb_label = f"2z {key.key_id} workflow:incident-A".encode()
    sealed_bomb = Payload(
        metadata={"encoding": codec.ENCODING, "encryption": bomb_label},
        data=master.seal(key.secret, bomb, codec.AAD_PREFIX + bomb_label),
    )
    with pytest.raises(PayloadCryptoError, match="more than"):
        await dc.decode([sealed_bomb])


@both
async def test_a_payload_that_is_not_plain_json_keeps_its_metadata_through_the_seal(
    tmp_path, keystore_url
):
    """Only a payload whose metadata is exactly ``encoding: json/plain`` is sealed as its data
    alone; any other (binary, a protobuf, extra metadata) keeps all of it."""
    dc = data_converter(keys=keys_in(tmp_path, keystore_url))
    codec = EncryptionCodec(keys_in(tmp_path, keystore_url), "incident-A")
    odd = [
        Payload(metadata={"encoding": b"binary/plain"}, data=CANARY.encode()),
        Payload(metadata={"encoding": b"json/plain", "messageType": b"x"}, data=b'"x"'),
        Payload(metadata={}, data=b""),
    ]
    sealed = await codec.encode(odd)
    assert [label(p)[0] for p in sealed] == ["2", "2", "2"]
    assert await codec.decode(sealed) == odd
    assert await dc.decode(await codec.encode([Payload(metadata={"encoding": b"json/plain"},
                                                        data=b"7")])) == [7]  # fmt: skip


@both
async def test_payloads_sealed_in_the_first_format_still_open(tmp_path, keystore_url):
    """Histories, archives and records sealed before the two-entry label (issue 11) name each
    field in an entry of its own; they open as they always did, and their labels still bind."""
    from encryption import codec

    keys = keys_in(tmp_path, keystore_url)
    dc = data_converter(keys=keys)
    ring, store = keys.get()
    key = store.data_key("incident-A")

    def first_format(value: bytes, data_key: str, key_id: str, secret: bytes,
                     compressed: bool = False) -> Payload:  # fmt: skip
        plaintext = Payload(metadata={"encoding": b"json/plain"}, data=value).SerializeToString()
        metadata = {"encoding": codec.ENCODING, "encryption-cipher": b"AES-256-GCM",
                    "encryption-data-key": data_key.encode(),
                    "encryption-key-id": key_id.encode()}  # fmt: skip
        compression = None
        if compressed:
            plaintext, compression = zlib.compress(plaintext), b"zlib"
            metadata["encryption-compression"] = b"zlib"
        aad = codec._aad(data_key, key_id, compression)
        return Payload(metadata=metadata, data=master.seal(secret, plaintext, aad))

    old = [
        first_format(b'{"phone": "%s"}' % CANARY.encode(), "workflow:incident-A", key.key_id,
                     key.secret),
        first_format(b'"big"', "workflow:incident-A", key.key_id, key.secret, compressed=True),
        first_format(b"7", "global", ring.current.key_id, ring.current.secret),
    ]  # fmt: skip
    assert await dc.decode(old) == [{"phone": CANARY}, "big", 7]
    assert codec.data_key_of(old[0]) == "workflow:incident-A"
    stripped = Payload()
    stripped.CopyFrom(old[1])
    del stripped.metadata["encryption-compression"]
    with pytest.raises(PayloadCryptoError, match="altered"):
        await dc.decode([stripped])
    unknown = Payload()
    unknown.CopyFrom(old[1])
    unknown.metadata["encryption-compression"] = b"brotli"
    with pytest.raises(PayloadCryptoError, match="compression b'brotli', not zlib"):
        await dc.decode([unknown])


@both
async def test_one_converter_per_data_key_serves_every_context_of_that_workflow(
    tmp_path, keystore_url
):
    """The worker asks for a converter per payload it visits; the contexts of one workflow (its
    own, its activities') share one, sealing under that workflow's key; another gets its own."""
    dc = data_converter(keys=keys_in(tmp_path, keystore_url))
    workflow = dc.with_context(WorkflowSerializationContext("default", "incident-A"))
    activity = ActivitySerializationContext("default", "1", "a", "q", "incident-A", "W", False)
    assert dc.with_context(activity) is workflow
    other = dc.with_context(WorkflowSerializationContext("default", "incident-B"))
    assert other is not workflow
    [a] = await workflow.encode(["x"])
    [b] = await other.encode(["x"])
    assert (label(a)[2], label(b)[2]) == ("workflow:incident-A", "workflow:incident-B")
    assert await dc.decode([a, b]) == ["x", "x"]


# --- keys: the file, configuration, switching off -------------------------------------------


def test_the_key_file_is_made_0600_on_first_use_and_then_kept(tmp_path):
    ring = master.load_or_create(tmp_path / "data")
    path = tmp_path / "data" / master.KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = master.load_or_create(tmp_path / "data")
    assert [k.key_id for k in again.keys] == [k.key_id for k in ring.keys]
    assert len(ring.current.secret) == 32


def test_production_keys_come_from_configuration(tmp_path, capsys):
    value = master.config_value([master.MasterKey.generate(), master.MasterKey.generate()])
    settings = Settings(data_dir=tmp_path, master_keys=value)
    ring = master.load(settings)
    newest_id = value.split(",")[-1].split(":")[0]
    assert ring.path is None and len(ring.keys) == 2 and ring.current.key_id == newest_id
    assert not (tmp_path / master.KEY_FILE).exists()  # configured keys never make a file
    with pytest.raises(master.MasterKeyError, match="CR_MASTER_KEYS"):
        ring.rotate()
    assert master.main([value]) == 0  # a rotation: the same keys and a new one at the end
    rotated = master.parse(capsys.readouterr().out)
    assert [k.key_id for k in rotated[:2]] == [k.key_id for k in ring.keys]
    for bad, why in (("k1:bm9wZQ==", "4 bytes"), ("k1", "not a master key list"),
                     ("k1:!!", "not base64"), ("", "empty")):  # fmt: skip
        with pytest.raises(master.MasterKeyError, match=why):
            master.parse(bad)


def test_encryption_can_be_switched_off_for_comparison(tmp_path):
    assert data_converter(Settings(payload_encryption=False)) is pydantic_data_converter
    assert isinstance(DATA_CONVERTER.payload_codec, EncryptionCodec)  # on by default


# --- against the dev server ------------------------------------------------------------------


def _raw(history) -> bytes:
    return History(events=history.events).SerializeToString()


async def test_a_failure_message_never_reaches_history_in_clear(dev_env):
    @activity.defn(name=FAILING_ACTIVITY)
    async def fail(contact: str) -> str:
        raise ApplicationError(f"could not text {contact}", non_retryable=True)

    queue = f"codec-{uuid.uuid4().hex[:8]}"
    client = dev_env.client
    async with Worker(client, task_queue=queue, workflows=[FailingStepWorkflow], activities=[fail]):
        handle = await client.start_workflow(
            FailingStepWorkflow.run, CANARY, id=f"codec-{uuid.uuid4().hex[:8]}",
            task_queue=queue, execution_timeout=timedelta(seconds=30),
        )  # fmt: skip
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    assert str(caught.value.cause) == f"the step failed: could not text {CANARY}"
    history = await handle.fetch_history()
    assert CANARY.encode() not in _raw(history)
    failures = [
        e.workflow_execution_failed_event_attributes.failure
        for e in history.events
        if e.HasField("workflow_execution_failed_event_attributes")
    ]
    assert [f.message for f in failures] == ["Encoded failure"]
    assert failure_message(failures[0]) == f"the step failed: could not text {CANARY}"


async def test_an_incident_with_personal_data_leaves_none_in_raw_history(h):
    from audit.replay import Loaded, rebuild, replay
    from records.archive import decode_start

    steps = [
        {"id": "text", "kind": "action", "activity": "notify.sms",
         "args": {"to": "{{ contact_phone }}", "body": "about: {{ summary }}"}},
    ]  # fmt: skip
    inp: IncidentInput = incident_input(
        playbook(steps), summary=f"caller at {CANARY} threatens harm",
        fields={"contact_phone": CANARY},
    )  # fmt: skip
    handle = await h.open(inp)
    await wait_for_timeline(handle, has("playbook_complete"))
    (sms,) = h.stand_ins.named("notify.sms")
    assert sms["args"]["to"] == CANARY  # the activity saw the number, opened
    status = await handle.query(IncidentWorkflow.status)
    assert CANARY in status.summary and status.fields["contact_phone"] == CANARY
    await h.close(handle)

    history = await h.client.get_workflow_handle(workflow_id_for(inp.incident_id)).fetch_history()
    raw = _raw(history)
    assert raw and CANARY.encode() not in raw
    assert (
        b"binary/encrypted" in raw
        and b"workflow:" + workflow_id_for(inp.incident_id).encode() in raw
    )
    described = await h.client.get_workflow_handle(workflow_id_for(inp.incident_id)).describe()
    assert CANARY.encode() not in described.raw_description.SerializeToString()

    # The auditors' tools open it: the start input, the timeline, and a replay with today's code.
    start = decode_start(history.events[0])
    assert start is not None and start.fields == {"contact_phone": CANARY}
    case = rebuild(inp.incident_id, [history])
    assert case.summary == inp.summary and case.timeline[0].kind == "opened"
    assert await replay([Loaded(inp.incident_id, history, "dev server")]) == []
