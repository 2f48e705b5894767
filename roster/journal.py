"""Every roster and token change as an entry of the hash-chained audit log, under the pseudo-incident
``_roster``, so ``incident audit verify`` covers who changed whom, when, and what."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func
from sqlmodel import Session, select

from records.chain import write_batch
from records.tables import AuditRow, records_engine
from workflows.models import RecordBatch, TimelineEntry

ROSTER_ID = "_roster"
KIND = "roster_changed"
_ATTEMPTS = 20


def record(actor: str, detail: str, url: str | None = None, at: datetime | None = None) -> int:
    """Append one ``roster_changed`` entry (seq = the last of ``_roster`` + 1); return its seq.

    Two writers that pick the same seq cannot both win (the log is keyed by incident and seq):
    the loser reads the new tip and tries again.
    """
    eng = records_engine(url)
    for _ in range(_ATTEMPTS):
        with Session(eng) as s:
            last = s.exec(
                select(func.max(AuditRow.seq)).where(AuditRow.incident_id == ROSTER_ID)
            ).one()
        seq = 0 if last is None else int(last) + 1
        entry = TimelineEntry(
            seq=seq, at=at or datetime.now(UTC), actor=actor, kind=KIND, detail=detail
        )
        batch = RecordBatch(
            incident_id=ROSTER_ID,
            workflow_id="roster",
            run_id="roster",
            playbook="roster",
            playbook_hash="",
            entries=[entry],
            snapshot=None,
        )
        if write_batch(batch, url)["written"] == 1:
            return seq
    raise RuntimeError(
        f"could not append to the {ROSTER_ID} audit log: too many concurrent writers"
    )


def entries(url: str | None = None) -> list[AuditRow]:
    """The roster's audit entries, oldest first."""
    with Session(records_engine(url)) as s:
        query = select(AuditRow).where(AuditRow.incident_id == ROSTER_ID).order_by(AuditRow.seq)  # type: ignore[arg-type]
        return list(s.exec(query).all())
