"""The file that keeps the emulators' state across restarts of ``make run``.

Open incidents resume after a restart, so the vendors they talk to must still hold what they
received: the Case a later step updates, the alert a close resolves, the messages the delivery
ledger reconciles against. The file (``CR_SANDBOX_STATE_FILE``, default
``<data_dir>/sandbox-state.json``) is rewritten whole after every request that may have changed
something: a temporary file beside it, mode 0600, then an atomic rename, so a killed process leaves
either the old or the new state, never half of one. A lock beside it, held for the life of the
server, stops two sandboxes from writing one file. What is kept is decided by
``sandbox.state.SandboxState.persisted``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any


class SandboxStateError(RuntimeError):
    """The state file cannot be used (locked by another sandbox, unreadable, not ours)."""


class StateFile:
    """One sandbox's state file: locked on open, read once, rewritten atomically on each save."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def open(self) -> Any:
        """Lock the file for this server and return its parsed contents (None when absent)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SandboxStateError(
                f"sandbox state file {self.path} is in use by another sandbox; stop it, or set "
                "CR_SANDBOX_STATE_FILE to another file (or :memory:)"
            ) from None
        self._lock_fd = fd
        try:
            return self._read()
        except SandboxStateError:
            self.close()
            raise

    def _read(self) -> Any:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise self.unusable(f"cannot be read ({exc})") from exc
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise self.unusable(f"is not JSON ({exc.msg} at line {exc.lineno})") from exc

    def unusable(self, problem: str) -> SandboxStateError:
        return SandboxStateError(
            f"sandbox state file {self.path} {problem}; move it aside to start with empty "
            "emulators, or set CR_SANDBOX_STATE_FILE"
        )

    def save(self, data: dict[str, Any], *, sync: bool = False) -> None:
        """Replace the file with ``data``: temp file (0600) + rename; ``sync`` also fsyncs it."""
        payload = json.dumps(data, separators=(",", ":")).encode()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # a leftover temp file may have been created more open
            with os.fdopen(fd, "wb", closefd=False) as out:
                out.write(payload)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def close(self) -> None:
        """Release the lock (the state itself was saved by the last ``save``)."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
