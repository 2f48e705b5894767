"""Purging an incident (crypto-shredding): its data keys destroyed, the fact kept in the audit log.

An incident's Temporal payloads, its archived histories, its sealed records (``records/sealed.py``)
and every export ever made of them are sealed under the data key of its workflow id (its archive
children under their own). ``purge_incident`` destroys those keys, which makes every copy
unreadable at once, wherever it is, and appends a ``purged`` entry (who, when, reason; in clear, so
a reason must name no one) to the incident's own audit stream: the chain keeps the fact that the
incident existed and was purged, and still verifies (it hashes the sealed text).

Refused, one line each (``PurgeRefused``), while:

- the incident's workflow runs: its timers, the playbooks' preservation periods among them, are
  active (close it first);
- a legal hold applies (``records/holds.py``: NCMEC 1 year, §2703(f) 90 + 90 days, ``legal_hold``);
- its retention has not ended: ``CR_INCIDENT_RETENTION_DAYS`` after it closed (unset: none).

The keys destroyed: the incident's workflow id, and the archive child of every run, the run ids
taken from the archive table and from Temporal's runs of the workflow (never by a prefix of the
keystore's scopes: another incident's id may extend this one's). Processes that hold an unwrapped
key forget it within the keystore's cache time (5 minutes), this one at once.

Readers ask ``purged``: status, timeline, export and replay say ``incident X was purged at ... by
...: reason`` instead of failing on a key that is gone. Purging again finishes a purge interrupted
between destroying the keys and writing the entry, and reports the purge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from encryption.codec import shared_keys
from records.archive import archived_runs, decode_start, fetch_chain, history_of
from records.chain import write_batch
from records.holds import active_holds, field_history
from records.reconcile import SETTLED, reconcile_incident
from records.sealed import opened
from records.tables import AuditRow, IncidentRecord, records_engine, utc
from settings import Settings, get_settings
from workflows.models import IncidentInput, RecordBatch, TimelineEntry
from workflows.names import archive_workflow_id, workflow_id_for

PURGED_KIND = "purged"
REASON_MAX = 300


class PurgeRefused(Exception):
    """The incident may not be purged now; the message says why, in one line."""


@dataclass(frozen=True)
class Purge:
    """An incident's purge as its audit entry records it."""

    incident_id: str
    at: datetime
    by: str
    reason: str
    keys_destroyed: int = 0
    already: bool = False  # purged before this call

    def line(self) -> str:
        return (
            f"incident {self.incident_id} was purged at {self.at:%Y-%m-%d %H:%M:%S} UTC by "
            f"{self.by}: {self.reason}"
        )


class IncidentPurged(LookupError):
    """What a reader of a purged incident raises: its message is the purge, in one line."""

    def __init__(self, purge: Purge) -> None:
        super().__init__(purge.line())
        self.purge = purge


def _purge_of(row: AuditRow) -> Purge:
    data = json.loads(row.data or "{}")
    return Purge(row.incident_id, utc(row.at), row.actor, row.detail,
                 int(data.get("keys_destroyed", 0)))  # fmt: skip


def purged(incident_id: str, url: str | None = None) -> Purge | None:
    """The incident's purge, if it was purged."""
    with Session(records_engine(url)) as s:
        row = s.exec(
            select(AuditRow)
            .where(AuditRow.incident_id == incident_id, AuditRow.action == PURGED_KIND)
            .order_by(col(AuditRow.id).desc())
            .limit(1)
        ).first()
    return None if row is None else _purge_of(row)


def purged_ids(url: str | None = None) -> set[str]:
    """Every purged incident's id."""
    with Session(records_engine(url)) as s:
        query = select(AuditRow.incident_id).where(AuditRow.action == PURGED_KIND)
        return set(s.exec(query).all())


def check_not_purged(incident_id: str, url: str | None = None) -> None:
    """Raise ``IncidentPurged`` for a purged incident."""
    purge = purged(incident_id, url)
    if purge is not None:
        raise IncidentPurged(purge)


