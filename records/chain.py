"""The audit chain: every timeline entry appended once, tamper-evident, in the records database.

The workflow sends each new slice of its timeline (with a snapshot of its state) to ``records.append``;
activity retries may deliver the same batch twice, so every write is keyed by (incident id, seq) and
replays are no-ops. Each row's hash covers its content, its position, the previous row of the same
incident and the previous row of the whole log. Appends serialise on the single ``audit_head`` row (an
UPDATE takes the write lock on SQLite and a row lock on PostgreSQL), so the chain never forks under
concurrent workers. Once a batch that wrote rows commits, a signed checkpoint of the new head is
appended outside the database (``records/checkpoints.py``: what that protects against, and what not).

An incident's ``detail`` and ``data`` are sealed under its data key before they are hashed
(``records/sealed.py``): the hash covers the stored ciphertext, so the chain verifies without keys,
for auditors who hold none and after a purge.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from records import checkpoints
from records.projection import project
from records.sealed import Sealer, sealer_for
from records.tables import (
    GENESIS,
    AuditHead,
    AuditRow,
    audit_log_id,
    canonical,
    iso,
    records_engine,
    utc,
)
from workflows.models import RecordBatch, TimelineEntry


def row_digest(row: AuditRow) -> str:
    """SHA-256 over a row's content, position and both previous hashes (canonical JSON)."""
    return hashlib.sha256(canonical(_hashed(row)).encode()).hexdigest()


def row_json(row: AuditRow) -> dict[str, Any]:
    """A row as JSON (an export's ``audit.rows``): every hashed field and the hash."""
    return {**_hashed(row), "row_hash": row.row_hash}


def row_from_json(data: dict[str, Any]) -> AuditRow:
    """The row ``row_json`` wrote; ValueError when ``data`` is not one."""
    try:
        values = {k: data[k] for k in (*_HASHED, "row_hash")}
        for name in _TIMES:
            values[name] = None if values[name] is None else datetime.fromisoformat(values[name])
    except (KeyError, TypeError) as err:
        raise ValueError(f"not an audit row ({err})") from None
    return AuditRow(**values)


_HASHED = (
    "id", "incident_id", "seq", "at", "actor", "role", "action", "step", "detail", "sla",
    "due_at", "data", "workflow_id", "run_id", "playbook", "playbook_hash",
    "prev_incident_hash", "prev_log_hash",
)  # fmt: skip
_TIMES = ("at", "due_at")


def _hashed(row: AuditRow) -> dict[str, Any]:
    """Every hashed field, times in their one text form."""
    return {k: iso(getattr(row, k)) if k in _TIMES else getattr(row, k) for k in _HASHED}


def write_batch(
    batch: RecordBatch, url: str | None = None, *, clear: bool = False
) -> dict[str, Any]:
    """Append the batch's new entries to the chain and refresh the projection, in one transaction.

    Returns how many entries were written, how many were already there (a redelivery), and
    when each of those was recorded (``kept``: a redelivery from a workflow task that was retried,
    or replayed after a local activity moved its clock, stamps the same entry a few milliseconds
    apart; the first write stands and the workflow adopts its time, ``workflows/outbound.py``). After
    a commit that wrote rows, the new head is checkpointed (one signed line appended to a file).
    An incident's detail, data and resolution are sealed under its data key (``clear``: not,
    for the ``purged`` entry written once that key is gone).
    """
    # The key before the transaction: making one writes the keystore, by default this database.
    sealer = sealer_for(batch.incident_id, clear=clear)
    eng = records_engine(url)
    # No autoflush: the rows and the projection go out in one flush at commit, not one per read.
    with Session(eng, autoflush=False) as s:
        # The first statement is a write so that SQLite takes its write lock before any read.
        s.exec(update(AuditHead).where(col(AuditHead.id) == 1).values(writes=AuditHead.writes + 1))
        head = s.get(AuditHead, 1)
        assert head is not None
        seqs = [e.seq for e in batch.entries]
        stored = s.execute(
            sa_select(
                col(AuditRow.seq),
                col(AuditRow.at),
                col(AuditRow.action),
                col(AuditRow.actor),
                col(AuditRow.step),
            ).where(col(AuditRow.incident_id) == batch.incident_id, col(AuditRow.seq).in_(seqs))
        ).all()
        existing = {seq for seq, *_ in stored}
        incoming = {e.seq: (e.kind, e.actor, e.step) for e in batch.entries}
        # The same entry stamped again keeps its first time; another entry under the same seq
        # (a run reset to before it was written) is no redelivery: its time is not the workflow's.
        kept = {
            seq: iso(at)
            for seq, at, action, actor, step in stored
            if incoming.get(seq) == (action, actor, step)
        }
        prev_incident = _incident_tip(s, batch.incident_id)
        written, last_seq = 0, -1
        for entry in sorted(batch.entries, key=lambda e: e.seq):
            if entry.seq in existing:
                continue
            row = _audit_row(batch, entry, head.last_id + 1, prev_incident, head.last_hash, sealer)
            s.add(row)
            head.last_id, head.last_hash, prev_incident = row.id, row.row_hash, row.row_hash
            existing.add(entry.seq)
            written, last_seq = written + 1, entry.seq
        s.add(head)
        if batch.snapshot is not None:
            project(s, batch, batch.snapshot, sealer)
        tip = (_log_id(s, eng), head.last_id, batch.incident_id, last_seq, head.last_hash)
        s.commit()
    if written:
        checkpoints.append_or_log(*tip)
    return {"written": written, "skipped": len(batch.entries) - written, "kept": kept}


_log_ids: WeakKeyDictionary[Engine, str] = WeakKeyDictionary()


def _log_id(s: Session, eng: Engine) -> str:
    """The database's audit log id, read once per engine: it never changes, and every batch
    checkpoints under it (``audit/verify.py`` reads it afresh, so a rewritten id is caught)."""
    found = _log_ids.get(eng)
    if found is None:
        found = audit_log_id(s)
        if found:
            _log_ids[eng] = found
    return found


def _incident_tip(s: Session, incident_id: str) -> str:
    last = s.exec(
        select(AuditRow.row_hash)
        .where(AuditRow.incident_id == incident_id)
        .order_by(col(AuditRow.id).desc())
        .limit(1)
    ).first()
    return last or GENESIS


def _audit_row(
    batch: RecordBatch,
    entry: TimelineEntry,
    row_id: int,
    prev_incident: str,
    prev_log: str,
    sealer: Sealer,
) -> AuditRow:
    row = AuditRow(
        id=row_id,
        incident_id=batch.incident_id,
        seq=entry.seq,
        at=utc(entry.at),
        actor=entry.actor,
        role=entry.role,
        action=entry.kind,
        step=entry.step,
        detail=entry.detail,
        sla=entry.sla,
        due_at=utc(entry.due_at),
        data=canonical(entry.data),
        workflow_id=batch.workflow_id,
        run_id=batch.run_id,
        playbook=batch.playbook,
        playbook_hash=batch.playbook_hash,
        prev_incident_hash=prev_incident,
        prev_log_hash=prev_log,
        row_hash="",
    )
    sealer.seal_row(row)
    row.row_hash = row_digest(row)
    return row
