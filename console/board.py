"""The console's lists, read from the records database: the incidents page, the approvals inbox,
the backlog's age and the live stream's "what changed since".

One query over the projection (``incident_records``) and the board (``incident_board``,
``records/board.py``) answers the incidents page for a thousand incidents, open or closed, with
no call to Temporal. Visibility is the API's (``api.authz.may_see``): a restricted playbook's
incidents are left out for anyone outside its group, in the query itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, func, or_
from sqlmodel import Session, col, select

from api import authz
from playbooks.loader import scan_playbooks
from records.tables import IncidentBoard, IncidentRecord, records_engine, utc
from reports.report import recorded_playbooks

STATUSES = ("open", "acknowledged", "playbook_complete", "closed")
SEVERITIES = ("sev0", "sev1", "sev2", "sev3")
PAGE = 1000


@dataclass(frozen=True)
class Filters:
    """The incidents page's filters, as its URL carries them (empty: any)."""

    status: str = "active"  # "active": anything not closed; "any"; or one status
    severity: str = ""
    playbook: str = ""
    breached: bool = False
    attention: bool = False
    owner: str = ""
    must_act: str = ""

    def query(self) -> dict[str, str]:
        """The non-default filters, for links that keep them."""
        out = {k: v for k, v in self.__dict__.items() if v and v is not True}
        out.pop("status", None)
        if self.status != "active":
            out["status"] = self.status
        return out | {k: "1" for k in ("breached", "attention") if getattr(self, k)}


@dataclass
class Row:
    """One incident as the incidents page lists it."""

    incident_id: str
    severity: str
    playbook: str
    status: str
    owner: str
    opened_at: datetime
    sla_breached: bool
    attention: bool = False
    steps: list[str] = field(default_factory=list)
    must_act: list[str] = field(default_factory=list)
    next_clock: str | None = None
    next_due_at: datetime | None = None
    next_warn_at: datetime | None = None
    approvals: list[dict[str, Any]] = field(default_factory=list)


_ON_DISK: dict[Path, tuple[float, set[str]]] = {}


def known_playbooks(playbooks_dir: Path, url: str, who: authz.Caller) -> list[str]:
    """The playbooks ``who`` may filter by: the valid ones on disk (linted again only when a
    file changed: linting them all takes a fifth of a second) and every recorded one."""
    stamp = max((p.stat().st_mtime for p in playbooks_dir.glob("*.yaml")), default=0.0)
    cached = _ON_DISK.get(playbooks_dir)
    if cached is None or cached[0] != stamp:
        cached = _ON_DISK[playbooks_dir] = (stamp, {lp.playbook.name for lp in
                                                    scan_playbooks(playbooks_dir)[0]})  # fmt: skip
    return sorted(p for p in cached[1] | recorded_playbooks(url) if authz.may_see(who, p))


def _hidden(who: authz.Caller) -> list[str]:
    return [pb for pb in authz.RESTRICTED_PLAYBOOKS if not authz.may_see(who, pb)]


def _where(f: Filters, who: authz.Caller) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if hidden := _hidden(who):
        where.append(col(IncidentRecord.playbook).not_in(hidden))
    if f.status == "active":
        where.append(col(IncidentRecord.status) != "closed")
    elif f.status in STATUSES:
        where.append(col(IncidentRecord.status) == f.status)
    if f.severity:
        where.append(col(IncidentRecord.severity) == f.severity)
    if f.playbook:
        where.append(col(IncidentRecord.playbook) == f.playbook)
    if f.breached:
        where.append(col(IncidentRecord.sla_breached).is_(True))
    if f.attention:
        where.append(col(IncidentBoard.attention).is_(True))
    if f.owner:
        where.append(col(IncidentRecord.owner) == f.owner)
    if f.must_act:
        where.append(col(IncidentBoard.must_act).contains(f",{f.must_act},"))
    return where


def _row(record: IncidentRecord, board: IncidentBoard | None) -> Row:
    row = Row(record.incident_id, record.severity, record.playbook, record.status, record.owner,
              utc(record.opened_at), record.sla_breached)  # fmt: skip
    if board is not None:
        row.attention = board.attention
        row.steps = [s for s in board.steps.split(",") if s]
        row.must_act = [m for m in board.must_act.split(",") if m]
        row.next_clock = board.next_clock
        row.next_due_at = utc(board.next_due_at)
        row.next_warn_at = utc(board.next_warn_at)
        row.approvals = json.loads(board.approvals or "[]")
    return row


