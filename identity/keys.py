"""The API's Ed25519 signing keys: one file in the data directory, several keys for rotation.

``load_or_create(data_dir)`` reads ``signing-keys.json`` (mode 0600), creating it with one key on
first use. The newest key signs; every key in the ring verifies, and ``public_keys()`` is what an
incident's input trusts (``IncidentInput.trusted_keys``). An incident keeps the keys it was opened
with, so after ``rotate()`` sign for it with ``sign(fields, trusted=its key ids)``: the newest key
it trusts signs. ``retire(key_id)`` drops a key once no open incident needs it.

What is signed, and how the workflow checks it, lives in ``workflows/signatures.py``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from workflows.models import Signature
from workflows.signatures import SignedFields, key_id_for, signing_input

KEY_FILE = "signing-keys.json"


class KeyRingError(Exception):
    """The key file is unreadable, or no key can sign for an incident."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass
class SigningKey:
    key_id: str
    private: Ed25519PrivateKey
    created_at: datetime

    @classmethod
    def generate(cls) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        return cls(key_id_for(_raw_public(private)), private, datetime.now(UTC))

    @property
    def public_b64(self) -> str:
        return _b64(_raw_public(self.private))

    def to_json(self) -> dict[str, str]:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        raw = self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return {
            "key_id": self.key_id,
            "private_key": _b64(raw),
            "public_key": self.public_b64,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> SigningKey:
        private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(data["private_key"]))
        key_id = key_id_for(_raw_public(private))
        if key_id != data["key_id"]:
            raise KeyRingError(f"key {data['key_id']}: its id does not match its key")
        return cls(key_id, private, datetime.fromisoformat(data["created_at"]))


def _raw_public(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass
class KeyRing:
    """The signing keys, oldest first; ``path`` is where ``rotate``/``retire`` save them."""

    path: Path
    keys: list[SigningKey] = field(default_factory=list)

    def public_keys(self) -> dict[str, str]:
        """Key id -> base64 raw public key, for every key: what a new incident trusts."""
        return {k.key_id: k.public_b64 for k in self.keys}

    @property
    def current(self) -> SigningKey:
        return self.keys[-1]

    def sign(
        self,
        fields: SignedFields,
        *,
        trusted: Collection[str] | None = None,
        issued_at: datetime | None = None,
        nonce: str | None = None,
    ) -> Signature:
        """A fresh signature of ``fields`` (issued now, a random nonce) by the newest key, or by
        the newest of ``trusted`` (the key ids the target incident trusts)."""
        candidates = [k for k in self.keys if trusted is None or k.key_id in trusted]
        if not candidates:
            raise KeyRingError("no signing key is trusted by this incident")
        key = candidates[-1]
        issued_at = issued_at or datetime.now(UTC)
        nonce = nonce or secrets.token_urlsafe(24)
        data = signing_input(fields, issued_at=issued_at, nonce=nonce, key_id=key.key_id)
        return Signature(
            key_id=key.key_id,
            issued_at=issued_at,
            nonce=nonce,
            value=_b64(key.private.sign(data)),
        )

    def rotate(self) -> str:
        """Add a new key, which signs from now on; the older ones still verify. Returns its id."""
        key = SigningKey.generate()
        self.keys.append(key)
        _save(self.path, self.keys)
        return key.key_id

    def retire(self, key_id: str) -> None:
        """Drop a key (never the last): incidents that trust only it can no longer be signed for."""
        remaining = [k for k in self.keys if k.key_id != key_id]
        if not remaining:
            raise KeyRingError("the last signing key cannot be retired")
        self.keys = remaining
        _save(self.path, self.keys)


def load_or_create(data_dir: Path) -> KeyRing:
    """The key ring in ``data_dir/signing-keys.json``; created (0600, one key) on first use."""
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _save(path, [SigningKey.generate()], exclusive=True)
    try:
        raw = json.loads(path.read_text())
        keys = [SigningKey.from_json(k) for k in raw["keys"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise KeyRingError(f"{path}: not a readable signing key file ({err})") from None
    if not keys:
        raise KeyRingError(f"{path}: holds no key")
    return KeyRing(path, keys)  # oldest first, as rotate() appends


def _save(path: Path, keys: list[SigningKey], *, exclusive: bool = False) -> None:
    """Write the ring to a 0600 temp file and move it in place (``exclusive``: never over a file
    another process created meanwhile; that one wins)."""
    body = json.dumps({"keys": [k.to_json() for k in keys]}, indent=2)
    fd, tmp = tempfile.mkstemp(prefix=".signing-keys-", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        if exclusive:
            with contextlib.suppress(FileExistsError):  # another process created it first
                os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
