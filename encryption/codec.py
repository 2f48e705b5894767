"""The payload codec: every payload Temporal stores is sealed with AES-256-GCM.

A payload that belongs to a workflow (the serialization context names its workflow id: start
input, Updates, signals, queries, activity arguments and results, child workflows, failures)
is sealed under that workflow's data key (``keystore.py``); one that belongs to none (a
standalone activity, a Nexus call) under the newest master key itself. The sealed payload's
metadata says how to open it:

- ``encoding``: ``binary/encrypted``; ``encryption-cipher``: ``AES-256-GCM``
- ``encryption-data-key``: ``workflow:<workflow id>`` or ``global``
- ``encryption-key-id``: the data key's id, or the master key's for ``global``
- ``encryption-compression``: ``zlib`` when the plaintext was compressed before sealing (a
  payload of ``COMPRESS_FROM`` bytes or more that shrinks: an incident's playbook snapshot, the
  timeline entries a records marker echoes); absent otherwise, and on every payload sealed before

The original payload (its metadata too) is the plaintext; the fields above are bound to it as
associated data, so a payload cannot be moved to another key nor lose its compression flag. A
payload that is not sealed (recorded histories, data from before encryption) passes through
``decode`` unchanged. Compressing before sealing makes a payload's sealed length depend on its
content; whoever can read the history already sees every payload's length and the events around
it, so what it adds is small next to the history bytes and server writes it saves (issue 11).

Codecs run in the worker and the client, never in the workflow sandbox. Unwrapped data keys are
cached (``KeyStore``); a miss reads the database in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections.abc import Callable, Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from encryption import master as master_keys
from encryption.keystore import KeyStore
from encryption.master import MasterKeys, SealError, seal, unseal
from settings import get_settings

ENCODING = b"binary/encrypted"
META_COMPRESSION = "encryption-compression"
ZLIB = b"zlib"
COMPRESS_FROM = 256  # bytes of plaintext: below this, zlib's header costs more than it saves
MAX_PLAINTEXT = 8 * 1024 * 1024  # a compressed payload opens to at most this (no zip bombs)
CIPHER = b"AES-256-GCM"
META_CIPHER = "encryption-cipher"
META_KEY_ID = "encryption-key-id"
META_DATA_KEY = "encryption-data-key"
GLOBAL = "global"
WORKFLOW = "workflow:"


class PayloadCryptoError(Exception):
    """A sealed payload that cannot be opened: altered, or naming a key scheme we do not know."""


def is_sealed(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def _aad(data_key: str, key_id: str, compression: bytes | None = None) -> bytes:
    bound = f"critical-response payload\n{data_key}\n{key_id}".encode()
    return bound if compression is None else bound + b"\n" + compression


class Keys:
    """The master keys and the keystore, loaded once per process, when first needed (so merely
    importing the data converter reads no file and opens no database)."""

    def __init__(self, load: Callable[[], tuple[MasterKeys, KeyStore]]) -> None:
        self._load = load
        self._loaded: tuple[MasterKeys, KeyStore] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls) -> Keys:
        """Keys as the settings say at first use (``CR_MASTER_KEYS`` or the data directory's key
        file; ``CR_KEYSTORE_URL`` or the records database)."""

        def load() -> tuple[MasterKeys, KeyStore]:
            settings = get_settings()
            ring = master_keys.load(settings)
            return ring, KeyStore(ring, settings.effective_keystore_url)

        return cls(load)

    @classmethod
    def of(cls, ring: MasterKeys, store: KeyStore) -> Keys:
        return cls(lambda: (ring, store))

    @property
    def ready(self) -> bool:
        return self._loaded is not None

    def get(self) -> tuple[MasterKeys, KeyStore]:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded


_shared: Keys | None = None
_shared_lock = threading.Lock()


def shared_keys() -> Keys:
    """The process's keys, as the settings say: one keystore and one cache for the data converter
    and the records' sealed columns (``records/sealed.py``), so a destroyed key is forgotten by
    both at once."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Keys.from_settings()
        return _shared


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """Seals under the data key of ``scope`` (a workflow id), or the master key when None."""

    def __init__(self, keys: Keys, scope: str | None = None) -> None:
        self.keys = keys
        self.scope = scope

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        scope = None
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            scope = context.workflow_id or None
        return self if scope == self.scope else EncryptionCodec(self.keys, scope)

    # --- async, as the SDK calls it: the database only in a thread -----------------------------

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if self._ready_for(self.scope):
            return self.encode_sync(payloads)
        return await asyncio.to_thread(self.encode_sync, payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if all(self._ready_for(_scope_of(p)) for p in payloads if is_sealed(p)):
            return self.decode_sync(payloads)
        return await asyncio.to_thread(self.decode_sync, payloads)

    # --- sync, for readers of raw history (archive manifests, audit timelines) ------------------

    def encode_sync(self, payloads: Sequence[Payload]) -> list[Payload]:
        ring, store = self.keys.get()
        if self.scope is None:
            data_key, key_id, secret = GLOBAL, ring.current.key_id, ring.current.secret
        else:
            key = store.data_key(self.scope)
            data_key, key_id, secret = WORKFLOW + self.scope, key.key_id, key.secret
        return [p if is_sealed(p) else _seal(p, data_key, key_id, secret) for p in payloads]

    def decode_sync(self, payloads: Sequence[Payload]) -> list[Payload]:
        if not any(is_sealed(p) for p in payloads):
            return list(payloads)
        ring, store = self.keys.get()
        return [_open(p, ring, store) if is_sealed(p) else p for p in payloads]

    def _ready_for(self, scope: str | None) -> bool:
        """True when sealing or opening for ``scope`` needs no file and no database."""
        if not self.keys.ready:
            return False
        return scope is None or self.keys.get()[1].cached(scope) is not None


def _scope_of(payload: Payload) -> str | None:
    data_key = payload.metadata.get(META_DATA_KEY, b"").decode(errors="replace")
    return data_key.removeprefix(WORKFLOW) if data_key.startswith(WORKFLOW) else None


def _seal(payload: Payload, data_key: str, key_id: str, secret: bytes) -> Payload:
    plaintext = payload.SerializeToString()
    metadata = {
        "encoding": ENCODING,
        META_CIPHER: CIPHER,
        META_DATA_KEY: data_key.encode(),
        META_KEY_ID: key_id.encode(),
    }
    compression = None
    if len(plaintext) >= COMPRESS_FROM:
        packed = zlib.compress(plaintext, 1)  # level 6 packs about 5% smaller at 1.5x the CPU
        if len(packed) + len(META_COMPRESSION) + len(ZLIB) + 4 < len(plaintext):
            plaintext, compression = packed, ZLIB
            metadata[META_COMPRESSION] = ZLIB
    return Payload(
        metadata=metadata, data=seal(secret, plaintext, _aad(data_key, key_id, compression))
    )


def _inflate(packed: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        plaintext = inflater.decompress(packed, MAX_PLAINTEXT)
    except zlib.error as err:
        raise PayloadCryptoError(f"a compressed payload does not inflate: {err}") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise PayloadCryptoError(
            f"a compressed payload opens to more than {MAX_PLAINTEXT} bytes, or is cut short"
        )
    return plaintext


def _open(payload: Payload, ring: MasterKeys, store: KeyStore) -> Payload:
    data_key = payload.metadata.get(META_DATA_KEY, b"").decode(errors="replace")
    key_id = payload.metadata.get(META_KEY_ID, b"").decode(errors="replace")
    cipher = payload.metadata.get(META_CIPHER, CIPHER)
    if cipher != CIPHER:
        raise PayloadCryptoError(f"sealed payload uses cipher {cipher!r}, not AES-256-GCM")
    compression = payload.metadata.get(META_COMPRESSION)
    if compression not in (None, ZLIB):
        raise PayloadCryptoError(f"sealed payload uses compression {compression!r}, not zlib")
    if data_key == GLOBAL:
        secret = ring.get(key_id).secret
    elif data_key.startswith(WORKFLOW):
        secret = store.key_for(data_key.removeprefix(WORKFLOW), key_id).secret
    else:
        raise PayloadCryptoError(f"sealed payload names no data key we know ({data_key!r})")
    try:
        plaintext = unseal(secret, payload.data, _aad(data_key, key_id, compression))
    except SealError:
        raise PayloadCryptoError(
            f"a payload sealed under {data_key} key {key_id} does not open: its ciphertext or "
            "metadata was altered (AES-GCM authentication failed)"
        ) from None
    opened = Payload()
    opened.ParseFromString(_inflate(plaintext) if compression == ZLIB else plaintext)
    return opened