def incidents(url: str, f: Filters, who: authz.Caller, limit: int = PAGE) -> list[Row]:
    """The incidents the filters select and ``who`` may see: the most urgent first (the nearest
    deadline, then the newest)."""
    query = (
        select(IncidentRecord, IncidentBoard)
        .join(
            IncidentBoard,
            col(IncidentBoard.incident_id) == col(IncidentRecord.incident_id),
            isouter=True,
        )  # fmt: skip
        .where(*_where(f, who))
        .order_by(
            col(IncidentBoard.next_due_at).is_(None),
            col(IncidentBoard.next_due_at),
            col(IncidentRecord.opened_at).desc(),
        )  # fmt: skip
        .limit(limit)
    )
    with Session(records_engine(url)) as s:
        return [_row(r, b) for r, b in s.exec(query).all()]


def record_row(url: str, incident_id: str) -> Row | None:
    """One incident's row from the records (None: the records never heard of it)."""
    with Session(records_engine(url)) as s:
        record = s.get(IncidentRecord, incident_id)
        board = s.get(IncidentBoard, incident_id)
    return None if record is None else _row(record, board)


@dataclass(frozen=True)
class Pending:
    """One decision waiting on the signed-in person's roles."""

    incident_id: str
    playbook: str
    severity: str
    step: str
    roles: list[str]
    requested_by: str
    due_at: datetime | None
    decided_by: list[str]


def inbox(url: str, who: authz.Caller) -> list[Pending]:
    """Every pending decision, across all incidents ``who`` may see, that one of their roles may
    take; the nearest deadline first."""
    roles = sorted(who.roles)
    if not roles:
        return []
    match = or_(*[col(IncidentBoard.must_act).contains(f",{r},") for r in roles])
    f = Filters(status="active")
    query = (
        select(IncidentRecord, IncidentBoard)
        .join(IncidentBoard, col(IncidentBoard.incident_id) == col(IncidentRecord.incident_id))
        .where(*_where(f, who), match, col(IncidentBoard.approvals) != "[]")
    )
    found: list[Pending] = []
    with Session(records_engine(url)) as s:
        for record, board in s.exec(query).all():
            for a in json.loads(board.approvals or "[]"):
                if set(a.get("roles", [])) & who.roles:
                    due = datetime.fromisoformat(a["due_at"]) if a.get("due_at") else None
                    found.append(Pending(record.incident_id, record.playbook, record.severity,
                                         a["step"], a["roles"], a.get("requested_by", ""), due,
                                         a.get("decided_by", [])))  # fmt: skip
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(found, key=lambda p: (p.due_at or far, p.incident_id))


def changed_since(url: str, since: datetime) -> tuple[datetime, list[tuple[str, str]]]:
    """Incidents whose records changed after ``since`` (at most 200: (id, playbook)), and the
    newest change; the live stream filters them per person."""
    with Session(records_engine(url)) as s:
        rows = s.exec(
            select(IncidentRecord.incident_id, IncidentRecord.playbook, IncidentRecord.updated_at)
            .where(col(IncidentRecord.updated_at) > since)
            .order_by(col(IncidentRecord.updated_at).desc())
            .limit(200)
        ).all()
    newest = max((utc(at) for _, _, at in rows), default=since)
    return newest, [(i, pb) for i, pb, _ in rows]


def latest_change(url: str) -> datetime:
    with Session(records_engine(url)) as s:
        newest = s.exec(select(func.max(IncidentRecord.updated_at))).one()
    return utc(newest) if newest is not None else datetime.fromtimestamp(0, UTC)


def backlog_ages(url: str, who: authz.Caller, now: datetime) -> list[tuple[str, float]]:
    """The open incidents' ages in hours, oldest first (incident id, hours)."""
    with Session(records_engine(url)) as s:
        rows = s.exec(
            select(IncidentRecord.incident_id, IncidentRecord.opened_at, IncidentRecord.playbook)
            .where(col(IncidentRecord.status) != "closed")
            .order_by(col(IncidentRecord.opened_at))
        ).all()
    return [(i, (now - utc(at)).total_seconds() / 3600) for i, at, pb in rows
            if authz.may_see(who, pb)]  # fmt: skip
