"""Helpers for engine tests: build a playbook and an incident input from plain dicts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from playbooks.schema import Playbook
from tests.conftest import Call, Harness, StandIns
from workflows.incident import IncidentWorkflow
from workflows.models import (
    ActionResult,
    ApprovalRequest,
    CommanderRequest,
    IncidentInput,
    IncidentOutcome,
)
from workflows.names import (
    ARCHIVE_START_ACTIVITY,
    RECORDS_ACTIVITY,
    archive_workflow_id,
    workflow_id_for,
)


def playbook(steps: list[dict[str, Any]], **extra: Any) -> Playbook:
    return Playbook.model_validate(
        {"name": "test-playbook", "version": 1, "title": "Test", "steps": steps, **extra}
    )


def incident_input(pb: Playbook, **extra: Any) -> IncidentInput:
    values: dict[str, Any] = {
        "incident_id": uuid.uuid4().hex[:10],
        "playbook": pb,
        "playbook_hash": "sha256:test",
        "severity": "sev1",
        "summary": "test incident",
        "opened_by": "alice",
        "local_calls": True,  # the test workers keep the SDK's default workflow cache
    }
    values.update(extra)
    return IncidentInput(**values)


async def start(
    client: Any, task_queue: str, inp: IncidentInput, **options: Any
) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        IncidentWorkflow.run,
        inp,
        id=workflow_id_for(inp.incident_id),
        task_queue=task_queue,
        **options,
    )


def approval(
    step: str, actor: str = "lena", role: str = "legal", reason: str = "ok"
) -> ApprovalRequest:
    return ApprovalRequest(step_id=step, actor=actor, role=role, reason=reason)


def commander(actor: str = "alice", **extra: Any) -> CommanderRequest:
    return CommanderRequest(actor=actor, **extra)


def kinds(timeline: list[Any]) -> list[str]:
    return [e.kind for e in timeline]


async def wait_for_run_status(
    handle: WorkflowHandle[Any, Any], wanted: Any, timeout: float = 20
) -> None:
    """Poll ``describe`` until the run's status is ``wanted`` (a condition, never a fixed sleep)."""
    import asyncio

    async def poll() -> None:
        while (await handle.describe()).status != wanted:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def wait_for_status(
    handle: WorkflowHandle[Any, Any], predicate: Any, timeout: float = 20
) -> Any:
    """Poll the status query until ``predicate(status)`` holds (a condition, never a fixed sleep)."""
    import asyncio

    async def poll() -> Any:
        while True:
            status = await handle.query(IncidentWorkflow.status)
            if predicate(status):
                return status
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), timeout)


def awaiting(step: str) -> Any:
    return lambda s: any(a.step_id == step for a in s.pending_approvals)


# --- Added for the engine suites (tests/test_engine_*.py) -----------------------------------


def entries(timeline: list[Any], kind: str, step: str | None = None) -> list[Any]:
    """Timeline entries of ``kind`` (and of ``step``, if given), in order."""
    return [e for e in timeline if e.kind == kind and (step is None or e.step == step)]


def one(timeline: list[Any], kind: str, step: str | None = None) -> Any:
    """The single timeline entry of ``kind`` (for ``step``); fails if there are none or several."""
    found = entries(timeline, kind, step)
    assert len(found) == 1, f"expected one {kind} for {step}, got {kinds(timeline)}"
    return found[0]


async def wait_for_timeline(
    handle: WorkflowHandle[Any, Any], predicate: Any, timeout: float = 20
) -> list[Any]:
    """Poll the timeline query until ``predicate(timeline)`` holds; returns that timeline."""
    import asyncio

    async def poll() -> list[Any]:
        while True:
            timeline = await handle.query(IncidentWorkflow.timeline)
            if predicate(timeline):
                return timeline
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), timeout)


def has(kind: str, step: str | None = None, count: int = 1) -> Any:
    """Timeline predicate: at least ``count`` entries of ``kind`` (for ``step``)."""
    return lambda timeline: len(entries(timeline, kind, step)) >= count


