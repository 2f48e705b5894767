"""records.append: audit rows, projection and SLA outcomes for a full incident, field by field.

The batches are built by hand the way the incident workflow sends them (new entries in seq order plus
a snapshot), delivered through Temporal's ``ActivityEnvironment`` with the redeliveries an activity
retry produces.
"""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from sqlmodel import Session, select
from temporalio.testing import ActivityEnvironment

from activities import records
from audit.verify import verify
from records import store as db
from records import tables
from records.chain import row_digest, write_batch
from records.sealed import is_sealed, opened, opened_columns, opened_resolution
from records.tables import (
    GENESIS,
    AuditRow,
    IncidentRecord,
    RecordsMeta,
    SlaOutcome,
)
from tests.records_db import at, batch, both_backends, clock, entry, records_url, state
from workflows.names import SIGNAL_EVENT

pytestmark = [both_backends, pytest.mark.usefixtures(records_url.__name__)]

TIMELINE = [
    entry(0, 0, "alice", "opened", role="ic", detail="opened from playbook account-takeover"),
    entry(1, 1, "system", "step_started", step="contain", sla="on_track", due_at=at(31)),
    entry(2, 8, "alice", "acknowledged", role="ic"),
    entry(3, 20, "bob", "approved", role="legal", step="legal-review", detail="lawful basis ok"),
    entry(4, 25, "system", "sla_warned", step="contain", sla="warned", due_at=at(31)),
    entry(5, 27, "carol", "escalated", role="mgr", detail="sev2 -> sev1", data={"to": "sev1"}),
    entry(6, 90, "alice", "closed", role="ic", detail="account restored"),
]


def _snapshot(upto: int, **kw):
    """The workflow's state after entry ``upto`` (the clocks as they stood then)."""
    contain = {"warn": 20, "warned": 25} if upto >= 4 else {"warn": 20}
    clocks = {
        "incident.acknowledge": clock("incident.acknowledge", 15, stopped=8 if upto >= 2 else None),
        "contain": clock("contain", 30, base=at(1), **contain, stopped=60 if upto >= 6 else None),
    }
    if upto >= 6:
        clocks["incident.resolve"] = clock("incident.resolve", 60, breached=60, stopped=90)
    values = {
        "status": "closed" if upto >= 6 else ("acknowledged" if upto >= 2 else "open"),
        "acknowledged_at": at(8) if upto >= 2 else None,
        "closed_at": at(90) if upto >= 6 else None,
        "resolution": "account restored" if upto >= 6 else None,
        "severity": "sev1" if upto >= 5 else "sev2",
        "severity_history": [(at(0), "sev2")] + ([(at(27), "sev1")] if upto >= 5 else []),
        "sla_breached": upto >= 6,
        "clocks": clocks,
        "runs": 2 if upto >= 4 else 1,
    }
    values.update(kw)
    return state(TIMELINE[: upto + 1], **values)


def _batches():
    """Four deliveries; the last two come from the second run (after continue-as-new)."""
    return [
        batch("ato-1", TIMELINE[0:2], _snapshot(1)),
        batch("ato-1", TIMELINE[2:4], _snapshot(3)),
        batch("ato-1", TIMELINE[4:6], _snapshot(5), run_id="run-2"),
        batch("ato-1", TIMELINE[6:7], _snapshot(6), run_id="run-2"),
    ]


async def _deliver_full_incident() -> list[dict[str, int]]:
    env = ActivityEnvironment()
    b = _batches()
    order = [b[0], b[1], b[1], b[2], b[0], b[3], b[3], b[1]]  # retries and late redeliveries
    return [await env.run(records.append, item) for item in order]


