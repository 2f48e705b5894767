"""Recompute the audit log's hash chain, hold it against its signed checkpoints, and name the
first row that does not hold.

Every row's hash covers its content, its position (``id``), the previous row of its incident and
the previous row of the whole log; ``audit_head`` remembers the log's last row. So an edited row
fails its own hash, a deleted row leaves a gap (or, at the end, disagrees with the head), and a
moved row fails both its hash and its link to the row before it. Whoever can write the database can
recompute all of that, but cannot sign a checkpoint (``records/checkpoints.py``): every checkpoint's
signature is checked with the audit key, and the row at each checkpointed position must still be
the signed one. So an edited row with every later hash recomputed, a reordered pair rehashed and a
deleted tail with a rewritten head are each named too. Rows after the last checkpoint are reported
as not covered.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlmodel import Session, select

from records import audit_key, checkpoints
from records.chain import row_digest
from records.checkpoints import Checkpoint
from records.tables import GENESIS, AuditHead, AuditRow, audit_log_id, records_engine

BATCH = 2000


@dataclass(frozen=True)
class Break:
    row_id: int | None  # None: the break is at the end of the log
    incident_id: str | None
    seq: int | None
    reason: str
    scope: str = "end of log"  # what the break is about when it is at no row

    def describe(self) -> str:
        where = f"row {self.row_id}" if self.row_id is not None else self.scope
        if self.incident_id is not None:
            where += f" (incident {self.incident_id}, seq {self.seq})"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class Verdict:
    rows: int
    head_hash: str
    broken: Break | None
    checkpoints: int = 0  # signed checkpoints that hold
    key_ids: tuple[str, ...] = ()  # the keys that signed them
    notes: tuple[str, ...] = ()  # rows not covered by a checkpoint, unreadable checkpoint lines

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


Pins = dict[int, list[Checkpoint]]


def _pinned(row: AuditRow, pins: Pins) -> str | None:
    """Why ``row`` is not the row a checkpoint signed at its position, or None."""
    for cp in pins.get(row.id, ()):
        if (cp.incident_id, cp.seq, cp.hash) != (row.incident_id, row.seq, row.row_hash):
            return (
                f"rewritten: not the row signed at {cp.where()} (incident {cp.incident_id}, "
                f"seq {cp.seq}); edited, moved or replaced, and rehashed"
            )
    return None


def _walk(rows: Iterable[AuditRow], whole_log: bool, pins: Pins) -> tuple[int, str, Break | None]:
    count, prev_log = 0, GENESIS
    tips: dict[str, str] = {}
    for row in rows:
        expected = count + 1 if whole_log else None
        reason = check_row(
            row, expected, prev_log if whole_log else None, tips.get(row.incident_id, GENESIS)
        ) or _pinned(row, pins)
        if reason:
            return count, prev_log, _break(row, reason)
        count, prev_log = count + 1, row.row_hash
        tips[row.incident_id] = row.row_hash
    return count, prev_log, None


def earliest(*found: Break | None) -> Break | None:
    """The break at the lowest row (one at no row counts as the last)."""
    breaks = [b for b in found if b is not None]
    return min(breaks, key=lambda b: (b.row_id is None, b.row_id or 0)) if breaks else None


def signed(
    cps: list[Checkpoint], keys: audit_key.AuditKeys | None, log_id: str
) -> tuple[list[Checkpoint], Break | None]:
    """The checkpoints whose signature holds and that belong to this log, and the earliest break
    among the others (a forged or edited line, a foreign log, no key to check them with)."""
    if cps and keys is None:
        path = checkpoints.key_file()
        why = f"{len(cps)} checkpoints cannot be checked: no audit key file at {path}"
        return [], Break(None, None, None, why, scope="checkpoints")
    good, bad = [], []
    for cp in cps:
        assert keys is not None
        reason = keys.check(cp.key_id, cp.signed_bytes(), cp.sig)
        if reason is None and cp.log != log_id:
            reason = (
                f"it belongs to audit log {cp.log!r}, not this database's ({log_id!r}): the "
                f"log's id was rewritten, or another database shares {checkpoints.checkpoint_file()}"
            )
        if reason is None:
            good.append(cp)
        else:
            bad.append(Break(cp.id, cp.incident_id, cp.seq, f"{cp.where()}: {reason}"))
    return good, earliest(*bad)


def _pins(cps: list[Checkpoint]) -> Pins:
    pins: Pins = {}
    for cp in cps:
        pins.setdefault(cp.id, []).append(cp)
    return pins


def check_incident(rows: list[AuditRow], good: list[Checkpoint]) -> tuple[int, Break | None, int]:
    """One incident's rows (log order) against its own chain and its signed checkpoints: (rows
    that hold, the earliest break, rows at or before its last checkpoint)."""
    count, _, walk_break = _walk(rows, whole_log=False, pins=_pins(good))
    ids = {r.id for r in rows}
    missing = [
        Break(cp.id, cp.incident_id, cp.seq, f"signed at {cp.where()} but gone (deleted or moved)")
        for cp in good
        if cp.id not in ids
    ]
    last = max((cp.id for cp in good), default=0)
    return count, earliest(walk_break, *missing), sum(1 for r in rows if r.id <= last)


def _successor_links(s: Session, rows: list[AuditRow]) -> Break | None:
    """For one incident: the log row after each of its rows must point back at it."""
    for row in rows:
        nxt = s.get(AuditRow, row.id + 1)
        if nxt is not None and nxt.prev_log_hash != row.row_hash:
            return _break(nxt, f"does not follow row {row.id} (incident {row.incident_id})")
    return None


def uncovered_note(rows: int, covered: int, incident_id: str | None) -> list[str]:
    """The rows no signed checkpoint covers, as a note (empty when every row is covered)."""
    if rows <= covered:
        return []
    n, are = (f"{rows - covered} rows", "are") if rows - covered > 1 else ("1 row", "is")
    if incident_id is not None:
        return [
            f"note: {n} of incident {incident_id} {are} not covered by a checkpoint of its own "
            "(written before checkpoints existed, or after its last one); `incident audit "
            "verify` of the whole log covers them through the log chain once a later checkpoint "
            "exists"
        ]
    if covered == 0:
        return [
            f"note: {n} {are} not covered by a signed checkpoint (written before checkpoints "
            "existed); the next batch written covers every row before it"
        ]
    return [
        f"note: {n} after the last checkpoint (row {covered}) {are} not covered yet (a checkpoint "
        "being written, or one that could not be: see the workers' log)"
    ]


def _verify_incident(
    s: Session, incident_id: str, head: AuditHead, cps: list[Checkpoint], good: list[Checkpoint]
) -> tuple[int, Break | None, int]:
    """An incident's own chain, its checkpoints, and each of its rows' successor in the log."""
    rows = list(_rows(s, incident_id))
    if not rows and not cps:
        raise LookupError(f"no audit rows for incident {incident_id}")
    count, walk_break, covered = check_incident(rows, good)
    link_break = _successor_links(s, rows[: count + 1])
    if rows and rows[-1].id > head.last_id:
        link_break = link_break or _break(rows[-1], "lies beyond the recorded head of the log")
    return count, earliest(walk_break, link_break), covered


def _verify_log(s: Session, head: AuditHead, good: list[Checkpoint]) -> tuple[int, Break | None]:
    """The whole log: every row, every link, every checkpointed position, the head, the tail."""
    count, last_hash, broken = _walk(_rows(s, None), whole_log=True, pins=_pins(good))
    if broken is None and (count != head.last_id or last_hash != head.last_hash):
        broken = Break(
            None,
            None,
            None,
            f"the log ends at row {count} but its head records row {head.last_id} "
            "(rows deleted from the end, or the head rewritten)",
        )
    beyond = [cp for cp in good if cp.id > count]
    if broken is None and beyond:
        cp = max(beyond, key=lambda c: c.id)
        broken = Break(
            None,
            None,
            None,
            f"the log ends at row {count} but {cp.where()} signed row {cp.id} (incident "
            f"{cp.incident_id}, seq {cp.seq}): rows deleted from the end",
        )
    return count, broken


def verify(incident_id: str | None = None, url: str | None = None) -> Verdict:
    """Check the whole log (or one incident's rows and their links) against the head and the
    signed checkpoints. Raises LookupError for an incident the log has never seen."""
    cps, notes = checkpoints.read(incident_id=incident_id)
    try:
        keys, key_break = (audit_key.load(checkpoints.key_file()) if cps else None), None
    except audit_key.AuditKeyError as err:
        keys, key_break = None, Break(None, None, None, str(err), scope="checkpoints")
    with Session(records_engine(url)) as s:
        head = s.get(AuditHead, 1)
        assert head is not None
        good, sig_break = signed(cps, keys, audit_log_id(s))
        sig_break = key_break or sig_break
        if incident_id is not None:
            count, broken, covered = _verify_incident(s, incident_id, head, cps, good)
        else:
            count, broken = _verify_log(s, head, good)
            covered = min(count, max((cp.id for cp in good), default=0))
    return Verdict(
        rows=count,
        head_hash=head.last_hash,
        broken=earliest(broken, sig_break),
        checkpoints=len(good),
        key_ids=tuple(sorted({cp.key_id for cp in good})),
        notes=tuple(notes + ([] if broken else uncovered_note(count, covered, incident_id))),
    )
