"""Issue 8, item 2: histories that stopped replaying after worker kills, reproduced.

The worker holding an incident is SIGKILLed while an activity of the playbook is out and a
decision is awaited (a parallel step: ``collect`` in one branch, Legal's approval in the other);
the activity then completes, a `status` query arrives, then the `approve` Update. The query comes
alone (the run looked idle when it was sent) to the new worker, which has the run in no cache: the
SDK rebuilds the run from a history that already holds the activity's result, applies it as if
live, answers, and keeps that run. The next task then records what that result led to (the records
flush) before the Update's acceptance, while a replay of the same history handles the Update
first: the history no longer replays and the incident's next uncached task fails.

The project's workers keep a workflow cache and forget a run as soon as it has answered a query
that came alone (``worker.ForgetAfterLoneQuery``): the next task rebuilds it from its history, and
the history replays. Two controls show the SDK behaviour that is worked around, and fail if a
future SDK no longer shows it:

- ``unforgetful``: the same cached worker without the forgetting records a history its own replay
  cannot reproduce (with local calls, where the rebuilt run's records batch is already a marker
  of the next task; ``local`` shows the forgetting makes that history replay);
- ``local``: with the engine's own calls as local activities (``settings.local_calls``), the
  rebuilt run *runs* the records batch the unprocessed result leads to while the query is
  answered, before any task: why local calls are off by default.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowUpdateStage
from temporalio.common import RawValue
from temporalio.worker import Replayer, Worker

from connection import DATA_CONVERTER
from incidents.service import build_input
from playbooks.operations import salesforce_queue
from settings import Settings, get_settings
from tests.engine_support import incident_input, playbook
from worker import workflow_worker, workflow_worker_options
from workflows.archive import ArchiveIncidentWorkflow
from workflows.incident import IncidentWorkflow
from workflows.models import ActionResult, ApprovalRequest, CommanderRequest
from workflows.names import workflow_id_for

pytestmark = pytest.mark.e2e
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


HELD = "case.collect"  # the playbook action out when the worker dies


class HeldAction:
    """Stand-in activities; the playbook action ``HELD`` is completed by the test."""

    def __init__(self) -> None:
        self.tokens: asyncio.Queue[bytes] = asyncio.Queue()
        self.local_runs: list[str] = []  # local activities run by the test's worker, in order

    def activity(self) -> Any:
        @activity.defn(dynamic=True)
        async def stand_in(args: Sequence[RawValue]) -> ActionResult:
            if activity.info().is_local:
                self.local_runs.append(activity.info().activity_type)
            if activity.info().activity_type == HELD and not activity.info().is_local:
                self.tokens.put_nowait(activity.info().task_token)
                activity.raise_complete_async()
            return ActionResult(detail="ok")

        return stand_in


@dataclass
class Outcome:
    replay_failure: str | None
    local_runs_while_queried: list[str]  # local activities run before the query was answered


async def run_scenario(dev_env: Any, mode: str) -> Outcome:
    client = dev_env.client
    queue = f"kill-{mode}-{uuid.uuid4().hex[:6]}"
    held = HeldAction()
    inp = incident_input(playbook([
        {"id": "both", "kind": "parallel", "branches": [
            {"name": "evidence", "steps": [{"id": "collect", "kind": "action", "activity": HELD}]},
            {"name": "legal", "steps": [{"id": "disclose", "kind": "approval",
                                         "roles": ["legal"]}]},
        ]},
        {"id": "send", "kind": "action", "activity": "case.disclose"},
    ]), local_calls=mode in ("local", "unforgetful"), local_reads=True)  # fmt: skip
    stand_in = held.activity()
    async with (
        Worker(client, task_queue=queue, activities=[stand_in]),
        Worker(client, task_queue=salesforce_queue(queue), activities=[stand_in]),
    ):
        worker_a = subprocess.Popen(
            [sys.executable, "-m", "tests.kill_worker_proc",
             client.service_client.config.target_host, client.namespace, queue, mode],
            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            assert worker_a.stdout is not None and worker_a.stdout.readline().strip() == "ready"
            handle = await client.start_workflow(
                IncidentWorkflow.run, inp, id=workflow_id_for(inp.incident_id), task_queue=queue
            )
            token = await asyncio.wait_for(held.tokens.get(), 30)
            await client.get_async_activity_handle(task_token=token).heartbeat()
        finally:
            os.killpg(worker_a.pid, signal.SIGKILL)
            worker_a.wait()
        workflows = [IncidentWorkflow, ArchiveIncidentWorkflow]
        # The engine's own calls (records, roster, notifications) run as local activities on
        # the worker that runs the workflow when the incident asks for local calls.
        options: dict[str, Any] = dict(task_queue=queue, workflows=workflows,
                                       activities=[stand_in], no_remote_activities=True)  # fmt: skip
        if mode == "unforgetful":
            worker_b = Worker(client, **options, **workflow_worker_options(get_settings()))
        else:
            worker_b = workflow_worker(client, get_settings(), **options)
        async with worker_b:
            query = asyncio.create_task(
                handle.query(IncidentWorkflow.status, rpc_timeout=timedelta(seconds=40))
            )
            action = client.get_async_activity_handle(task_token=token)
            # The query waits for the dead worker's sticky queue (10 s, ``kill_worker_proc``)
            # before the server sends it to the shared queue: the result lands meanwhile.
            for _ in range(6):  # 3 s, heartbeating as a live activity would
                await action.heartbeat()
                await asyncio.sleep(0.5)
            await action.complete(ActionResult(detail="collected"))
            await query
            while_queried = list(held.local_runs)
            update = await handle.start_update(
                IncidentWorkflow.approve,
                ApprovalRequest(step_id="disclose", actor="lena", role="legal", reason="ok"),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                rpc_timeout=timedelta(seconds=40),
            )
            assert (await update.result()).outcome == "approved"
            await handle.execute_update(
                IncidentWorkflow.close, CommanderRequest(actor="alice", reason="done")
            )
            await handle.result()
        history = await handle.fetch_history()
    result = await Replayer(workflows=workflows, data_converter=DATA_CONVERTER).replay_workflow(
        history, raise_on_replay_failure=False
    )
    failure = None if result.replay_failure is None else str(result.replay_failure)
    return Outcome(failure, while_queried)


async def test_after_a_worker_kill_the_history_replays_with_the_project_worker(dev_env):
    assert get_settings().workflow_cache_size > 0  # the project's workers keep a cache
    outcome = await run_scenario(dev_env, "project")
    assert outcome.replay_failure is None
    # The engine's calls are activities; only the roster's answer, a read, may run locally.
    assert set(outcome.local_runs_while_queried) <= {"roster.on_call"}


async def test_control_a_cached_worker_that_keeps_a_rebuilt_run_records_what_cannot_replay(
    dev_env,
):
    failure = (await run_scenario(dev_env, "unforgetful")).replay_failure
    assert failure is not None and "Nondeterminism" in failure, (
        "the SDK no longer shows the defect: ForgetAfterLoneQuery may go (see its docstring)"
    )


async def test_control_a_run_rebuilt_for_a_query_runs_its_local_activities(dev_env):
    outcome = await run_scenario(dev_env, "local")
    assert outcome.replay_failure is None  # forgotten, so rebuilt by the next task
    assert "records.append" in outcome.local_runs_while_queried, (
        "the SDK no longer runs local activities for a query: settings.local_calls could be on"
    )


@pytest.mark.parametrize(
    ("local_calls", "cache", "expected"),
    [(False, 10_000, False), (True, 10_000, True), (True, 0, False)],
)
def test_the_front_door_asks_for_local_calls_only_when_set_on_cached_workers(
    local_calls: bool, cache: int, expected: bool
):
    settings = Settings(local_calls=local_calls, workflow_cache_size=cache)
    fields = {"account_id": "a-1", "jurisdiction": "us"}
    inp = build_input(playbook="account-takeover", severity="sev2", summary="s", fields=fields,
                      incident_id="ato-1", opened_by="alice", settings=settings)  # fmt: skip
    assert inp.local_calls is expected
    assert inp.local_reads is (cache > 0)  # the roster's answer: a read, local whenever cached
    assert Settings().local_calls is False and Settings().workflow_cache_size > 0  # the defaults
