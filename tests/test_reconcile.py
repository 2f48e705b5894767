"""Incidents ended out of band (terminated, deleted, failed, timed out, cancelled) are reconciled:
the record is marked, its running SLA clocks are cancelled, and one audit entry says who ended it,
when and why. Running incidents and incidents closed normally are never touched.

On the real dev server with the real records activities (stand-ins for the vendors) and a records
database per test (``tests/records_db.py``).
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext, redirect_stderr
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, col, select
from temporalio import workflow
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    WorkflowHandle,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from typer.testing import CliRunner

from activities import records
from audit.cli import audit_app
from audit.verify import verify
from records.chain import write_batch
from records.reconcile import ENTRY_KIND, ended_out_of_band, reconcile_incident, reconcile_open
from records.sealed import opened
from records.tables import AuditRow, IncidentRecord, SlaOutcome, records_engine
from reports.schedule import create_reconcile_schedule
from tests.conftest import StandIns
from tests.engine_support import commander, incident_input, playbook, start
from tests.records_db import batch, clock, entry, records_url, state
from workflows.archive import ArchiveIncidentWorkflow
from workflows.incident import IncidentWorkflow
from workflows.names import archive_workflow_id, workflow_id_for
from workflows.reconcile import SCHEDULE_ID, ReconcileWorkflow

pytestmark = pytest.mark.usefixtures(records_url.__name__)

PLAYBOOK = playbook(
    [
        {"id": "open-case", "kind": "action", "activity": "salesforce.upsert_case",
         "args": {"subject": "{{ summary }}"}},
        {"id": "legal-review", "kind": "approval", "roles": ["legal"], "sla": {"due": "4h"}},
    ],
    sla={"acknowledge": {"due": "15m"}, "resolve": {"due": "1d"}},
)  # fmt: skip


@asynccontextmanager
async def engine(client: Client) -> AsyncIterator[str]:
    """The incident workflow with the real records activities; stand-ins for every vendor."""
    queue = f"reconcile-{uuid.uuid4().hex[:8]}"
    stand_in = StandIns().activity()
    async with (
        Worker(client, task_queue=queue, activities=[*records.ACTIVITIES, stand_in],
               workflows=[IncidentWorkflow, ArchiveIncidentWorkflow, ReconcileWorkflow]),
        Worker(client, task_queue=f"{queue}-salesforce", activities=[stand_in]),
    ):  # fmt: skip
        yield queue


async def open_incident(client: Client, queue: str) -> tuple[str, WorkflowHandle[Any, Any]]:
    """Open an incident and wait until the records have caught up with its timeline."""
    inp = incident_input(PLAYBOOK)
    handle = await start(client, queue, inp)

    async def caught_up() -> None:
        while True:
            timeline = await handle.query(IncidentWorkflow.timeline)
            raw = (await handle.describe()).raw_description
            rec = _record(inp.incident_id)
            waiting = any(e.kind == "approval_requested" for e in timeline)
            flushed = rec is not None and rec.last_seq == timeline[-1].seq
            if waiting and flushed and not raw.pending_activities:
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(caught_up(), 20)
    return inp.incident_id, handle


def _record(incident_id: str) -> IncidentRecord | None:
    with Session(records_engine()) as s:
        return s.get(IncidentRecord, incident_id)


def _rows(incident_id: str) -> list[AuditRow]:
    """The incident's rows, their sealed columns opened (records/sealed.py)."""
    with Session(records_engine()) as s:
        query = select(AuditRow).where(AuditRow.incident_id == incident_id)
        return [opened(r) for r in s.exec(query.order_by(col(AuditRow.id))).all()]


def _keys(rows: list[AuditRow]) -> list[tuple[int, int, str]]:
    return [(r.id, r.seq, r.row_hash) for r in rows]


def _snapshot(incident_id: str) -> tuple[Any, ...]:
    """Everything the records hold of an incident, comparable."""
    rec = _record(incident_id)
    assert rec is not None
    outcomes = {n: o.model_dump() for n, o in _outcomes(incident_id).items()}
    return _keys(_rows(incident_id)), rec.model_dump(), outcomes


