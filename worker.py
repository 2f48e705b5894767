"""Builds and runs the critical-response workers: one for workflows and notifications, one for
Salesforce on its own rate-limited queue.

Run it alone (`python -m worker`, against any configured cluster: scale out by starting more) or let
`incident up` run it inside the embedded stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import (
    HandleQueryInput,
    Interceptor,
    Worker,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import logs
from activities import linked, notify, on_call, records, salesforce
from activities.metrics import ActivityMetrics
from connection import connect, exit_process
from datadir import private_umask, secure_dir
from settings import Settings, get_settings
from workflows.archive import ArchiveIncidentWorkflow
from workflows.coverage_check import CoverageCheckWorkflow
from workflows.daily_report import DailyReportWorkflow
from workflows.incident import IncidentWorkflow
from workflows.reconcile import ReconcileWorkflow

WORKFLOWS = [
    IncidentWorkflow,
    ArchiveIncidentWorkflow,
    DailyReportWorkflow,
    ReconcileWorkflow,
    CoverageCheckWorkflow,
]
# The main queue's activities: notifications, records, and the roster's on-call answer.
ACTIVITIES = [*notify.ACTIVITIES, *records.ACTIVITIES, *on_call.ACTIVITIES, *linked.ACTIVITIES]

STICKY_TIMEOUT = timedelta(seconds=1)


def workflow_runner() -> WorkflowRunner:
    """The workflow sandbox, with the interpreter's own rooms (``workflows/``) passed through.

    The sandbox re-imports a workflow's module for every run it starts; ``workflows/incident.py``
    and ``workflows/archive.py`` already import every other module of the room passed through, so
    that re-import only rebuilt the two classes (and the archive's pydantic models) each time:
    about 5 ms of CPU a run, twice an incident (measured with ``bench/run.py``). Passing the room
    through keeps one copy of them; the interpreter holds its state on the instance, never on a
    class or a module, and stays under the same rules (``tests/test_house.py``, the replays)."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows")
    )


LONE_QUERY_ID = "legacy_query"  # the SDK core's id for a query that came as a task of its own


class ForgetAfterLoneQuery(Interceptor):
    """A cached worker forgets a workflow right after answering a query that came alone.

    The server sends a query alone (not riding a workflow task) when the run looked idle; it may
    reach a worker that has the run in no cache (its worker was killed, or the run was pushed out
    of the cache) after new events landed. The SDK then rebuilds the run from a history holding
    events no task has processed, applies them, answers, and keeps that run. The next real task
    handled its message after what those events led to, while a replay handles it first: the
    history no longer replayed (issue 8, item 2; ``tests/test_kill_replay.py``). Forgotten at
    once, the run is rebuilt by the next task from its history, as a worker with no cache would.
    A query to a cached run costs that run one replay at its next task: queries are rare next to
    tasks (a console page, `incident status`), the replays a cache saves are every task's.

    The SDK asks for evictions through its core worker, which ``Worker`` does not expose: bound
    after the worker is built (``bind``); ``tests/test_kill_replay.py`` fails if that changes.
    """

    def __init__(self) -> None:
        self._evict: Callable[[str], None] | None = None

    def bind(self, worker: Worker) -> None:
        self._evict = worker._bridge_worker.request_workflow_eviction  # noqa: SLF001

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        forget = self._forget

        class Inbound(WorkflowInboundInterceptor):
            def handle_query(self, input: HandleQueryInput) -> Any:
                try:
                    return super().handle_query(input)
                finally:
                    if input.id == LONE_QUERY_ID:
                        forget(workflow.info().run_id)

        return Inbound

    def _forget(self, run_id: str) -> None:
        if self._evict is None:
            raise RuntimeError("ForgetAfterLoneQuery is not bound to its worker")
        self._evict(run_id)


def workflow_worker_options(settings: Settings) -> dict[str, Any]:
    """How workflow tasks are run: in the project's sandbox, with a workflow cache of
    ``settings.workflow_cache_size`` (0: every task replays the history). A cached worker needs
    ``ForgetAfterLoneQuery`` bound to it: ``workflow_worker`` builds one so."""
    return {
        "workflow_runner": workflow_runner(),
        "max_cached_workflows": settings.workflow_cache_size,
        # With a cache, a workflow's next task goes to the sticky queue of the worker that cached
        # it; if that worker was killed, the server moves the task to the shared queue only after
        # this wait (SDK default 10 s: every incident the dead worker held stalled for 10 s; at
        # 2 s `make chaos` measured stalls of 2.1-5.1 s for such tasks, at 1 s 1.1-1.4 s). A live
        # worker slower than that to poll gets the task on the shared queue, whole history and all.
        "sticky_queue_schedule_to_start_timeout": STICKY_TIMEOUT,
    }


def workflow_worker(client: Client, settings: Settings, **options: Any) -> Worker:
    """A worker that runs workflows as the project does (``workflow_worker_options``), with the
    forgetting its cache needs; ``options`` are the rest of ``Worker``'s arguments."""
    forget = ForgetAfterLoneQuery()
    options["interceptors"] = [*options.get("interceptors", []), forget]
    worker = Worker(client, **(workflow_worker_options(settings) | options))
    forget.bind(worker)
    return worker


def build_workers(client: Client, settings: Settings) -> list[Worker]:
    """The main worker (workflows, notifications, records, the roster's on-call answer) and the
    Salesforce worker."""
    metrics = ActivityMetrics()  # failed attempts by vendor, for the metrics port
    main = workflow_worker(
        client,
        settings,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=ACTIVITIES,
        interceptors=[metrics],
    )
    sf = Worker(client, interceptors=[metrics], **salesforce.salesforce_worker_options(settings))
    return [main, sf]


def serve_metrics(settings: Settings) -> bool:
    """Serve the worker's Prometheus metrics (its own and the records') when a port is set."""
    if settings.worker_metrics_port is None or _metrics_served:
        return False
    from prometheus_client import start_http_server

    from insights.metrics import WORKER_REGISTRY, RecordsCollector

    WORKER_REGISTRY.register(RecordsCollector(settings.effective_database_url))
    start_http_server(
        settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=WORKER_REGISTRY
    )
    _metrics_served.append(settings.worker_metrics_port)
    return True


_metrics_served: list[int] = []  # one metrics server per process


async def run_workers(
    settings: Settings, stop: asyncio.Event, client: Client | None = None
) -> None:
    """Poll until ``stop`` is set, then shut down gracefully."""
    client = client or await connect(settings)
    workers = build_workers(client, settings)
    if serve_metrics(settings):
        logs.structlog.get_logger().info("worker metrics", port=settings.worker_metrics_port)
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        logs.structlog.get_logger().info(
            "worker started", task_queue=settings.task_queue, namespace=settings.temporal_namespace
        )
        await stop.wait()


def main() -> None:
    """`python -m worker`: run until SIGINT/SIGTERM, then exit without the SDK's teardown abort.
    What it writes (records database, audit key and checkpoints by default) is private."""
    private_umask()
    logs.configure()
    settings = get_settings()
    if settings.data_dir.exists():
        secure_dir(settings.data_dir)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_workers(settings, stop)

    code = 0
    try:
        asyncio.run(runner())
    except Exception as err:  # noqa: BLE001 - one line on stderr, never a traceback
        print(f"worker: {err}", file=sys.stderr)
        code = 1
    exit_process(code)


if __name__ == "__main__":
    main()
