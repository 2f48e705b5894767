"""Signed checkpoints of the audit log's head, kept outside the database that holds the log.

The chain in ``records/chain.py`` makes every row's hash cover the rows before it, but its hash is a
plain SHA-256: whoever can write the database can edit a row and recompute every hash after it (with
the project's own ``row_digest``), rewrite ``audit_head``, and the chain holds again. So after every
batch that wrote rows commits, ``write_batch`` appends one checkpoint to an append-only file
(``CR_AUDIT_CHECKPOINT_FILE``, default ``<data_dir>/audit-checkpoints.jsonl``, mode 0600): the log's id,
the position and hash of the head (the batch's last row, which is also its incident's tip), that
row's incident and seq, the time, all signed with the audit key (``records/audit_key.py``, Ed25519).
A head hash commits to every row before it (through ``prev_log_hash``) and to every earlier row of
its incident (through ``prev_incident_hash``), so one checkpoint covers the whole prefix; the file
needs no chain of its own. ``incident audit verify`` recomputes the chain and checks every checkpoint
against it (``audit/verify.py``).

What an insider can do:

- With the database only (a DBA, a leaked database credential, an SQL injection): edit, delete,
  insert or reorder rows and recompute every hash and the head. They cannot sign a checkpoint nor
  remove one from the file, so a rewritten row at or before a checkpoint changes the hash at the
  checkpointed position, a deleted tail leaves a checkpoint naming rows that are gone, and an
  incident whose rows were all deleted is still named by its checkpoints: each is reported. What
  they can still do: rewrite rows written after the last checkpoint (a batch whose checkpoint was
  not appended: a crash between commit and append) which ``verify`` reports as not covered; and
  destroy the log, which is detected, not prevented.
- With the database and the key file: they can sign checkpoints for a rewritten log and append
  them, but the checkpoints already written still name the old hashes, so the rewrite is detected
  as long as they cannot also rewrite the checkpoint file. With the database, the key and write
  access to the checkpoint file (the default layout: one data directory, one user), nothing here
  stops a rewrite, except copies made before it (exports carry their checkpoints).
- With the checkpoint file only: deleting lines loses coverage (the rows after the last remaining
  checkpoint are reported as not covered), a forged or edited line is reported as such.

So in production put ``CR_AUDIT_KEY_FILE`` where only the workers (the log's writers) can read it,
give auditors a copy without the private key, and put ``CR_AUDIT_CHECKPOINT_FILE`` on storage the
database's writers can only append to (``chattr +a``, another host's mount, a WORM bucket's sync).

A checkpoint that cannot be written (a full disk, an unreadable key) is logged, not raised: the
batch is committed by then, and the next checkpoint written covers its rows. Concurrent writers
(several worker processes) append whole lines: each checkpoint is one
``write()`` of well under ``PIPE_BUF`` bytes to a file opened ``O_APPEND``, then ``fsync``. Lines
may land out of position order across processes; readers index them by position.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from records import audit_key
from records.tables import canonical
from settings import get_settings

FORMAT = "critical-response.audit-checkpoint/1"
MAX_LINE = 4096  # PIPE_BUF on Linux: one append of at most this many bytes is never interleaved


@dataclass(frozen=True)
class Checkpoint:
    log: str  # the records database's audit log id (``records_meta.audit_log_id``)
    id: int  # the head's position in the whole log (``audit_log.id``)
    incident_id: str  # the head row's incident
    seq: int  # the head row's seq
    hash: str  # the head row's ``row_hash``
    at: str  # when the checkpoint was written (UTC)
    key_id: str
    sig: str
    line: int = 0  # where it was read (not signed)

    def signed_bytes(self) -> bytes:
        fields = {k: v for k, v in asdict(self).items() if k not in ("sig", "line")}
        return f"{FORMAT}\n{canonical(fields)}".encode()

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "line"}

    @classmethod
    def from_json(cls, data: dict[str, Any], line: int = 0) -> Checkpoint:
        """A checkpoint from its JSON form; ValueError when it is not one."""
        try:
            cp = cls(**{k: data[k] for k in _FIELDS}, line=line)
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a checkpoint ({err})") from None
        if not (isinstance(cp.id, int) and isinstance(cp.seq, int)):
            raise ValueError("not a checkpoint (id and seq must be integers)")
        return cp

    def where(self) -> str:
        return f"checkpoint line {self.line}" if self.line else "a checkpoint"


_FIELDS = ("log", "id", "incident_id", "seq", "hash", "at", "key_id", "sig")


def checkpoint_file() -> Path:
    return get_settings().effective_audit_checkpoint_file


def key_file() -> Path:
    return get_settings().effective_audit_key_file


def append(log: str, row_id: int, incident_id: str, seq: int, row_hash: str) -> Checkpoint:
    """Sign the head (``row_id``, its hash, incident and seq) and append it as one line."""
    keys = audit_key.load_or_create(key_file())
    at = datetime.now(UTC).isoformat()
    unsigned = Checkpoint(log, row_id, incident_id, seq, row_hash, at, keys.signing_id, "")
    cp = Checkpoint(**{**unsigned.to_json(), "sig": keys.sign(unsigned.signed_bytes())})
    line = (canonical(cp.to_json()) + "\n").encode()
    if len(line) > MAX_LINE:  # ids are bounded (workflows/limits.py): never in practice
        raise ValueError(f"checkpoint line of {len(line)} bytes is over {MAX_LINE}")
    path = checkpoint_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return cp


def append_or_log(log: str, row_id: int, incident_id: str, seq: int, row_hash: str) -> None:
    """``append``, logging (ids only) instead of failing: the rows are committed by now, and the
    next checkpoint written anywhere in the log covers them (``verify`` notes them until then)."""
    try:
        append(log, row_id, incident_id, seq, row_hash)
    except (OSError, ValueError, audit_key.AuditKeyError) as err:
        structlog.get_logger().error(
            "audit checkpoint not written", incident_id=incident_id, row_id=row_id, error=str(err)
        )


def read(
    path: Path | None = None, incident_id: str | None = None
) -> tuple[list[Checkpoint], list[str]]:
    """The checkpoints in the file (of one incident, or all), and notes on lines that are not
    checkpoints (a torn write). A missing file holds none."""
    path = path or checkpoint_file()
    found: list[Checkpoint] = []
    notes: list[str] = []
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return found, notes
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
                cp = Checkpoint.from_json(data, number)
            except (ValueError, UnicodeDecodeError, AttributeError):
                notes.append(f"line {number} of {path} is not a checkpoint (a torn write?)")
                continue
            if incident_id is None or cp.incident_id == incident_id:
                found.append(cp)
    return found, notes