async def refusal(call: Any) -> str:
    """Await an Update expected to fail; return the ``ApplicationError.type`` it failed with."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.exceptions import ApplicationError

    try:
        await call
    except WorkflowUpdateFailedError as err:
        assert isinstance(err.cause, ApplicationError), repr(err.cause)
        return str(err.cause.type)
    raise AssertionError("the Update was accepted")


@asynccontextmanager
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server with the incident search attributes registered.

    The Java test server implements ``AddSearchAttributes`` but not ``ListSearchAttributes``, so
    ``stack.devserver.ensure_search_attributes`` (list first, then add the missing ones) cannot run there.
    """
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    from connection import DATA_CONVERTER
    from stack.devserver import search_attribute_types, test_server_binary

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(test_server_binary()),
        data_converter=DATA_CONVERTER,
    )
    try:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace, search_attributes=search_attribute_types()
            )
        )
        yield env
    finally:
        await env.shutdown()


@dataclass
class GatedStandIns(StandIns):
    """Stand-ins whose operations in ``held`` wait until the test releases them."""

    held: dict[str, Any] = field(default_factory=dict)  # operation -> asyncio.Event
    started: dict[str, int] = field(default_factory=dict)  # operation -> calls begun

    def hold(self, operation: str) -> None:
        import asyncio

        self.held[operation] = asyncio.Event()

    def release(self, operation: str) -> None:
        self.held.pop(operation).set()

    def activity(self) -> Any:
        @activity.defn(dynamic=True)
        async def stand_in(args: Sequence[RawValue]) -> ActionResult | dict[str, Any]:
            name = activity.info().activity_type
            self.started[name] = self.started.get(name, 0) + 1
            gate = self.held.get(name)
            if gate is not None:
                await gate.wait()
            payload = activity.payload_converter().from_payload(args[0].payload)
            self.calls.append(Call(name, payload))
            if name in self.fail:
                raise ApplicationError(f"{name} is down for good", non_retryable=True)
            if name == RECORDS_ACTIVITY and activity.info().is_local:
                # As the real one answers a local call: the entries, for the history's marker.
                return {"written": len(payload["entries"]), "entries": payload["entries"]}
            return ActionResult(detail=f"{name} ok")

        return stand_in


@dataclass
class EngineHarness(Harness):
    """A worker pair with ``GatedStandIns`` that also cleans up the incidents it opened."""

    stand_ins: GatedStandIns
    handles: list[WorkflowHandle[Any, Any]] = field(default_factory=list)

    async def open(self, inp: IncidentInput, **options: Any) -> WorkflowHandle[Any, Any]:
        handle = await start(self.client, self.task_queue, inp, **options)
        self.handles.append(handle)
        return handle

    def follow(self, handle: WorkflowHandle[Any, Any]) -> WorkflowHandle[Any, Any]:
        """A plain handle on the incident's newest run, typed for ``IncidentWorkflow``.

        Unlike the handle ``open`` returns, its ``result()`` never unlocks the time-skipping
        server's clock.
        """
        return self.client.get_workflow_handle_for(IncidentWorkflow.run, handle.id)

    async def close(
        self,
        handle: WorkflowHandle[Any, Any],
        actor: str = "alice",
        reason: str = "resolved",
        *,
        settle: bool = True,
    ) -> IncidentOutcome:
        """Close by Update (once settled, unless told not to wait); wait for the outcome and for
        the archive child it starts."""
        if settle:
            await self.settle(handle)
        await handle.execute_update(IncidentWorkflow.close, commander(actor, reason=reason))
        return await self.closed(handle)

    async def closed(self, handle: WorkflowHandle[Any, Any]) -> IncidentOutcome:
        """After a close (by any door): the outcome, once the archive child it started is in."""
        # Not ``handle.result()``: a time-skipping start handle unlocks the clock while it waits,
        # and once the incident is done the server would leap to the next timer anywhere (the
        # archive stand-in's ten-year run timeout). Closing needs no time to pass.
        outcome = await self.follow(handle).result()
        last_run = await self.latest(handle)
        archive = self.client.get_workflow_handle(archive_workflow_id(handle.id, last_run.run_id))
        await self.settle(archive)
        request = await archive.query("request")
        assert request["run_id"] == last_run.run_id, request
        await self.finish(archive.id)
        return outcome

    async def settle(self, handle: WorkflowHandle[Any, Any], timeout: float = 20) -> None:
        """Wait until the workflow has no activity, child start or workflow task pending.

        The time-skipping server needs this twice. Closing cancels an in-flight records flush,
        and that server refuses to cancel an activity that finished meanwhile
        (``ACTIVITY_UNKNOWN``), failing the workflow task until it times out. And a workflow
        terminated with a task pending keeps that task's lock on the clock for good. A child
        pending means an incident run is archiving itself on its way to a new run.
        """
        import asyncio

        async def poll() -> None:
            while True:
                raw = (await self.latest(handle)).raw_description
                busy = raw.pending_activities or raw.pending_children
                if not busy and not raw.HasField("pending_workflow_task"):
                    return
                await asyncio.sleep(0.02)

        await asyncio.wait_for(poll(), timeout)

    async def latest(self, handle: WorkflowHandle[Any, Any]) -> Any:
        """``describe()`` of the newest run of ``handle``'s workflow."""
        return await self.client.get_workflow_handle(handle.id).describe()

    async def children(self, handle: WorkflowHandle[Any, Any]) -> list[str]:
        """Ids of the archives started by every run of the incident: child workflows, or (lean
        runs) workflows started by the ``records.start_archive`` local activity."""
        found: list[str] = []
        run_id = handle.first_execution_run_id or handle.run_id
        while True:
            next_run = None
            run = self.client.get_workflow_handle(handle.id, run_id=run_id)
            run_id = run_id or (await run.describe()).run_id
            async for event in run.fetch_history_events():
                if event.HasField("start_child_workflow_execution_initiated_event_attributes"):
                    attrs = event.start_child_workflow_execution_initiated_event_attributes
                    found.append(attrs.workflow_id)
                if event.HasField("marker_recorded_event_attributes"):
                    data = event.marker_recorded_event_attributes.details.get("data")
                    if data and ARCHIVE_START_ACTIVITY.encode() in data.payloads[0].data:
                        found.append(archive_workflow_id(handle.id, run_id))
                if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                    attrs_can = event.workflow_execution_continued_as_new_event_attributes
                    next_run = attrs_can.new_execution_run_id
            if next_run is None:
                return found
            run_id = next_run

    async def finish(self, workflow_id: str) -> None:
        """Terminate ``workflow_id`` if it still runs, once no task of it is pending."""
        from temporalio.client import WorkflowExecutionStatus

        target = self.client.get_workflow_handle(workflow_id)
        if (await target.describe()).status == WorkflowExecutionStatus.RUNNING:
            await self.settle(target)
            await target.terminate("test over")


