"""An incident's timeline read back from the audit log: the part a long incident's current run no
longer carries (continue-as-new keeps only the latest entries; see ``IncidentState.timeline_offset``),
its sealed columns opened (``records/sealed.py``).
"""

from __future__ import annotations

import json

from sqlmodel import Session, col, select

from records.sealed import opened_columns
from records.tables import AuditRow, records_engine
from workflows.models import TimelineEntry


def entries_before(incident_id: str, seq: int, url: str | None = None) -> list[TimelineEntry]:
    """The incident's recorded entries with a sequence number below ``seq``, in order."""
    with Session(records_engine(url)) as s:
        rows = s.exec(
            select(AuditRow)
            .where(AuditRow.incident_id == incident_id, col(AuditRow.seq) < seq)
            .order_by(col(AuditRow.seq))
        ).all()
    return [_entry(row, *opened_columns(row)) for row in rows]


def _entry(row: AuditRow, detail: str, data: str) -> TimelineEntry:
    return TimelineEntry(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        role=row.role,
        kind=row.action,
        step=row.step,
        detail=detail,
        sla=row.sla,  # type: ignore[arg-type]
        due_at=row.due_at,
        data=json.loads(data),
    )
