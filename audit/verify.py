"""Recompute the audit log's hash chain and name the first row that does not hold.

Every row's hash covers its content, its position (``id``), the previous row of its incident and
the previous row of the whole log; ``audit_head`` remembers the log's last row. So an edited row
fails its own hash, a deleted row leaves a gap (or, at the end, disagrees with the head), and a
moved row fails both its hash and its link to the row before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlmodel import Session, select

from records.chain import row_digest
from records.tables import GENESIS, AuditHead, AuditRow, records_engine

BATCH = 2000


@dataclass(frozen=True)
class Break:
    row_id: int | None  # None: the break is at the end of the log
    incident_id: str | None
    seq: int | None
    reason: str

    def describe(self) -> str:
        where = f"row {self.row_id}" if self.row_id is not None else "end of log"
        if self.incident_id is not None:
            where += f" (incident {self.incident_id}, seq {self.seq})"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class Verdict:
    rows: int
    head_hash: str
    broken: Break | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def _rows(s: Session, incident_id: str | None) -> Iterator[AuditRow]:
    """All rows in log order, read in batches so a large log does not sit in memory."""
    last = 0
    while True:
        query = select(AuditRow).where(AuditRow.id > last)
        if incident_id is not None:
            query = query.where(AuditRow.incident_id == incident_id)
        page = list(s.exec(query.order_by(AuditRow.id).limit(BATCH)).all())  # type: ignore[arg-type]
        yield from page
        if len(page) < BATCH:
            return
        last = page[-1].id


def _break(row: AuditRow, reason: str) -> Break:
    return Break(row.id, row.incident_id, row.seq, reason)


def check_row(
    row: AuditRow, expected_id: int | None, prev_log: str | None, prev_incident: str
) -> str | None:
    """The reason ``row`` breaks the chain, or None. ``None`` expectations are not checked."""
    hash_ok = row_digest(row) == row.row_hash
    if expected_id is not None and row.id > expected_id:
        missing = f"row {expected_id}" if row.id == expected_id + 1 else f"rows {expected_id}.."
        return f"{missing} before it is missing (deleted)"
    log_ok = prev_log is None or row.prev_log_hash == prev_log
    incident_ok = row.prev_incident_hash == prev_incident
    if not hash_ok and not (log_ok and incident_ok):
        return "moved or replaced: neither its hash nor its link to the previous row holds"
    if not hash_ok:
        return "edited: its content no longer matches its hash"
    if not log_ok:
        return f"does not follow row {row.id - 1} of the log (that row was rewritten or moved)"
    if not incident_ok:
        return "does not follow the previous row of its incident (a row was removed or rewritten)"
    return None


def _walk(rows: Iterable[AuditRow], whole_log: bool) -> tuple[int, str, Break | None]:
    count, prev_log = 0, GENESIS
    tips: dict[str, str] = {}
    for row in rows:
        expected = count + 1 if whole_log else None
        reason = check_row(
            row, expected, prev_log if whole_log else None, tips.get(row.incident_id, GENESIS)
        )
        if reason:
            return count, prev_log, _break(row, reason)
        count, prev_log = count + 1, row.row_hash
        tips[row.incident_id] = row.row_hash
    return count, prev_log, None


def _successor_links(s: Session, rows: list[AuditRow]) -> Break | None:
    """For one incident: the log row after each of its rows must point back at it."""
    for row in rows:
        nxt = s.get(AuditRow, row.id + 1)
        if nxt is not None and nxt.prev_log_hash != row.row_hash:
            return _break(nxt, f"does not follow row {row.id} (incident {row.incident_id})")
    return None


def _verify_incident(s: Session, incident_id: str, head: AuditHead) -> tuple[int, Break | None]:
    """An incident's own chain plus each of its rows' successor in the log; earliest break wins."""
    rows = list(_rows(s, incident_id))
    count, _, walk_break = _walk(rows, whole_log=False)
    link_break = _successor_links(s, rows[: count + 1])
    if rows and rows[-1].id > head.last_id:
        link_break = link_break or _break(rows[-1], "lies beyond the recorded head of the log")
    found = [b for b in (walk_break, link_break) if b is not None]
    return count, min(found, key=lambda b: b.row_id or 0) if found else None


def verify(incident_id: str | None = None, url: str | None = None) -> Verdict:
    """Check the whole log (or one incident's rows and their links) against the head."""
    with Session(records_engine(url)) as s:
        head = s.get(AuditHead, 1)
        assert head is not None
        if incident_id is not None:
            count, broken = _verify_incident(s, incident_id, head)
            return Verdict(rows=count, head_hash=head.last_hash, broken=broken)
        count, last_hash, broken = _walk(_rows(s, None), whole_log=True)
        if broken is None and (count != head.last_id or last_hash != head.last_hash):
            broken = Break(
                None,
                None,
                None,
                f"the log ends at row {count} but its head records row {head.last_id} "
                "(rows deleted from the end, or the head rewritten)",
            )
        return Verdict(rows=count, head_hash=head.last_hash, broken=broken)
