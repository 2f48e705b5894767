"""`incident doctor` on the real dev server: an incident frozen for real by a signal its worker
cannot process is listed with the reason, refused a repair nobody confirmed, repaired by a reset
that leaves the signal out, and the repair is in its timeline. A nondeterminism error after a
code change is listed too, and a reset that cannot cure it says so instead of reporting success.

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
from workflows.models import CommanderRequest, ExternalEvent, IncidentInput, IncidentOutcome
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


@workflow.defn(name="IncidentWorkflow", sandboxed=False)
class ChangedIncident(IncidentWorkflow):
    """Today's incident after an incompatible code change: it now starts with a timer."""

    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentOutcome:
        await workflow.sleep(timedelta(hours=1))
        return await super().run(inp)


@pytest.fixture
def cli(dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The `incident` command pointed at the dev server, doctor mounted (until starter.py does)."""
    if not any(g.typer_instance is doctor_app for g in starter.app.registered_groups):
        starter.app.add_typer(doctor_app)
    monkeypatch.setenv("CR_TEMPORAL_ADDRESS", dev_env.client.service_client.config.target_host)
    monkeypatch.setenv("CR_TEMPORAL_NAMESPACE", dev_env.client.namespace)
    monkeypatch.setenv("CR_CLI_TIMEOUT_SECONDS", "6")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def worker(client: Client, queue: str, incident: type, **options: Any) -> Worker:
    return Worker(
        client,
        task_queue=queue,
        workflows=[incident, StandInArchiveWorkflow],
        activities=[StandIns().activity()],
        **options,
    )


@pytest.fixture
async def buggy(dev_env: WorkflowEnvironment, cli: None) -> Any:
    """A worker whose `event` handler has the bug, on a fresh queue."""
    queue = f"doctor-{uuid.uuid4().hex[:8]}"
    async with worker(dev_env.client, queue, EventBugIncident):
        yield queue


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


async def frozen_for_real(client: Client, incident_id: str, timeout: float = 15) -> None:
    """Wait until the workflow task has failed (not merely timed out) and attempt 2 is pending."""

    async def poll() -> None:
        while (
            frozen := await diagnose(client, incident_id)
        ) is None or frozen.cause == "timed_out":
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


async def test_doctor_lists_a_frozen_incident_and_repairs_it(dev_env, buggy):
    client = dev_env.client
    pb = playbook([{"id": "call", "kind": "wait_for", "event": "call_made"}])
    inp = incident_input(pb)
    iid = inp.incident_id
    handle = await client.start_workflow(
        IncidentWorkflow.run, inp, id=workflow_id_for(iid), task_queue=buggy
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
        # The note comes once the reset run has re-run its first task: never in it, ahead of an
        # entry the old run already recorded from that task (the Update would run first).
        note = timeline[-1]
        assert (note.kind, note.actor, note.role, note.seq) == (
            "note",
            "dana",
            "ic",
            result["note_seq"],
        )
        assert [e.kind for e in timeline] == ["opened", "step_started", "note"]
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


async def test_a_nondeterminism_error_is_listed_and_a_reset_that_cannot_help_says_so(dev_env, cli):
    """After an incompatible code change the reset's new run fails the same way: the repair
    says that the reset ran and that its note could not be recorded, and doctor still lists it."""
    client = dev_env.client
    queue = f"doctor-{uuid.uuid4().hex[:8]}"
    inp = incident_input(playbook([{"id": "call", "kind": "wait_for", "event": "call_made"}]))
    iid = inp.incident_id
    async with worker(client, queue, IncidentWorkflow, max_cached_workflows=0):
        handle = await client.start_workflow(
            IncidentWorkflow.run,
            inp,
            id=workflow_id_for(iid),
            task_queue=queue,
            task_timeout=timedelta(seconds=2),  # a task a stopped worker's last poll took
        )
        await actions.timeline(client, iid)  # the first task completed: the note takes another
        await actions.act(client, iid, "note", CommanderRequest(actor="alice", reason="ok"))
    try:  # the last good task now lies after commands that the changed code no longer issues
        async with worker(client, queue, ChangedIncident):
            await handle.signal("event", ExternalEvent(name="other"))  # a new task: full replay
            await frozen_for_real(client, iid)
            code, out, _ = await incident("doctor", "--json")
            row = {r["incident_id"]: r for r in json.loads(out)}[iid]
            assert code == 1 and row["cause"] == "non_deterministic_error", row
            assert "TMPRL1100" in row["reason"]

            code, out, err = await incident(
                "doctor", "repair", iid, "--reason", "after deploy", "--keep-signals", "--yes"
            )
            assert (code, out) == (1, "")
            assert err.startswith(f"error: incident {iid} was reset to event ")
            assert "but the repair note was not recorded" in err and err.count("\n") == 1
            await frozen_for_real(client, iid)
            code, out, _ = await incident("doctor", "--json")
            again = {r["incident_id"]: r for r in json.loads(out)}[iid]
            assert again["run_id"] != row["run_id"] and again["cause"] == "non_deterministic_error"
            assert [s["name"] for s in again["signals_after"]] == ["event"]  # kept, as asked
    finally:
        await handle.terminate("test over")
