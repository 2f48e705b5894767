"""The payload codec: every payload Temporal stores is sealed with AES-256-GCM.

A payload that belongs to a workflow (the serialization context names its workflow id: start
input, Updates, signals, queries, activity arguments and results, child workflows, failures)
is sealed under that workflow's data key (``keystore.py``); one that belongs to none (a
standalone activity, a Nexus call) under the newest master key itself (AES-256-GCM). The sealed
payload's metadata says how to open it in two entries:

- ``encoding``: ``binary/encrypted``
- ``encryption``: ``<format> <key id> <data key>``, where the data key is ``workflow:<workflow
  id>`` or ``global``, the key id the data key's (or the master key's, for ``global``), and the
  format ``2`` followed by flags: ``z`` when the plaintext was compressed before sealing (a
  payload of ``COMPRESS_FROM`` bytes or more that shrinks: an incident's playbook snapshot, the
  timeline entries a records call echoes), ``j`` when the plaintext is the payload's data alone
  and its metadata was exactly ``encoding: json/plain`` (the data converter's usual payload).

The original payload is the plaintext; the ``encryption`` entry is bound to it as associated
data, so a payload cannot be moved to another key nor lose a flag. Payloads sealed before this
format (issue 11: about 95 bytes more per payload, the bulk of a sealed history's overhead) named
each field in an entry of its own (``encryption-cipher``, ``encryption-data-key``,
``encryption-key-id``, ``encryption-compression``) and open as they always did. A payload that is
not sealed (recorded histories, data from before encryption) passes through ``decode``
unchanged. Compressing before sealing makes a payload's sealed length depend on its
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
META_SEAL = "encryption"  # "<format> <key id> <data key>"
FORMAT = "2"
COMPRESSED = "z"  # flags after the format
DATA_ONLY = "j"
JSON_PLAIN = {"encoding": b"json/plain"}
ZLIB = b"zlib"
COMPRESS_FROM = 256  # bytes of plaintext: below this, zlib's header costs more than it saves
MAX_PLAINTEXT = 8 * 1024 * 1024  # a compressed payload opens to at most this (no zip bombs)
# The first format's metadata, still opened.
CIPHER = b"AES-256-GCM"
META_COMPRESSION = "encryption-compression"
META_CIPHER = "encryption-cipher"
META_KEY_ID = "encryption-key-id"
META_DATA_KEY = "encryption-data-key"
GLOBAL = "global"
WORKFLOW = "workflow:"


class PayloadCryptoError(Exception):
    """A sealed payload that cannot be opened: altered, or naming a key scheme we do not know."""


def is_sealed(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


AAD_PREFIX = b"critical-response payload\n"  # then the label (the first format: its fields)


def _aad(data_key: str, key_id: str, compression: bytes | None = None) -> bytes:
    """The first format's associated data."""
    bound = AAD_PREFIX + f"{data_key}\n{key_id}".encode()
    return bound if compression is None else bound + b"\n" + compression


def _label(payload: Payload) -> tuple[str, str, str] | None:
    """(format with flags, key id, data key) of a payload sealed in today's format, else None."""
    raw = payload.metadata.get(META_SEAL)
    if raw is None:
        return None
    parts = raw.decode(errors="replace").split(" ", 2)
    if len(parts) != 3 or not parts[0].startswith(FORMAT):
        raise PayloadCryptoError(f"sealed payload has a label we cannot read ({raw[:80]!r})")
    return parts[0], parts[1], parts[2]


def data_key_of(payload: Payload) -> str:
    """The data key a sealed payload names (``workflow:<id>`` or ``global``), in either format;
    "" when it names none or its label cannot be read (opening it says why)."""
    try:
        label = _label(payload)
    except PayloadCryptoError:
        return ""
    if label is not None:
        return label[2]
    return payload.metadata.get(META_DATA_KEY, b"").decode(errors="replace")


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
    data_key = data_key_of(payload)
    return data_key.removeprefix(WORKFLOW) if data_key.startswith(WORKFLOW) else None


def _seal(payload: Payload, data_key: str, key_id: str, secret: bytes) -> Payload:
    data_only = dict(payload.metadata) == JSON_PLAIN and not payload.external_payloads
    plaintext = payload.data if data_only else payload.SerializeToString()
    flags = FORMAT + (DATA_ONLY if data_only else "")
    if len(plaintext) >= COMPRESS_FROM:
        packed = zlib.compress(plaintext, 1)  # level 6 packs about 5% smaller at 1.5x the CPU
        if len(packed) + 1 < len(plaintext):
            plaintext, flags = packed, flags + COMPRESSED
    label = f"{flags} {key_id} {data_key}"
    return Payload(
        metadata={"encoding": ENCODING, META_SEAL: label.encode()},
        data=seal(secret, plaintext, AAD_PREFIX + label.encode()),
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
    label = _label(payload)
    if label is None:
        return _open_first_format(payload, ring, store)
    flags, key_id, data_key = label
    unknown = set(flags[len(FORMAT) :]) - {COMPRESSED, DATA_ONLY}
    if unknown:
        raise PayloadCryptoError(f"sealed payload has flags we do not know ({flags!r})")
    aad = AAD_PREFIX + payload.metadata[META_SEAL]
    plaintext = _unseal(payload, _secret(data_key, key_id, ring, store), aad, data_key, key_id)
    if COMPRESSED in flags:
        plaintext = _inflate(plaintext)
    if DATA_ONLY in flags:
        return Payload(metadata=JSON_PLAIN, data=plaintext)
    opened = Payload()
    opened.ParseFromString(plaintext)
    return opened


def _open_first_format(payload: Payload, ring: MasterKeys, store: KeyStore) -> Payload:
    data_key = payload.metadata.get(META_DATA_KEY, b"").decode(errors="replace")
    key_id = payload.metadata.get(META_KEY_ID, b"").decode(errors="replace")
    cipher = payload.metadata.get(META_CIPHER, CIPHER)
    if cipher != CIPHER:
        raise PayloadCryptoError(f"sealed payload uses cipher {cipher!r}, not AES-256-GCM")
    compression = payload.metadata.get(META_COMPRESSION)
    if compression not in (None, ZLIB):
        raise PayloadCryptoError(f"sealed payload uses compression {compression!r}, not zlib")
    secret = _secret(data_key, key_id, ring, store)
    aad = _aad(data_key, key_id, compression)
    plaintext = _unseal(payload, secret, aad, data_key, key_id)
    opened = Payload()
    opened.ParseFromString(_inflate(plaintext) if compression == ZLIB else plaintext)
    return opened


def _secret(data_key: str, key_id: str, ring: MasterKeys, store: KeyStore) -> bytes:
    if data_key == GLOBAL:
        return ring.get(key_id).secret
    if data_key.startswith(WORKFLOW):
        return store.key_for(data_key.removeprefix(WORKFLOW), key_id).secret
    raise PayloadCryptoError(f"sealed payload names no data key we know ({data_key!r})")


def _unseal(payload: Payload, secret: bytes, aad: bytes, data_key: str, key_id: str) -> bytes:
    try:
        return unseal(secret, payload.data, aad)
    except SealError:
        raise PayloadCryptoError(
            f"a payload sealed under {data_key} key {key_id} does not open: its ciphertext or "
            "metadata was altered (AES-GCM authentication failed)"
        ) from None