async def test_full_incident_audit_rows_match_timeline_field_by_field():
    results = await _deliver_full_incident()
    assert [r["written"] for r in results] == [2, 2, 0, 2, 0, 1, 0, 0]
    assert [r["skipped"] for r in results] == [0, 0, 2, 0, 2, 0, 1, 2]
    with Session(tables.records_engine()) as s:
        rows = list(s.exec(select(AuditRow).order_by(AuditRow.id)).all())
    assert [r.id for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert all(is_sealed(r.detail) and is_sealed(r.data) for r in rows)
    runs = ["run-1"] * 4 + ["run-2"] * 3
    for row, expected, run_id in zip(rows, TIMELINE, runs, strict=True):
        detail, data = opened_columns(row)
        assert row.incident_id == "ato-1"
        assert row.seq == expected.seq
        assert row.at == expected.at
        assert row.actor == expected.actor
        assert row.role == expected.role
        assert row.action == expected.kind
        assert row.step == expected.step
        assert detail == expected.detail
        assert row.sla == expected.sla
        assert row.due_at == expected.due_at
        assert json.loads(data) == expected.data
        assert (row.workflow_id, row.run_id) == ("incident-ato-1", run_id)
        assert (row.playbook, row.playbook_hash) == (
            "account-takeover",
            "sha256:account-takeover-v1",
        )
        assert row.row_hash == row_digest(row)  # over the sealed text, as stored
    assert rows[0].prev_log_hash == rows[0].prev_incident_hash == GENESIS
    for prev, row in zip(rows, rows[1:], strict=False):
        assert row.prev_log_hash == row.prev_incident_hash == prev.row_hash
    assert verify().ok


async def test_a_restamped_redelivery_keeps_the_first_time_and_the_workflow_adopts_it():
    """A workflow task retried (or replayed after a local activity moved its clock) stamps the
    same entry a few milliseconds later: the first write stands, the local activity's echo says
    when it was recorded, and the workflow takes that time so its timeline matches the records."""
    import dataclasses
    from datetime import datetime, timedelta

    from workflows.outbound import IncidentOutbound

    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, is_local=True)
    first = await env.run(records.append, batch("ato-1", TIMELINE[0:2], _snapshot(1)))
    later = [e.model_copy(update={"at": e.at + timedelta(milliseconds=8)}) for e in TIMELINE[0:3]]
    again = await env.run(records.append, batch("ato-1", later, _snapshot(2)))
    assert (first["written"], again["written"], again["skipped"]) == (2, 1, 2)
    echoed = [datetime.fromisoformat(e["at"]) for e in again["entries"]]
    assert echoed == [TIMELINE[0].at, TIMELINE[1].at, later[2].at]

    # Another entry under a stored seq (a run reset to before it) does not take its time.
    other = TIMELINE[1].model_copy(update={"kind": "note", "at": later[1].at})
    diverged = await env.run(records.append, batch("ato-1", [other], _snapshot(2)))
    assert datetime.fromisoformat(diverged["entries"][0]["at"]) == later[1].at

    wf = object.__new__(IncidentOutbound)
    wf.state = state(later)
    malformed = [{"seq": "1"}, {"seq": 99, "at": "2026-01-01T00:00:00+00:00"}, "x",
                 {"seq": 2, "at": "no"}]  # fmt: skip
    wf._adopt_recorded_times({"entries": [*again["entries"], *malformed]})
    wf._adopt_recorded_times(["not", "a", "result"])
    assert [e.at for e in wf.state.timeline] == [TIMELINE[0].at, TIMELINE[1].at, later[2].at]


async def test_projection_and_sla_outcomes_follow_the_latest_snapshot():
    await _deliver_full_incident()  # the late redelivery of batch 1 must not roll anything back
    final = _snapshot(6)
    with Session(tables.records_engine()) as s:
        rec = s.get(IncidentRecord, "ato-1")
        outcomes = {o.clock: o for o in s.exec(select(SlaOutcome)).all()}
    assert rec is not None
    assert (rec.playbook, rec.playbook_hash) == ("account-takeover", "sha256:account-takeover-v1")
    assert (rec.workflow_id, rec.run_id, rec.runs) == ("incident-ato-1", "run-2", 2)
    assert (rec.status, rec.severity, rec.owner) == ("closed", "sev1", "alice")
    assert json.loads(rec.severity_history) == [
        ["2026-03-02T09:00:00.000000+00:00", "sev2"],
        ["2026-03-02T09:27:00.000000+00:00", "sev1"],
    ]
    assert rec.opened_at == final.opened_at
    assert rec.acknowledged_at == final.acknowledged_at
    assert rec.closed_at == final.closed_at
    assert is_sealed(rec.resolution) and opened_resolution(rec) == "account restored"
    assert (rec.sla_breached, rec.escalated, rec.last_seq) == (True, True, 6)
    assert set(outcomes) == set(final.clocks)
    for name, expected in final.clocks.items():
        got = outcomes[name]
        assert got.scope == ("incident" if name.startswith("incident.") else "step")
        assert got.kind == expected.kind
        assert got.started_at == expected.started_at
        assert got.due_seconds == expected.due.total_seconds()
        assert got.warn_seconds == (expected.warn_at.total_seconds() if expected.warn_at else None)
        assert got.due_at == expected.due_at
        assert got.warned_at == expected.warned_at
        assert got.breached_at == expected.breached_at
        assert got.stopped_at == expected.stopped_at
        assert got.paused_seconds == expected.paused_total.total_seconds()
        assert got.state == expected.state
    assert {n: o.outcome for n, o in outcomes.items()} == {
        "incident.acknowledge": "met",
        "contain": "warned",
        "incident.resolve": "breached",
    }