def _outcomes(incident_id: str) -> dict[str, SlaOutcome]:
    with Session(records_engine()) as s:
        query = select(SlaOutcome).where(SlaOutcome.incident_id == incident_id)
        return {o.clock: o for o in s.exec(query).all()}


def _audit_verify_passes(incident_id: str) -> None:
    assert verify().ok
    for args in (["verify"], ["verify", incident_id]):
        result = CliRunner().invoke(audit_app, args)
        assert result.exit_code == 0, result.output
        assert result.output.startswith("OK "), result.output


async def _gone(client: Client, workflow_id: str) -> None:
    """Wait until Temporal answers NOT_FOUND for the workflow (deletion is asynchronous)."""
    while True:
        try:
            await client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return
            raise
        await asyncio.sleep(0.1)


async def test_a_terminated_incident_is_marked_with_who_ended_it_and_why(dev_env):
    client = dev_env.client
    async with engine(client) as queue:
        incident_id, handle = await open_incident(client, queue)
        before = _rows(incident_id)
        assert _record(incident_id).status == "open"  # type: ignore[union-attr]
        await handle.terminate(reason="duplicate of R1-02\nopened by mistake")
        run_id = (await handle.describe()).run_id

        done = await reconcile_incident(client, incident_id)

    assert done is not None
    assert (done.status, done.temporal_status) == ("terminated", "TERMINATED")
    assert (done.actor, done.reason) == (client.identity, "duplicate of R1-02\nopened by mistake")
    assert (done.workflow_id, done.run_id, done.seq) == (handle.id, run_id, before[-1].seq + 1)

    rec = _record(incident_id)
    assert rec is not None and rec.status == "terminated" and rec.closed_at is None
    assert rec.last_seq == done.seq
    rows = _rows(incident_id)
    assert _keys(rows[: len(before)]) == _keys(before) and len(rows) == len(before) + 1
    last = rows[-1]
    assert (last.action, last.actor, last.seq, last.run_id) == (
        ENTRY_KIND, client.identity, done.seq, run_id)  # fmt: skip
    assert last.at == done.ended_at
    assert "\n" not in last.detail and last.detail == done.detail
    assert f"workflow {handle.id} (run {run_id[:8]}) terminated at " in last.detail
    assert f" by {client.identity}; reason: duplicate of R1-02 opened by mistake;" in last.detail
    assert last.detail.endswith("the incident was still open and is now terminated")
    data = json.loads(last.data)
    assert data["identity"] == client.identity
    assert data["reason"] == "duplicate of R1-02 opened by mistake"
    assert (data["temporal_status"], data["was"], data["run_id"]) == ("TERMINATED", "open", run_id)

    outcomes = _outcomes(incident_id)
    assert {n: o.outcome for n, o in outcomes.items()} == {
        "incident.acknowledge": "not_met", "incident.resolve": "not_met",
        "legal-review": "not_met"}  # fmt: skip
    assert all(o.stopped_at == done.ended_at and o.state == "stopped" for o in outcomes.values())
    _audit_verify_passes(incident_id)
    assert _keys([ended_out_of_band(incident_id)]) == _keys([last])  # type: ignore[list-item]

    # Idempotent: a second reconcile, and the sweep, write nothing.
    assert await reconcile_incident(client, incident_id) is None
    assert await reconcile_open(client) == []
    assert _keys(_rows(incident_id)) == _keys(rows)
    _audit_verify_passes(incident_id)


