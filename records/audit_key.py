"""The audit log's Ed25519 signing keys, in one JSON file only the log's writers should read.

``CR_AUDIT_KEY_FILE`` (default ``<data_dir>/audit-key.json``, mode 0600, created with one key on the
first write) holds ``{"keys": [{"key_id", "public_key", "private_key", "created_at"}, ...]}``, oldest
first: the newest key with a private half signs checkpoints, every key verifies them. A copy of the
file without the ``private_key`` fields verifies only: that is the file to give auditors (point
their ``CR_AUDIT_KEY_FILE`` at it). Why signatures rather than an HMAC: whoever verifies an HMAC can
also forge one; a public key lets an auditor, or an exported bundle, check checkpoints without being
able to write them. The threat model is in ``records/checkpoints.py``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)


class AuditKeyError(Exception):
    """The key file is unreadable, or holds no key that can sign."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def key_id_for(public_raw: bytes) -> str:
    """A key's id: the first 16 hex digits of SHA-256 over its raw public key."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


@dataclass
class AuditKeys:
    """Key id -> public key, and the private halves this process holds (oldest first)."""

    public: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    private: list[tuple[str, Ed25519PrivateKey]] = field(default_factory=list)

    @classmethod
    def from_public(cls, keys: dict[str, str]) -> AuditKeys:
        """A verify-only ring from ``{key id: base64 raw public key}`` (an export's ``keys``)."""
        ring = cls()
        for key_id, value in keys.items():
            raw = base64.b64decode(value)
            if key_id_for(raw) != key_id:
                raise AuditKeyError(f"key {key_id}: its id does not match its public key")
            ring.public[key_id] = Ed25519PublicKey.from_public_bytes(raw)
        return ring

    def public_b64(self) -> dict[str, str]:
        return {
            k: _b64(v.public_bytes(Encoding.Raw, PublicFormat.Raw)) for k, v in self.public.items()
        }

    @property
    def signing_id(self) -> str:
        """The id of the key that signs: the newest with a private half."""
        if not self.private:
            raise AuditKeyError("the audit key file holds no private key: it can verify, not sign")
        return self.private[-1][0]

    def sign(self, data: bytes) -> str:
        """The base64 signature of ``data`` by the ``signing_id`` key."""
        self.signing_id  # noqa: B018 - the one error when no key can sign
        return _b64(self.private[-1][1].sign(data))

    def check(self, key_id: str, data: bytes, signature: str) -> str | None:
        """Why the signature does not hold, or None."""
        key = self.public.get(key_id)
        if key is None:
            return f"signed by key {key_id}, which the audit key file does not hold"
        try:
            key.verify(base64.b64decode(signature, validate=True), data)
        except (InvalidSignature, binascii.Error, ValueError):
            return f"its signature by key {key_id} does not verify (forged or edited)"
        return None


def _parse(path: Path) -> AuditKeys:
    try:
        ring = AuditKeys()
        for item in json.loads(path.read_text())["keys"]:
            raw = base64.b64decode(item["public_key"])
            ring.public.update(AuditKeys.from_public({item["key_id"]: item["public_key"]}).public)
            if item.get("private_key"):
                private = Ed25519PrivateKey.from_private_bytes(
                    base64.b64decode(item["private_key"])
                )
                if private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) != raw:
                    raise AuditKeyError(f"key {item['key_id']}: private and public halves differ")
                ring.private.append((item["key_id"], private))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise AuditKeyError(f"{path}: not a readable audit key file ({err})") from None
    if not ring.public:
        raise AuditKeyError(f"{path}: holds no key")
    return ring


_cache: dict[Path, tuple[int, AuditKeys]] = {}


def load(path: Path) -> AuditKeys | None:
    """The ring in ``path`` (re-read when the file changes), or None when there is no such file."""
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    cached = _cache.get(path)
    if cached is None or cached[0] != stamp:
        cached = _cache[path] = (stamp, _parse(path))
    return cached[1]


def load_or_create(path: Path) -> AuditKeys:
    """The ring in ``path``; on first use a new 0600 file with one key (the first creator wins)."""
    ring = load(path)
    if ring is not None:
        return ring
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    item = {
        "key_id": key_id_for(raw),
        "public_key": _b64(raw),
        "private_key": _b64(private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())),
        "created_at": datetime.now(UTC).isoformat(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".audit-key-", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps({"keys": [item]}, indent=2) + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process created it first: theirs
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    ring = load(path)
    assert ring is not None
    return ring
