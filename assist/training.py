"""The team's closed incidents as training examples: the summary typed at open, the playbook the
incident ran and the severity it was opened with (what a person decided), read from the records.

The summary lives sealed in the audit log's ``opened`` entry (``records/sealed.py``); a purged
incident's no longer opens and is left out, as its data is meant to be gone.
"""

from __future__ import annotations

import json

from sqlmodel import Session, col, select

from assist.seed import Example
from encryption.keystore import DataKeyError
from records.sealed import SealedColumnError, opened_columns
from records.tables import AuditRow, IncidentRecord, records_engine


def closed_examples(url: str | None = None) -> list[Example]:
    """One example per closed incident whose opening is still readable, oldest first."""
    with Session(records_engine(url)) as s:
        rows = s.exec(
            select(IncidentRecord, AuditRow)
            .join(AuditRow, col(AuditRow.incident_id) == col(IncidentRecord.incident_id))
            .where(IncidentRecord.status == "closed", AuditRow.action == "opened")
            .order_by(col(IncidentRecord.opened_at))
        ).all()
    examples: list[Example] = []
    seen: set[str] = set()
    for record, row in rows:
        if record.incident_id in seen:
            continue
        seen.add(record.incident_id)
        try:
            detail, data = opened_columns(row)
        except (DataKeyError, SealedColumnError):  # purged, or a key this process lacks
            continue
        severity = str(json.loads(data or "{}").get("severity") or record.severity)
        if detail.strip():
            examples.append(Example(detail, record.playbook, severity))
    return examples
