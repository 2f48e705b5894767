"""`incident doctor` on the real dev server: an incident frozen for real by a signal its worker
cannot process is listed with the reason, refused a repair nobody confirmed, repaired by a reset
that leaves the signal out, and the repair is in its timeline.

The worker runs today's ``IncidentWorkflow`` with one bug planted under the same workflow name:
its ``event`` signal handler raises a plain ``RuntimeError``, which fails the workflow task (the
real handlers refuse malformed signals since issue 8 item 1, so a bad payload alone no longer
freezes an incident). The commands run through ``starter.run``, exactly as `incident ...` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import starter
from incidents import actions
from incidents.doctor import diagnose, doctor_app
from settings import get_settings
from tests.conftest import StandIns
from tests.engine_support import incident_input, playbook
from tests.engine_workflows import StandInArchiveWorkflow
from workflows.incident import IncidentWorkflow
from workflows.models import ExternalEvent, IncidentInput, IncidentOutcome
from workflows.names import workflow_id_for

BUG = "event handler bug: cannot process this event"


@workflow.defn(name="IncidentWorkflow", sandboxed=False)
class EventBugIncident(IncidentWorkflow):
    """Today's incident, except that every `event` signal fails the workflow task."""

    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentOutcome:
        return await super().run(inp)

    @workflow.signal(name="event")
    def event(self, payload: Any) -> None:
        raise RuntimeError(BUG)


@pytest.fixture
async def worker(dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The buggy worker on a fresh queue; the CLI pointed at the dev server; doctor mounted."""
    if not any(g.typer_instance is doctor_app for g in starter.app.registered_groups):
        starter.app.add_typer(doctor_app)  # until starter.py mounts it
    monkeypatch.setenv("CR_TEMPORAL_ADDRESS", dev_env.client.service_client.config.target_host)
    monkeypatch.setenv("CR_TEMPORAL_NAMESPACE", dev_env.client.namespace)
    get_settings.cache_clear()
    queue = f"doctor-{uuid.uuid4().hex[:8]}"
    async with Worker(
        dev_env.client,
        task_queue=queue,
        workflows=[EventBugIncident, StandInArchiveWorkflow],
        activities=[StandIns().activity()],
    ):
        yield queue
    get_settings.cache_clear()


async def incident(*args: str, stdin: str = "") -> tuple[int, str, str]:
    """Run `incident ARGS` in a thread (it runs its own event loop): exit code, stdout, stderr."""

    def run() -> tuple[int, str, str]:
        stdout, stderr = io.StringIO(), io.StringIO()
        saved = sys.stdin
        sys.stdin = io.StringIO(stdin)
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = starter.run(list(args))
        finally:
            sys.stdin = saved
        return code, stdout.getvalue(), stderr.getvalue()

    return await asyncio.to_thread(run)


async def frozen_for_real(client: Client, incident_id: str, timeout: float = 10) -> None:
    """Wait until the workflow task has failed at least twice (attempt 2 is pending)."""

    async def poll() -> None:
        while True:
            desc = await client.get_workflow_handle(workflow_id_for(incident_id)).describe()
            pending = desc.raw_description.pending_workflow_task
            if desc.raw_description.HasField("pending_workflow_task") and pending.attempt > 1:
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


async def test_doctor_lists_a_frozen_incident_and_repairs_it(dev_env, worker):
    client = dev_env.client
    pb = playbook([{"id": "call", "kind": "wait_for", "event": "call_made"}])
    inp = incident_input(pb)
    iid = inp.incident_id
    handle = await client.start_workflow(
        IncidentWorkflow.run, inp, id=workflow_id_for(iid), task_queue=worker
    )
    try:
        await actions.timeline(client, iid)  # healthy: the first task completed
        assert await diagnose(client, iid) is None
        code, _, err = await incident("doctor", "repair", iid, "--reason", "x", "--yes")
        assert (code, err) == (1, f"error: incident {iid} is not frozen (its workflow task is "
                                  "not failing): nothing to repair\n")  # fmt: skip

        # Freeze it: the signal is in history, and every workflow task after it fails.
        await handle.signal("event", ExternalEvent(name="call_made", actor="vendor"))
        await frozen_for_real(client, iid)
        with pytest.raises((WorkflowQueryFailedError, RPCError)):  # failed state, or no answer
            await handle.query(IncidentWorkflow.status, rpc_timeout=timedelta(seconds=2))

        code, out, err = await incident("doctor", "--json")
        assert code == 1, err  # frozen incidents found
        rows = {row["incident_id"]: row for row in json.loads(out)}
        row = rows[iid]
        assert row["attempts"] > 1
        assert row["cause"] == "workflow_worker_unhandled_failure"
        assert BUG in row["reason"] and "RuntimeError" in row["reason"]
        assert row["failure_followed_signal"] is True
        assert [s["name"] for s in row["signals_after"]] == ["event"]
        good = row["last_good_event_id"]
        assert 0 < good < row["signals_after"][0]["event_id"] < row["failed_event_id"]

        code, out, _ = await incident("doctor")
        assert code == 1 and iid in out and "RuntimeError" in out and "attempts" in out

        # Unconfirmed (no "y" on stdin): the prompt says what would happen, nothing changes.
        code, out, err = await incident(
            "doctor", "repair", iid, "--reason", "bad event", stdin="n\n"
        )
        assert (code, out) == (1, "")
        assert f"reset to event {good}" in err and "dropped (not replayed)" in err
        assert err.endswith("error: not confirmed: nothing changed (--yes skips the prompt)\n")
        assert (await diagnose(client, iid)) is not None

        code, out, err = await incident(
            "doctor", "repair", iid, "--reason", "vendor sent a bad event", "--yes",
            "--as", "dana", "--json",
        )  # fmt: skip
        assert code == 0, err
        result = json.loads(out)
        assert result["reset_to_event"] == good and result["excluded_signals"] == 1
        assert result["new_run_id"] != row["run_id"]

        # Healthy again: it answers queries, the note says who repaired what and why, and the
        # offending signal is not in the new run.
        status = await actions.status(client, iid)
        assert [s.step_id for s in status.active_steps] == ["call"]
        timeline = await actions.timeline(client, iid)
        note = timeline[-1]
        assert (note.kind, note.actor, note.role, note.seq) == (
            "note",
            "dana",
            "ic",
            result["note_seq"],
        )
        assert note.detail == (
            f"doctor: reset to event {good}, excluding 1 signal: vendor sent a bad event"
        )
        assert "event" not in [e.kind for e in timeline]
        new_run = client.get_workflow_handle(workflow_id_for(iid), run_id=result["new_run_id"])
        signaled = [
            e
            async for e in new_run.fetch_history_events()
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        ]
        assert signaled == []
        code, out, _ = await incident("doctor")
        assert iid not in out
        code, out, err = await incident("doctor", "repair", iid, "--reason", "again", "--yes")
        assert code == 1 and "is not frozen" in err and err.count("\n") == 1

        # Refusals name what is wrong, in one line.
        code, _, err = await incident("doctor", "repair", "no-such", "--reason", "x", "--yes")
        assert (code, err) == (1, "error: incident no-such not found\n")
    finally:
        await client.get_workflow_handle(workflow_id_for(iid)).terminate("test over")
    code, _, err = await incident("doctor", "repair", iid, "--reason", "x", "--yes")
    assert (code, err) == (1, f"error: incident {iid} is closed (terminated): nothing to repair\n")