async def test_a_deleted_incident_is_marked_deleted_by_temporal(dev_env):
    client = dev_env.client
    async with engine(client) as queue:
        incident_id, handle = await open_incident(client, queue)
        run_id = (await handle.describe()).run_id
        await client.workflow_service.delete_workflow_execution(
            DeleteWorkflowExecutionRequest(
                namespace=client.namespace,
                workflow_execution=WorkflowExecution(workflow_id=handle.id),
            )
        )
        await asyncio.wait_for(_gone(client, handle.id), 20)
        before = _rows(incident_id)

        [done] = await reconcile_open(client)

    assert (done.incident_id, done.status) == (incident_id, "deleted")
    assert done.temporal_status == "NOT_FOUND"
    assert (done.actor, done.reason, done.ended_at, done.run_id) == ("temporal", None, None, run_id)
    assert _record(incident_id).status == "deleted"  # type: ignore[union-attr]
    rows = _rows(incident_id)
    assert len(rows) == len(before) + 1
    last = rows[-1]
    assert (last.action, last.actor, last.seq) == (ENTRY_KIND, "temporal", before[-1].seq + 1)
    assert f"workflow {handle.id} no longer exists in Temporal" in last.detail
    assert f"last recorded run {run_id[:8]}" in last.detail
    assert {o.outcome for o in _outcomes(incident_id).values()} == {"not_met"}
    _audit_verify_passes(incident_id)

    assert await reconcile_incident(client, incident_id) is None
    assert await reconcile_open(client) == []
    assert _keys(_rows(incident_id)) == _keys(rows)


async def test_running_and_normally_closed_incidents_are_left_alone(dev_env):
    client = dev_env.client
    async with engine(client) as queue:
        running_id, running = await open_incident(client, queue)
        closed_id, closed = await open_incident(client, queue)
        await closed.execute_update(IncidentWorkflow.close, commander(reason="resolved"))
        await closed.result()
        run_id = (await closed.describe()).run_id
        await client.get_workflow_handle(archive_workflow_id(closed.id, run_id)).result()
        before = {i: _snapshot(i) for i in (running_id, closed_id)}
        assert before[closed_id][1]["status"] == "closed"

        assert await reconcile_incident(client, running_id) is None
        assert await reconcile_incident(client, closed_id) is None
        assert await reconcile_open(client) == []
        assert await reconcile_incident(client, "no-such-incident") is None
        after = {i: _snapshot(i) for i in (running_id, closed_id)}
        await running.terminate(reason="test cleanup")
    assert after == before
    assert ended_out_of_band(running_id) is None


async def test_concurrent_passes_and_a_pass_after_a_crash_write_one_entry(dev_env):
    client = dev_env.client
    async with engine(client) as queue:
        incident_id, handle = await open_incident(client, queue)
        await handle.terminate(reason="spam")
        results = await asyncio.gather(
            reconcile_incident(client, incident_id), reconcile_open(client)
        )
    marked = [r for r in (results[0], *results[1]) if r is not None]
    assert len(marked) == 1
    rows = _rows(incident_id)
    assert [r.action for r in rows].count(ENTRY_KIND) == 1

    # The entry is written but the record not marked (a crash between the two, or an older
    # records batch that landed late): the next pass marks it and writes nothing new.
    with Session(records_engine()) as s:
        rec = s.get(IncidentRecord, incident_id)
        assert rec is not None
        rec.status = "acknowledged"
        s.add(rec)
        s.commit()
    again = await reconcile_incident(client, incident_id)
    assert again is not None and again.seq == marked[0].seq and again.detail == marked[0].detail
    assert _record(incident_id).status == "terminated"  # type: ignore[union-attr]
    assert _keys(_rows(incident_id)) == _keys(rows)
    _audit_verify_passes(incident_id)


# --- Other endings, with a stand-in workflow under an incident's workflow id ------------------


@workflow.defn(name="ReconcileStandIn", sandboxed=False)
class StandInWorkflow:
    @workflow.run
    async def run(self, mode: str) -> str:
        if mode == "fail":
            raise ApplicationError("playbook snapshot unreadable", non_retryable=True)
        if mode == "wait":
            await workflow.wait_condition(lambda: False)
        return "done"


def _seed_open_record(incident_id: str) -> int:
    """An open incident in the records (one pending clock); returns its last seq."""
    timeline = [entry(0, 0, "alice", "opened"), entry(1, 1, "system", "step_started")]
    clocks = {"incident.resolve": clock("incident.resolve", 60)}
    write_batch(batch(incident_id, timeline, state(timeline, clocks=clocks)))
    return 1


