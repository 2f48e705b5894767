"""Worker A of ``tests/test_kill_replay.py``: incident workflows in a process of its own, so the
test can SIGKILL it. ``python -m tests.kill_worker_proc TARGET NAMESPACE QUEUE MODE`` where MODE is
``unforgetful`` (the project's options on a plain ``Worker``) or another of the test's modes (the
project's workflow worker, ``worker.workflow_worker``)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.common import RawValue
from temporalio.worker import Worker

from connection import DATA_CONVERTER
from settings import get_settings
from worker import workflow_worker, workflow_worker_options
from workflows.archive import ArchiveIncidentWorkflow
from workflows.incident import IncidentWorkflow
from workflows.models import ActionResult


@activity.defn(dynamic=True)
async def local(args: Sequence[RawValue]) -> ActionResult:
    """The engine's own calls (records, roster, notifications) run as local activities here."""
    return ActionResult(detail="ok")


async def main() -> None:
    target, namespace, queue, mode = sys.argv[1:5]
    client = await Client.connect(target, namespace=namespace, data_converter=DATA_CONVERTER)
    workflows = [IncidentWorkflow, ArchiveIncidentWorkflow]
    # Only local activities: the test's own worker takes this queue's activity tasks. The sticky
    # wait is the SDK's default (10 s), not the project's 2 s: a query sent after the kill is
    # still waiting for this dead worker when the test completes the held activity, however busy
    # the machine.
    options: dict[str, Any] = dict(
        task_queue=queue, workflows=workflows, activities=[local], no_remote_activities=True,
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=10),
    )  # fmt: skip
    if mode == "unforgetful":
        worker = Worker(client, **(workflow_worker_options(get_settings()) | options))
    else:
        worker = workflow_worker(client, get_settings(), **options)
    async with worker:
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
