"""A close that lands in the same workflow task as the result of the step it interrupts.

The SDK applies an activation's Updates (and checks conditions) before it resolves activities, so
the close wakes ``run()``, which cancels the walk while the step's activity looks in flight; the
SDK only asks the server to cancel it, and the result in the same activation completes the step
normally, the walk's cancellation spent. The walk used to go on to the next step and ``run()``
waited for it for ever: closed in status, never flushed, archived or told to a parent. Forced
here on the dev server by stopping the incident's worker while the step runs and sending the
close and the step's result before a new worker takes the task that holds both.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.worker import Replayer, Worker

from activities.records import start_archive
from connection import DATA_CONVERTER
from tests.engine_support import (
    GatedStandIns,
    commander,
    incident_input,
    kinds,
    playbook,
)
from tests.engine_workflows import StandInArchiveWorkflow
from workflows.incident import WALK_STOPS, IncidentWorkflow
from workflows.names import workflow_id_for

CASE = "salesforce.upsert_case"


async def _until(check: Any, what: str, timeout: float = 20) -> None:
    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def _has_event(handle: Any, event_type: int) -> bool:
    return any([e.event_type == event_type async for e in handle.fetch_history_events()])


async def test_a_close_that_lands_with_the_steps_result_ends_the_walk(dev_env):
    stand_ins = GatedStandIns()
    stand_ins.hold(CASE)
    pb = playbook([
        {"id": "open-case", "kind": "action", "activity": CASE, "args": {}},
        {"id": "wait-reply", "kind": "wait_for", "event": "reply", "sla": {"due": "1d"}},
    ])  # fmt: skip
    inp = incident_input(pb)
    queue = f"close-race-{uuid.uuid4().hex[:8]}"

    def incident_worker() -> Worker:
        return Worker(dev_env.client, task_queue=queue,
                      workflows=[IncidentWorkflow, StandInArchiveWorkflow],
                      activities=[start_archive, stand_ins.activity()])  # fmt: skip

    async with Worker(dev_env.client, task_queue=f"{queue}-salesforce",
                      activities=[stand_ins.activity()]):  # fmt: skip
        async with incident_worker():
            handle = await dev_env.client.start_workflow(
                IncidentWorkflow.run, inp, id=workflow_id_for(inp.incident_id), task_queue=queue
            )

            async def case_running() -> bool:
                return stand_ins.started.get(CASE, 0) > 0

            await _until(case_running, "the case step to start")
        # Nobody takes the incident's workflow tasks now: the close waits in one, and the
        # step's result joins it.
        close = asyncio.create_task(
            handle.execute_update(IncidentWorkflow.close, commander(reason="done"))
        )

        async def task_pending() -> bool:
            return (await handle.describe()).raw_description.HasField("pending_workflow_task")

        await _until(task_pending, "the close to wait in a workflow task")
        stand_ins.release(CASE)
        completed = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        await _until(lambda: _has_event(handle, completed), "the case step's result")
        async with incident_worker():
            await asyncio.wait_for(close, 20)
            outcome = await asyncio.wait_for(handle.result(), 20)
            timeline = await handle.query(IncidentWorkflow.timeline)
    assert outcome.status == "closed"
    history = await handle.fetch_history()
    markers = [e.marker_recorded_event_attributes for e in history.events
               if e.HasField("marker_recorded_event_attributes")]  # fmt: skip
    patches = [
        m.details["patch-data"].payloads[0].data for m in markers if "patch-data" in m.details
    ]
    assert any(WALK_STOPS.encode() in p for p in patches)  # this run took the fix, and says so
    replayer = Replayer(workflows=[IncidentWorkflow], data_converter=DATA_CONVERTER)
    await replayer.replay_workflow(history)  # and replays with it
    assert "step_completed" in kinds(timeline)  # the case was opened: its step says so
    assert not [e for e in timeline if e.step == "wait-reply"]  # and the walk went no further
    assert kinds(timeline).count("closed") == 1
