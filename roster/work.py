"""Declared work: the time people spend on something other than incidents (projects, training)
or away (leave), so the team lead sees reactive case work against project work
(``insights/capacity.py``) and coverage counts nobody on leave as on call (``insights/coverage.py``).

Every change is committed, then journaled like the rest of the roster (``roster/journal.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, col, select

from records.tables import utc
from roster import journal
from roster.service import RosterError, check_text, get_person
from roster.tables import DeclaredWork, roster_engine

KINDS = ("project", "training", "leave")


def add_work(
    person: str,
    kind: str,
    *,
    start: datetime,
    end: datetime,
    note: str = "",
    actor: str,
    url: str | None = None,
) -> DeclaredWork:
    """Book ``person`` on ``kind`` from ``start`` to ``end`` (naive times: UTC)."""
    if kind not in KINDS:
        raise RosterError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    if note:
        check_text(note, "note")
    start, end = utc(start), utc(end)
    if end <= start:
        raise RosterError(f"{kind} of {person}: it ends before it starts")
    if get_person(person, url=url) is None:
        raise RosterError(f"no person {person!r} on the roster")
    with Session(roster_engine(url)) as s:
        work = DeclaredWork(person=person, kind=kind, start=start, end=end, note=note,
                            created_at=datetime.now(UTC))  # fmt: skip
        s.add(work)
        s.commit()
        s.refresh(work)
    journal.record(
        actor, f"declared work {work.id}: {person} on {kind} from {start.isoformat()} to "
        f"{end.isoformat()}", url,
    )  # fmt: skip
    return work


def remove_work(work_id: int, *, actor: str, url: str | None = None) -> bool:
    with Session(roster_engine(url)) as s:
        work = s.get(DeclaredWork, work_id)
        if work is None:
            return False
        s.delete(work)
        s.commit()
    journal.record(actor, f"declared work {work_id} removed ({work.person}, {work.kind})", url)
    return True


def list_work(
    since: datetime | None = None, until: datetime | None = None, *, url: str | None = None
) -> list[DeclaredWork]:
    """Declared work overlapping [since, until) (every entry without bounds), by start."""
    query = select(DeclaredWork).order_by(col(DeclaredWork.start), col(DeclaredWork.id))
    if since is not None:
        query = query.where(col(DeclaredWork.end) > utc(since))
    if until is not None:
        query = query.where(col(DeclaredWork.start) < utc(until))
    with Session(roster_engine(url)) as s:
        return list(s.exec(query).all())