@asynccontextmanager
async def engine_harness(
    env: WorkflowEnvironment, activities: Sequence[Any] = ()
) -> AsyncIterator[EngineHarness]:
    """IncidentWorkflow, a stand-in archive child and ``GatedStandIns`` on a fresh task queue;
    ``activities`` (real ones, e.g. the roster's ``roster.on_call``) answer instead of stand-ins.

    On exit, held operations are released, and incidents and their archive children still
    running are settled, then terminated: on the time-skipping server a workflow left behind with
    a timer would get a task that no worker takes, and a task pending stops the clock for every
    test after it.
    """
    from activities.records import start_archive
    from tests.engine_workflows import StandInArchiveWorkflow

    queue = f"tq-{uuid.uuid4().hex[:8]}"
    stand_ins = GatedStandIns()
    harness = EngineHarness(env.client, queue, stand_ins)
    async with (
        Worker(
            env.client,
            task_queue=queue,
            workflows=[IncidentWorkflow, StandInArchiveWorkflow],
            # The real archive start: a lean incident starts its (stand-in) archiver with it.
            activities=[*activities, start_archive, stand_ins.activity()],
        ),
        Worker(env.client, task_queue=f"{queue}-salesforce", activities=[stand_ins.activity()]),
    ):
        try:
            yield harness
        finally:
            for operation in list(stand_ins.held):
                stand_ins.release(operation)
            for handle in harness.handles:
                await harness.finish(handle.id)
                for child in await harness.children(handle):
                    await harness.finish(child)


async def full_timeline(harness: Any, handle: WorkflowHandle[Any, Any]) -> list[Any]:
    """The whole timeline of a long incident: what the records mirror received (stand-in
    ``records.append`` calls) plus what the current run carries and has not flushed yet."""
    from workflows.models import TimelineEntry

    by_seq = {
        e["seq"]: TimelineEntry.model_validate(e)
        for batch in harness.stand_ins.named("records.append")
        for e in batch["entries"]
    }
    for entry in await handle.query(IncidentWorkflow.timeline):
        by_seq[entry.seq] = entry
    return [by_seq[seq] for seq in sorted(by_seq)]