@pytest.mark.parametrize(
    ("mode", "status", "temporal_status", "by_client", "reason"),
    [
        ("complete", "ended_unclosed", "COMPLETED", False, "its records never showed"),
        ("fail", "failed", "FAILED", False, "playbook snapshot unreadable"),
        ("cancel", "cancelled", "CANCELED", True, None),
        ("timeout", "timed_out", "TIMED_OUT", False, "execution timeout expired"),
    ],
)
async def test_other_endings_are_named_with_their_reason(
    dev_env, mode, status, temporal_status, by_client, reason
):
    client = dev_env.client
    incident_id = f"stand-in-{uuid.uuid4().hex[:8]}"
    last_seq = _seed_open_record(incident_id)
    queue = f"reconcile-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=[StandInWorkflow],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):  # fmt: skip
        handle = await client.start_workflow(
            StandInWorkflow.run,
            "wait" if mode in ("cancel", "timeout") else mode,
            id=workflow_id_for(incident_id),
            task_queue=queue,
            execution_timeout=timedelta(seconds=1) if mode == "timeout" else None,
        )
        if mode == "cancel":
            await handle.cancel()
        with pytest.raises(Exception) if mode != "complete" else nullcontext():
            await handle.result()

    done = await reconcile_incident(client, incident_id)
    assert done is not None
    assert (done.status, done.temporal_status, done.seq) == (status, temporal_status, last_seq + 1)
    assert done.actor == (client.identity if by_client else "temporal")
    assert (done.reason is None) if reason is None else (reason in (done.reason or ""))
    assert _record(incident_id).status == status  # type: ignore[union-attr]
    assert _rows(incident_id)[-1].actor == done.actor
    assert _outcomes(incident_id)["incident.resolve"].outcome == "not_met"
    assert verify().ok
    assert await reconcile_incident(client, incident_id) is None


# --- The scheduled sweep -----------------------------------------------------------------------


async def test_the_schedule_runs_the_sweep_every_15_minutes(dev_env):
    client = dev_env.client
    async with engine(client) as queue:
        incident_id, handle = await open_incident(client, queue)
        await handle.terminate(reason="retention test")
        made = await create_reconcile_schedule(client, task_queue=queue)
        again = await create_reconcile_schedule(client, task_queue=queue)
        schedule = client.get_schedule_handle(SCHEDULE_ID)
        try:
            assert made.startswith(f"schedule {SCHEDULE_ID} created: every 15m")
            assert again.startswith(f"schedule {SCHEDULE_ID} updated: every 15m")
            described = await schedule.describe()
            assert [i.every for i in described.schedule.spec.intervals] == [timedelta(minutes=15)]
            assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
            action = described.schedule.action
            assert isinstance(action, ScheduleActionStartWorkflow)
            assert (action.workflow, action.task_queue) == ("ReconcileWorkflow", queue)

            await schedule.trigger()

            async def started() -> str:
                while not (actions := (await schedule.describe()).info.recent_actions):
                    await asyncio.sleep(0.1)
                return actions[0].action.workflow_id  # type: ignore[attr-defined]

            sweep = client.get_workflow_handle(await asyncio.wait_for(started(), 20))
            assert await asyncio.wait_for(sweep.result(), 30) == [f"{incident_id}: terminated"]
        finally:
            await schedule.delete()
    assert _record(incident_id).status == "terminated"  # type: ignore[union-attr]
    assert [r.action for r in _rows(incident_id)].count(ENTRY_KIND) == 1


def test_the_schedule_command_refuses_a_bad_interval_in_one_line():
    from starter import run

    for every, message in (
        ("30s", "error: --every: the reconcile sweep runs at most every 1m, not every 30s"),
        ("soon", "error: --every: not a duration: 'soon'"),
    ):
        err = io.StringIO()
        with redirect_stderr(err):
            code = run(["schedule", "reconcile", "--every", every])
        assert code == 1
        assert err.getvalue().startswith(message) and err.getvalue().count("\n") == 1


def test_the_worker_runs_the_sweep():
    from worker import WORKFLOWS

    assert ReconcileWorkflow in WORKFLOWS
    assert records.reconcile in records.ACTIVITIES
