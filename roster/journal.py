"""Every roster and token change as an entry of the hash-chained audit log, under the pseudo-incident
``_roster``, so ``incident audit verify`` covers who changed whom, when, and what; and every request
the API refused to a known person (wrong role, an incident they may not see, a revoked or expired
token) under ``_access``, so an insider probing for what they may not do leaves a trace."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func
from sqlmodel import Session, select

from records.chain import write_batch
from records.tables import AuditRow, records_engine
from workflows.models import RecordBatch, TimelineEntry

ROSTER_ID = "_roster"
KIND = "roster_changed"
ACCESS_ID = "_access"
ACCESS_KIND = "access_refused"
_ATTEMPTS = 20


def record(
    actor: str,
    detail: str,
    url: str | None = None,
    at: datetime | None = None,
    *,
    stream: str = ROSTER_ID,
    kind: str = KIND,
) -> int:
    """Append one entry to ``stream`` (seq = its last + 1; by default a ``roster_changed`` entry of
    ``_roster``); return its seq.

    Two writers that pick the same seq cannot both win (the log is keyed by incident and seq):
    the loser reads the new tip and tries again.
    """
    eng = records_engine(url)
    for _ in range(_ATTEMPTS):
        with Session(eng) as s:
            last = s.exec(
                select(func.max(AuditRow.seq)).where(AuditRow.incident_id == stream)
            ).one()
        seq = 0 if last is None else int(last) + 1
        entry = TimelineEntry(
            seq=seq, at=at or datetime.now(UTC), actor=actor, kind=kind, detail=detail
        )
        batch = RecordBatch(
            incident_id=stream,
            workflow_id=stream.lstrip("_"),
            run_id=stream.lstrip("_"),
            playbook=stream.lstrip("_"),
            playbook_hash="",
            entries=[entry],
            snapshot=None,
        )
        if write_batch(batch, url)["written"] == 1:
            return seq
    raise RuntimeError(f"could not append to the {stream} audit log: too many concurrent writers")


def entries(url: str | None = None, stream: str = ROSTER_ID) -> list[AuditRow]:
    """The entries of ``stream`` (the roster's by default), oldest first."""
    with Session(records_engine(url)) as s:
        query = select(AuditRow).where(AuditRow.incident_id == stream).order_by(AuditRow.seq)  # type: ignore[arg-type]
        return list(s.exec(query).all())