async def purge_incident(
    client: Client,
    incident_id: str,
    reason: str,
    actor: str,
    *,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> Purge:
    """Destroy the incident's data keys and record it (see the module's docstring); raises
    ``PurgeRefused`` with the reason it may not be purged now."""
    reason = " ".join(reason.split())[:REASON_MAX]
    if not reason:
        raise PurgeRefused("a purge needs a reason (--reason): it is kept in the audit log")
    now = utc(now or datetime.now(UTC))
    earlier = await asyncio.to_thread(purged, incident_id)
    if earlier is not None:
        destroyed = await _destroy(client, incident_id)
        return replace(earlier, already=True, keys_destroyed=destroyed)
    record = await asyncio.to_thread(_record, incident_id)
    if record is None:
        raise PurgeRefused(f"no incident {incident_id} in the records")
    await _refuse_running(client, incident_id)
    if record.status not in SETTLED:  # ended out of band and not marked yet: mark it first
        await reconcile_incident(client, incident_id)
        record = await asyncio.to_thread(_record, incident_id) or record
    _, store = shared_keys().get()
    if await asyncio.to_thread(store.destroyed_at, workflow_id_for(incident_id)) is None:
        _refuse_retention(record, now, settings or get_settings())
        holds = await _holds(client, record, now)
        if holds:
            raise PurgeRefused(f"incident {incident_id} is under legal hold: {'; '.join(holds)}")
    destroyed = await _destroy(client, incident_id)
    return await asyncio.to_thread(
        _append, Purge(incident_id, now, actor, reason, destroyed), record
    )


def _record(incident_id: str) -> IncidentRecord | None:
    with Session(records_engine()) as s:
        return s.get(IncidentRecord, incident_id)


async def _running(client: Client, workflow_id: str) -> bool:
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False  # gone from Temporal (retention, deleted): not running
        raise
    return described.status == WorkflowExecutionStatus.RUNNING


async def _refuse_running(client: Client, incident_id: str) -> None:
    workflow_id = workflow_id_for(incident_id)
    if await _running(client, workflow_id):
        raise PurgeRefused(
            f"incident {incident_id} is still running: its timers (preservation periods among "
            "them) are active; close it first"
        )
    for run in sorted(await _run_ids(client, incident_id)):
        if await _running(client, archive_workflow_id(workflow_id, run)):
            raise PurgeRefused(
                f"incident {incident_id} is still being archived (run {run}); try again when "
                "its archive is written"
            )


def _refuse_retention(record: IncidentRecord, now: datetime, settings: Settings) -> None:
    days = settings.incident_retention_days
    if days is None:
        return
    ended = utc(record.closed_at or record.updated_at)
    until = ended + timedelta(days=days)
    if now < until:
        raise PurgeRefused(
            f"incident {record.incident_id} is kept until {until:%Y-%m-%d %H:%M} UTC "
            f"(CR_INCIDENT_RETENTION_DAYS={days} after it ended at {ended:%Y-%m-%d %H:%M} UTC)"
        )


async def _holds(client: Client, record: IncidentRecord, now: datetime) -> list[str]:
    """The legal holds running at ``now``, from the start inputs and the audit rows."""
    incident_id = record.incident_id
    inputs = await asyncio.to_thread(_archived_inputs, incident_id)
    if not inputs:
        chain = None
        with contextlib.suppress(LookupError):  # Temporal no longer has it
            chain = await fetch_chain(client, workflow_id_for(incident_id), None, known={})
        starts = [decode_start(h.events[0]) for h in chain.histories] if chain else []
        inputs = [i for i in starts if i is not None]
    if not inputs:
        raise PurgeRefused(
            f"cannot tell whether a legal hold applies to incident {incident_id}: neither the "
            "archive nor Temporal has a history whose start input opens"
        )
    fields: dict[str, str] = {}
    for inp in inputs:
        fields.update(inp.fields)
        fields.update(inp.state.fields if inp.state is not None else {})
    rows = await asyncio.to_thread(_opened_rows, incident_id)
    return active_holds(field_history(record.opened_at, fields, rows), rows, now)


def _archived_inputs(incident_id: str) -> list[IncidentInput]:
    starts = [decode_start(history_of(r).events[0]) for r in archived_runs(incident_id)]
    return [s for s in starts if s is not None]


def _opened_rows(incident_id: str) -> list[AuditRow]:
    with Session(records_engine()) as s:
        query = select(AuditRow).where(AuditRow.incident_id == incident_id)
        rows = list(s.exec(query.order_by(col(AuditRow.id))).all())
    return [opened(r) for r in rows]


async def _run_ids(client: Client, incident_id: str) -> set[str]:
    """Every run of the incident's workflow: the archive's, and Temporal's while it has them."""
    runs = {r.run_id for r in await asyncio.to_thread(archived_runs, incident_id)}
    query = f"WorkflowId = '{workflow_id_for(incident_id)}'"
    try:
        async for execution in client.list_workflows(query):
            runs.add(execution.run_id)
    except RPCError:
        pass  # visibility unavailable: the archive's runs are the ones that hold data
    return runs


async def _destroy(client: Client, incident_id: str) -> int:
    """Destroy the workflow's key and every run's archive child's key; how many were live."""
    workflow_id = workflow_id_for(incident_id)
    runs = await _run_ids(client, incident_id)
    scopes = [workflow_id, *(archive_workflow_id(workflow_id, run) for run in sorted(runs))]
    _, store = shared_keys().get()
    return sum(await asyncio.to_thread(lambda: [store.destroy(s) for s in scopes]))


def _append(purge: Purge, record: IncidentRecord) -> Purge:
    """The ``purged`` entry, in clear (its key is gone), after the incident's last row; the
    purge as recorded (a concurrent purge's, if it recorded first)."""
    for _ in range(20):
        recorded = purged(purge.incident_id)
        if recorded is not None:
            return replace(recorded, keys_destroyed=purge.keys_destroyed, already=True)
        with Session(records_engine()) as s:
            query = select(func.max(AuditRow.seq)).where(AuditRow.incident_id == purge.incident_id)
            last = s.exec(query).one()
        entry = TimelineEntry(
            seq=max(record.last_seq, -1 if last is None else int(last)) + 1,
            at=purge.at,
            actor=purge.by,
            kind=PURGED_KIND,
            detail=purge.reason,
            data={"keys_destroyed": str(purge.keys_destroyed)},
        )
        batch = RecordBatch(
            incident_id=purge.incident_id,
            workflow_id=workflow_id_for(purge.incident_id),
            run_id=record.run_id,
            playbook=record.playbook,
            playbook_hash=record.playbook_hash,
            entries=[entry],
        )
        if write_batch(batch, clear=True)["written"] == 1:
            return purge
    raise RuntimeError(f"could not append the purge of {purge.incident_id} to the audit log")