async def test_two_incidents_keep_their_own_chain_and_the_log_chain():
    env = ActivityEnvironment()
    a = [entry(i, i, "alice", "note") for i in range(3)]
    b = [entry(i, i, "bob", "note") for i in range(2)]
    for item in (
        batch("a", a[:1], state(a[:1])),
        batch("b", b[:1], state(b[:1])),
        batch("a", a[1:], state(a)),
        batch("b", b[1:], state(b)),
    ):
        await env.run(records.append, item)
    with Session(tables.records_engine()) as s:
        rows = list(s.exec(select(AuditRow).order_by(AuditRow.id)).all())
    assert [(r.incident_id, r.seq) for r in rows] == [
        ("a", 0),
        ("b", 0),
        ("a", 1),
        ("a", 2),
        ("b", 1),
    ]
    by_id = {r.id: r for r in rows}
    assert by_id[2].prev_log_hash == by_id[1].row_hash
    assert by_id[2].prev_incident_hash == GENESIS
    assert by_id[3].prev_log_hash == by_id[2].row_hash
    assert by_id[3].prev_incident_hash == by_id[1].row_hash
    assert by_id[5].prev_incident_hash == by_id[2].row_hash
    assert by_id[5].prev_log_hash == by_id[4].row_hash


def test_concurrent_writers_extend_one_unbroken_chain():
    """Eight threads append at once (as activity slots do); the head lock keeps one chain."""
    tables.records_engine()

    def worker(n: int) -> None:
        for seq in range(5):
            item = entry(seq, seq, f"user{n}", "note")
            write_batch(batch(f"inc-{n}", [item], state([item])))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Session(tables.records_engine()) as s:
        ids = s.exec(select(AuditRow.id).order_by(AuditRow.id)).all()
    assert list(ids) == list(range(1, 41))
    verdict = verify()
    assert verdict.ok and verdict.rows == 40


def test_schema_version_is_recorded_and_a_newer_schema_refused():
    eng = tables.records_engine()
    with Session(eng) as s:
        meta = s.get(RecordsMeta, "schema_version")
        assert meta is not None and meta.value == str(tables.SCHEMA_VERSION) == "1"
        meta.value = "99"
        s.add(meta)
        s.commit()
    tables._ready.clear()
    with pytest.raises(RuntimeError, match="schema version 99 is newer"):
        tables.records_engine()


def test_each_backend_is_the_database_it_says(request, records_url):
    """The PostgreSQL half of this file really runs on PostgreSQL, in a database of its own, and
    its sessions are in UTC although the server's TimeZone is not (stack/postgres.py): an aware
    time bound to a ``timestamp without time zone`` keeps its UTC wall clock."""
    from sqlalchemy import text

    backend = request.node.callspec.params["records_url"]
    eng = tables.records_engine()
    assert eng.dialect.name == backend
    if backend == "postgresql":
        with eng.connect() as conn:
            assert conn.execute(text("select current_database()")).scalar() in records_url
            assert conn.execute(text("show timezone")).scalar() == "UTC"
            naive = conn.execute(text("select cast(:t as timestamp)"), {"t": at(0)}).scalar()
            assert naive == at(0).replace(tzinfo=None)
        assert db.driver_url("postgres://u@h/cr") == "postgresql+psycopg://u@h/cr"


