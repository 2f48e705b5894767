"""The master keys of payload encryption: AES-256 keys with ids, oldest first.

The newest key seals (data keys, and payloads that belong to no workflow); every key opens, so a
rotation never strands old data. The keys come from ``CR_MASTER_KEYS`` (production: every process
gets the same list, ``id:base64,id:base64``, newest last, or the JSON of the key file), else from
``<data_dir>/master-keys.json`` (mode 0600), created with one key on first use, which is how the
embedded stack turns encryption on by itself.

``python -m encryption.master [CURRENT]`` prints a value for ``CR_MASTER_KEYS``: a new key, after
the ones in ``CURRENT`` when given (a rotation).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from settings import Settings

KEY_FILE = "master-keys.json"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the GCM standard nonce


class MasterKeyError(Exception):
    """No usable master key: unreadable configuration, or a key id nobody configured."""


class SealError(Exception):
    """Ciphertext that does not open: altered, truncated, or sealed under another key."""


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM with a random nonce: ``nonce || ciphertext || tag``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < NONCE_BYTES + 16:
        raise SealError("too short to be sealed data")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise SealError("authentication failed") from None


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    secret: bytes = field(repr=False)
    created_at: datetime

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(f"mk-{secrets.token_hex(6)}", os.urandom(KEY_BYTES), datetime.now(UTC))

    def to_json(self) -> dict[str, str]:
        return {
            "key_id": self.key_id,
            "key": base64.b64encode(self.secret).decode("ascii"),
            "created_at": self.created_at.isoformat(),
        }


def _key(key_id: str, encoded: str, created_at: str | None = None) -> MasterKey:
    key_id = key_id.strip()
    if not key_id or any(ch in key_id for ch in ":,\n"):
        raise MasterKeyError(f"master key id {key_id!r}: empty, or holds ':' ',' or a newline")
    try:
        secret = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"master key {key_id}: not base64") from None
    if len(secret) != KEY_BYTES:
        raise MasterKeyError(f"master key {key_id}: {len(secret)} bytes, AES-256 needs 32")
    when = datetime.fromisoformat(created_at) if created_at else datetime.fromtimestamp(0, UTC)
    return MasterKey(key_id, secret, when)


def parse(text: str) -> list[MasterKey]:
    """``id:base64,id:base64`` (newest last) or ``{"keys": [{"key_id", "key", ...}]}``."""
    text = text.strip()
    try:
        if text.startswith("{"):
            raw = json.loads(text)["keys"]
            keys = [_key(k["key_id"], k["key"], k.get("created_at")) for k in raw]
        else:
            keys = [_key(*item.split(":", 1)) for item in text.split(",") if item.strip()]
    except (ValueError, KeyError, TypeError) as err:
        raise MasterKeyError(f"not a master key list ({err})") from None
    if not keys:
        raise MasterKeyError("the master key list is empty")
    if len({k.key_id for k in keys}) != len(keys):
        raise MasterKeyError("two master keys share an id")
    return keys


def config_value(keys: list[MasterKey]) -> str:
    """The ``CR_MASTER_KEYS`` form of ``keys``."""
    return ",".join(f"{k.key_id}:{base64.b64encode(k.secret).decode('ascii')}" for k in keys)


@dataclass
class MasterKeys:
    """The key ring. ``path`` is the key file (None: the keys came from configuration)."""

    keys: list[MasterKey]
    path: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def current(self) -> MasterKey:
        return self.keys[-1]

    def get(self, key_id: str) -> MasterKey:
        """The key ``key_id``; the key file is read again once before giving up (another
        process may have rotated)."""
        for attempt in range(2):
            for key in self.keys:
                if key.key_id == key_id:
                    return key
            if attempt == 0 and self.path is not None:
                with self._lock:
                    self.keys = _read(self.path)
        where = self.path or "CR_MASTER_KEYS"
        raise MasterKeyError(f"master key {key_id} is not in {where}")

    def rotate(self) -> str:
        """A new key that seals from now on (the older ones still open). Returns its id."""
        if self.path is None:
            raise MasterKeyError(
                "the master keys come from CR_MASTER_KEYS: rotate by giving every process the "
                'list with a new key at the end (python -m encryption.master "$CR_MASTER_KEYS")'
            )
        with self._lock:
            key = MasterKey.generate()
            self.keys = [*_read(self.path), key]
            _save(self.path, self.keys)
        return key.key_id


def load(settings: Settings) -> MasterKeys:
    """From ``CR_MASTER_KEYS`` when set, else the data directory's key file (created if absent)."""
    if settings.master_keys is not None:
        return MasterKeys(parse(settings.master_keys.get_secret_value()))
    return load_or_create(settings.data_dir)


def load_or_create(data_dir: Path) -> MasterKeys:
    """``data_dir/master-keys.json``; created (0600, one key) on first use."""
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _save(path, [MasterKey.generate()], exclusive=True)
    return MasterKeys(_read(path), path)


def _read(path: Path) -> list[MasterKey]:
    try:
        return parse(path.read_text())
    except OSError as err:
        raise MasterKeyError(f"{path}: unreadable ({err})") from None
    except MasterKeyError as err:
        raise MasterKeyError(f"{path}: {err}") from None


def _save(path: Path, keys: list[MasterKey], *, exclusive: bool = False) -> None:
    """Write to a 0600 temp file, then move it in place (``exclusive``: never over a file another
    process created meanwhile; that one wins)."""
    body = json.dumps({"keys": [k.to_json() for k in keys]}, indent=2)
    fd, tmp = tempfile.mkstemp(prefix=".master-keys-", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        if exclusive:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv: list[str]) -> int:
    """Print a ``CR_MASTER_KEYS`` value: the keys given (if any) and a new one after them."""
    try:
        keys = parse(argv[0]) if argv and argv[0].strip() else []
    except MasterKeyError as err:
        print(f"encryption.master: {err}", file=sys.stderr)
        return 1
    print(config_value([*keys, MasterKey.generate()]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