async def test_a_real_incident_matches_its_records_archive_and_rebuilt_timeline(dev_env):
    """The workflow's own timeline, status and clocks against what the activities recorded, and
    the archived history (read back without Temporal) against the same timeline."""
    from temporalio.worker import Worker

    from audit.cli import ReplayFormat, replay_items
    from audit.export import export_incident
    from audit.replay import load_document, rebuild
    from records.archive import archived_runs
    from tests.conftest import StandIns
    from tests.engine_support import approval, commander, incident_input, playbook
    from workflows.archive import ArchiveIncidentWorkflow
    from workflows.incident import IncidentWorkflow
    from workflows.models import ExternalEvent
    from workflows.names import archive_workflow_id, workflow_id_for

    pb = playbook(
        [
            {"id": "open-case", "kind": "action", "activity": "salesforce.upsert_case",
             "args": {"subject": "{{ summary }}"}},
            {"id": "legal-review", "kind": "approval", "roles": ["legal"], "sla": {"due": "4h"}},
            {"id": "wait-reply", "kind": "wait_for", "event": "reply", "sla": {"due": "1d"}},
        ],
        sla={"acknowledge": {"due": "15m"}, "resolve": {"due": "1d"}},
    )  # fmt: skip
    inp = incident_input(pb)
    queue = f"records-{inp.incident_id}"
    stand_in = StandIns().activity()
    async with (
        Worker(dev_env.client, task_queue=queue, activities=[*records.ACTIVITIES, stand_in],
               workflows=[IncidentWorkflow, ArchiveIncidentWorkflow]),
        Worker(dev_env.client, task_queue=f"{queue}-salesforce", activities=[stand_in]),
    ):  # fmt: skip
        handle = await dev_env.client.start_workflow(
            IncidentWorkflow.run, inp, id=workflow_id_for(inp.incident_id), task_queue=queue
        )
        await handle.execute_update(IncidentWorkflow.acknowledge, commander(reason="mine"))
        while not (await handle.query(IncidentWorkflow.status)).pending_approvals:
            await asyncio.sleep(0.02)  # the approval starts once the case is opened
        await handle.execute_update(IncidentWorkflow.approve, approval("legal-review"))
        await handle.signal(SIGNAL_EVENT, ExternalEvent(name="reply", actor="agency"))
        # Every step done before the close, so every clock was met (a step still running at
        # close is "not met").
        while (await handle.query(IncidentWorkflow.status)).active_steps:
            await asyncio.sleep(0.02)
        await handle.execute_update(IncidentWorkflow.close, commander(reason="answered"))
        await handle.result()
        timeline = await handle.query(IncidentWorkflow.timeline)
        status = await handle.query(IncidentWorkflow.status)
        run_id = (await handle.describe()).run_id
        archive = dev_env.client.get_workflow_handle(archive_workflow_id(handle.id, run_id))
        archived = await archive.result()
    assert archived["archived_runs"] == [run_id]

    with Session(tables.records_engine()) as s:
        rows = list(s.exec(select(AuditRow).order_by(AuditRow.id)).all())
        rec = s.get(IncidentRecord, inp.incident_id)
        outcomes = {o.clock: o for o in s.exec(select(SlaOutcome)).all()}
    assert len(rows) == len(timeline) > 8
    for row, want in zip(map(opened, rows), timeline, strict=True):
        assert (row.seq, row.at, row.actor, row.role) == (
            want.seq,
            want.at,
            want.actor,
            want.role,
        )
        assert (row.action, row.step, row.detail) == (want.kind, want.step, want.detail)
        assert (row.sla, row.due_at, json.loads(row.data)) == (want.sla, want.due_at, want.data)
        assert (row.workflow_id, row.run_id) == (handle.id, run_id)
        assert row.playbook_hash == inp.playbook_hash
    assert verify().ok
    assert rec is not None
    assert (rec.status, rec.severity, rec.owner) == (status.status, status.severity, status.owner)
    assert (rec.opened_at, rec.acknowledged_at, rec.closed_at) == (
        status.opened_at, status.acknowledged_at, status.closed_at)  # fmt: skip
    assert (opened_resolution(rec), rec.last_seq) == ("answered", timeline[-1].seq)
    assert set(outcomes) == {c.name for c in status.clocks} == {
        "incident.acknowledge", "incident.resolve", "legal-review", "wait-reply"}  # fmt: skip
    for view in status.clocks:
        got = outcomes[view.name]
        assert (got.kind, got.state, got.outcome) == (view.kind, view.state, "met")
        assert got.paused_seconds == view.paused_total.total_seconds()

    [archived_row] = archived_runs(inp.incident_id)
    assert archived_row.playbook_hash == inp.playbook_hash
    document = await export_incident(inp.incident_id, client=None)  # the archive alone
    assert document["manifest"]["source"] == "archive"
    items = load_document(document, "archive")
    case = rebuild(inp.incident_id, [i.history for i in items])
    assert [e.model_dump() for e in case.timeline] == [e.model_dump() for e in timeline]
    assert [m.name for m in case.messages] == ["acknowledge", "approve", "event", "close"]
    code, text = await replay_items(items, ReplayFormat.text)
    assert code == 0 and f"hash {inp.playbook_hash}" in text


async def test_a_stopping_worker_ends_the_archivers_wait_for_the_close(dev_env):
    """The archiver waits (up to a minute) for its incident run to close; a worker shutting down
    ends that wait at once, with the retryable "still running", so the next worker takes the
    archive over and the stop is not held (a local activity in flight holds a worker's stop)."""
    import time
    import uuid

    from temporalio.exceptions import ApplicationError

    from workflows.archive import ArchiveRequest

    handle = await dev_env.client.start_workflow(  # on a queue no worker polls: it stays open
        "NobodyRunsThis", id=f"open-{uuid.uuid4().hex[:8]}", task_queue="nobody-polls"
    )
    request = ArchiveRequest(incident_id="INC-X", workflow_id=handle.id,
                             run_id=handle.result_run_id or "")  # fmt: skip
    env = ActivityEnvironment(client=dev_env.client)
    started = time.monotonic()
    archiving = asyncio.ensure_future(env.run(records.archive_history, request))
    await asyncio.sleep(0.5)
    assert not archiving.done()  # waiting for the close
    env.worker_shutdown()
    with pytest.raises(ApplicationError) as refused:
        await asyncio.wait_for(archiving, 10)
    assert refused.value.type == "IncidentStillRunning" and not refused.value.non_retryable
    assert time.monotonic() - started < 10  # not the minute's wait
    await handle.terminate("test over")
