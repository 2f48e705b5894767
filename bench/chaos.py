"""`make chaos`: incidents of the shipped playbooks driven to close while the worker is SIGKILLed,
the dev server restarted, vendors fail and malformed messages arrive; then the proof, one table.

The stack is the one `incident up` runs, in its own data directory and ports, split into processes
that can be killed one at a time: the Temporal dev server (``stack/devserver.py``, the command and
SQLite file `incident up` uses), the emulators (``python -m sandbox``) and the workers (``incident
worker``; `incident up` runs them inside its own process). Commanders and Legal act through the
Python client as the CLI does: acknowledge, decide each pending approval with the right role (some
rejected), send each awaited event, close once only long legal timers remain. Meanwhile the worker
is SIGKILLed and restarted at random, the dev server stopped and restarted, ``--fault-rate`` of
vendor calls fail (503, throttles, responses dropped after commit) and a raw client sends malformed
signals and Updates (wrong argument count, wrong type, null, none, ``binary/plain``, 1.5 MB,
unknown names). Then: every incident closed, no duplicate Case, comment, page, Slack message, SMS or
email, every history replays with today's code, `incident audit verify` passes, every run archived,
and the stall after each kill within ``--max-stall``: from the kill until the work it interrupted
moves again (the incident's next workflow task completes; an activity's dead attempt is given up and
retried, its retry policy's backoff shown apart). One line per finding; exit 1 if any check fails.
Every process is stopped at the end, on failure too.

    .venv/bin/python -m bench.chaos [--incidents 40] [--kills 5] [--server-restarts 1] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError

from audit.export import export_incident
from audit.replay import load_document, rebuild
from bench import chaos_report as report
from bench.chaos_people import CASES, drive, fields_for, malformed_stream
from bench.chaos_report import ACTIVITY, Evidence, Incident, Kill
from bench.scenario import WRITE_ROUTES, fault_rules
from connection import connect, exit_process
from playbooks.loader import list_playbooks
from records.store import reset_engines
from sandbox.server import free_port
from settings import Settings, get_settings
from stack import devserver
from workflows.names import workflow_id_for

BIN = Path(sys.executable).parent
_STARTED = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
MIN_GAP = 10.0  # seconds between two kills or restarts: a recovery takes about 5


@dataclass
class Run:
    cfg: argparse.Namespace
    settings: Settings
    env: dict[str, str]
    incidents: list[Incident]
    kills: list[Kill] = field(default_factory=list)
    restarts: list[str] = field(default_factory=list)
    malformed: list[tuple[str, str, str]] = field(default_factory=list)  # iid, case, verdict
    self_exits: list[str] = field(default_factory=list)  # workers that died without our kill
    worker: subprocess.Popen[bytes] | None = None  # the one polling now
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)  # all, to stop at the end
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one kill or restart at a time
    server: subprocess.Popen[bytes] | None = None
    sandbox: subprocess.Popen[bytes] | None = None
    t0: float = field(default_factory=time.time)


# --- Processes ------------------------------------------------------------------------------


def start_worker(run: Run) -> float:
    """`incident worker` in its own process group; seconds until it polls (its log says so)."""
    log = Path(run.settings.data_dir) / "worker.log"
    offset, began = (log.stat().st_size if log.exists() else 0), time.monotonic()
    worker = subprocess.Popen([str(BIN / "incident"), "worker"], env=run.env,
                              stdout=log.open("ab"), stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    run.workers.append(worker)
    run.worker = worker
    while b"worker started" not in log.read_bytes()[offset:]:
        if worker.poll() is not None or time.monotonic() - began > 60:
            raise RuntimeError(f"the worker did not start; see {log}")
        time.sleep(0.05)
    return time.monotonic() - began


def kill_group(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL) -> None:
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)


def start_sandbox(run: Run) -> subprocess.Popen[bytes]:
    """``python -m sandbox`` in its own process group, its output in the data directory."""
    log = (Path(run.settings.data_dir) / "sandbox.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "sandbox"], env=run.env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    began = time.monotonic()
    while not devserver.port_open(run.settings.sandbox_host, run.settings.sandbox_port):
        if proc.poll() is not None or time.monotonic() - began > 30:
            raise RuntimeError(f"the sandbox did not start; see {log.name}")
        time.sleep(0.05)
    return proc


# --- Chaos: kills, restarts, and the stall they cause ---------------------------------------


async def running_activities(client: Client, incs: list[Incident]) -> dict[tuple[str, str], str]:
    """(incident, activity id) -> "type attempt N" of every activity a worker is running now."""

    async def one(inc: Incident) -> list[tuple[tuple[str, str], str]]:
        try:
            d = await client.get_workflow_handle(workflow_id_for(inc.iid)).describe(
                rpc_timeout=timedelta(seconds=3)
            )
        except RPCError:
            return []
        return [((inc.iid, a.activity_id), f"{a.activity_type.name} attempt {a.attempt}")
                for a in d.raw_description.pending_activities if a.state == _STARTED]  # fmt: skip

    found = await asyncio.gather(*(one(i) for i in incs if i.phase in ("driving", "closing")))
    return dict(pair for pairs in found for pair in pairs)


async def watch_recovery(client: Client, kill: Kill, running: dict[tuple[str, str], str]) -> None:
    """For each activity the kill interrupted: seconds until the server gave up on the dead attempt
    (its heartbeats stopped; the stall), and until it ran again (after its retry policy's backoff,
    which any failed attempt costs)."""
    attempts = {key: int(what.rsplit(" ", 1)[1]) for key, what in running.items()}
    label = {key: f"{key[0]} {what}" for key, what in running.items()}
    noticed: dict[tuple[str, str], float] = {}
    while len(kill.resumed) < len(running) and time.time() - kill.at < 60:
        for iid in {k[0] for k in running if label[k] not in kill.resumed}:
            try:
                d = await client.get_workflow_handle(workflow_id_for(iid)).describe(
                    rpc_timeout=timedelta(seconds=3)
                )
            except RPCError:
                continue
            pending = {a.activity_id: a for a in d.raw_description.pending_activities}
            for key in [k for k in running if k[0] == iid and label[k] not in kill.resumed]:
                a, now = pending.get(key[1]), time.time() - kill.at
                if a is None or a.attempt > attempts[key]:
                    noticed.setdefault(key, now)
                if a is None or (a.attempt > attempts[key] and a.state == _STARTED):
                    kill.resumed[label[key]] = now
        await asyncio.sleep(0.2)
    kill.delays.update({(ACTIVITY, label[k]): noticed.get(k) for k in running})


async def chaos(client: Client, run: Run, rng: random.Random, window: float) -> None:
    """Kills and server restarts at random moments of the window, each at least ``MIN_GAP`` s after
    the previous one settled, so that each kill's stall is its own."""
    plan = ["kill"] * run.cfg.kills + ["restart"] * run.cfg.server_restarts
    rng.shuffle(plan)
    gap = max(MIN_GAP, window / (len(plan) + 1))
    for n, what in enumerate(plan):
        await asyncio.sleep(rng.uniform(MIN_GAP, 2 * gap - MIN_GAP) if n else rng.uniform(3, gap))
        if what == "restart":
            began = time.monotonic()
            await asyncio.to_thread(devserver.stop_process, run.server)  # type: ignore[arg-type]
            run.server = await asyncio.to_thread(devserver.start_dev_server, run.settings)
            run.restarts.append(f"dev server down {time.monotonic() - began:.1f} s "
                                f"at +{time.time() - run.t0:.0f} s")  # fmt: skip
            continue
        running = await running_activities(client, run.incidents)
        async with run.lock:
            kill = Kill(len(run.kills) + 1, time.time())
            worker, run.worker = run.worker, None
            kill_group(worker)
            run.kills.append(kill)
            watcher = asyncio.create_task(watch_recovery(client, kill, running))
            kill.ready = await asyncio.to_thread(start_worker, run)
        await watcher


async def supervise(run: Run) -> None:
    """A worker that dies without our kill (say, of a server restart) is restarted and reported."""
    while True:
        await asyncio.sleep(1)
        async with run.lock:
            worker = run.worker
            if worker is not None and worker.poll() is not None:
                run.self_exits.append(f"worker exited by itself (exit {worker.returncode}) at "
                                      f"+{time.time() - run.t0:.0f} s; see worker.log")  # fmt: skip
                await asyncio.to_thread(start_worker, run)


# --- The run --------------------------------------------------------------------------------


def stack_env(data_dir: Path) -> dict[str, str]:
    """`incident up`'s configuration on free ports and a fresh data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CR_")}
    env.update(
        CR_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}", CR_UI_PORT=str(free_port()),
        CR_DATA_DIR=str(data_dir), CR_DATABASE_URL=f"sqlite:///{data_dir / 'records.db'}",
        CR_SANDBOX_HOST="127.0.0.1", CR_SANDBOX_PORT=str(free_port()),
        CR_INTAKE_PORT=str(free_port()), CR_TASK_QUEUE=f"chaos-{uuid.uuid4().hex[:6]}",
        CR_SLACK_BOT_TOKEN="xoxb-chaos",  # chat.postMessage: one delivery marker per message
        CR_HTTP_TIMEOUT_SECONDS="5", CR_CLI_TIMEOUT_SECONDS="20",
    )  # fmt: skip
    return env


async def collect(client: Client, incidents: list[Incident]) -> Evidence:
    ev = Evidence({}, {}, {})
    for inc in incidents:
        try:
            doc = await export_incident(inc.iid, client)
        except LookupError:
            continue
        ev.docs[inc.iid] = doc
        ev.histories[inc.iid] = [item.history for item in load_document(doc, inc.iid)]
        ev.timelines[inc.iid] = rebuild(inc.iid, ev.histories[inc.iid]).timeline
    return ev


async def settle_archives(client: Client, seconds: float = 90) -> None:
    query = "WorkflowType = 'ArchiveIncidentWorkflow' AND ExecutionStatus = 'Running'"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if (await client.count_workflows(query)).count == 0:
                return
        except RPCError:
            pass
        await asyncio.sleep(1)


async def run_chaos(run: Run, rng: random.Random) -> int:
    cfg, began = run.cfg, time.monotonic()
    client = await devserver.wait_for_client(lambda: connect(run.settings))
    faults = fault_rules(rate=cfg.fault_rate, drops=dict.fromkeys(WRITE_ROUTES, 3), seed=cfg.seed)
    faults["rules"].insert(0, {"route": "*", "kind": "latency", "latency_ms": cfg.latency_ms})
    sandbox = run.settings.sandbox_url
    httpx.post(f"{sandbox}/_sandbox/faults", json=faults, timeout=10).raise_for_status()
    await asyncio.to_thread(start_worker, run)
    window = max(cfg.incidents * cfg.spacing, (cfg.kills + cfg.server_restarts) * MIN_GAP * 1.2)
    for n, inc in enumerate(run.incidents):
        inc.start_at = n * window / len(run.incidents)
    drivers = [asyncio.create_task(drive(client, run.settings, inc, random.Random(rng.random()),
                                         cfg.timeout)) for inc in run.incidents]  # fmt: skip
    stream = malformed_stream(client, run.incidents, run.malformed, cfg.malformed,
                              random.Random(rng.random()))  # fmt: skip
    helpers = [asyncio.create_task(stream), asyncio.create_task(supervise(run))]
    await chaos(client, run, rng, window)
    outcomes = await asyncio.gather(*drivers, return_exceptions=True)
    for inc, outcome in zip(run.incidents, outcomes, strict=True):
        if isinstance(outcome, BaseException) and not inc.error:
            inc.error = f"{type(outcome).__name__}: {outcome}".splitlines()[0][:300]
    for task in helpers:
        task.cancel()
    await settle_archives(client)
    snapshot = httpx.get(f"{sandbox}/_sandbox/state", timeout=30).json()
    ev = await collect(client, run.incidents)
    ids = [i.iid for i in run.incidents]
    duplicates, dup_rows = report.check_duplicates(snapshot, ids)
    stall, kill_rows = report.check_stall(run.kills, ev, cfg.max_stall, run.t0)
    checks = [
        report.check_closed(run.incidents), report.check_task_failures(ev),
        report.check_malformed(run.incidents, run.malformed, ev), duplicates,
        report.check_cases(snapshot, run.incidents, ev), report.check_steps(run.incidents, ev),
        await report.check_replay(ev, Path(run.settings.data_dir) / "evidence"),
        await asyncio.to_thread(report.check_verify, run.env), report.check_archive(run.incidents, ev),
        stall,
    ]  # fmt: skip
    requests, injected = (
        sum(snapshot["requests"].values()),
        sum(snapshot["faults_injected"].values()),
    )
    dropped = sum(r["injected"] for r in snapshot["rules"] if r["kind"] == "drop_after_commit")
    mix = Counter(i.playbook.name for i in run.incidents)
    rows = [
        ("Incidents opened / closed", f"{sum(i.phase != 'new' for i in run.incidents)} / "
         f"{sum(i.phase == 'closed' for i in run.incidents)}"),
        ("Playbooks", ", ".join(f"{name} {n}" for name, n in sorted(mix.items()))),
        ("Worker SIGKILLs / restarts", f"{len(run.kills)} / {len(run.kills) + len(run.self_exits)}"
         + "".join(f"; {line}" for line in run.self_exits)),
        ("Dev server restarts", f"{len(run.restarts)}" + "".join(f"; {r}" for r in run.restarts)),
        ("Vendor faults injected", f"{injected} of {requests} requests ({injected / max(requests, 1):.0%}), "
         f"{dropped} responses dropped after commit, {cfg.latency_ms} ms latency on every call"),
        ("Malformed messages sent", f"{len(run.malformed)} ({len(CASES)} kinds)"),
        ("Open to closed: p50 / max", _spread([i.took for i in run.incidents if i.took])),
        *dup_rows, *kill_rows, ("Wall time", f"{time.monotonic() - began:.0f} s"),
    ]  # fmt: skip
    print(report.render(rows, checks), flush=True)
    print(f"data directory (logs, databases, evidence): {run.settings.data_dir}")
    return 1 if any(c.findings for c in checks) else 0


def _spread(values: list[float]) -> str:
    ordered = sorted(values) or [0.0]
    return f"{ordered[len(ordered) // 2]:.1f} s / {ordered[-1]:.1f} s"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--incidents", type=int, default=40)
    add("--kills", type=int, default=5, help="worker SIGKILLs (each restarted at once)")
    add("--server-restarts", type=int, default=1)
    add("--fault-rate", type=float, default=0.30)
    add("--latency-ms", type=int, default=200, help="added to every vendor call")
    add("--malformed", type=int, default=None, help="malformed messages (default 3 per incident)")
    add("--spacing", type=float, default=1.0, help="seconds between openings (at least)")
    add("--timeout", type=float, default=600, help="seconds to drive one incident to close")
    add("--max-stall", type=float, default=10.0)
    add("--seed", type=int, default=None)
    add("--data-dir", type=Path, default=None)
    add("--env", action="append", default=[], metavar="CR_X=V", help="a setting for the stack")
    args = parser.parse_args(argv)
    args.seed = args.seed if args.seed is not None else random.randrange(10**6)
    args.malformed = args.malformed if args.malformed is not None else 3 * args.incidents
    return args


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    data_dir = cfg.data_dir or Path(tempfile.mkdtemp(prefix="cr-chaos-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    env = stack_env(data_dir)
    env.update(dict(item.split("=", 1) for item in cfg.env))
    for name in [k for k in os.environ if k.startswith("CR_")]:
        del os.environ[name]
    os.environ.update({k: v for k, v in env.items() if k.startswith("CR_")})
    get_settings.cache_clear()
    reset_engines()
    settings = get_settings()
    rng = random.Random(cfg.seed)
    playbooks = [loaded.playbook for loaded in list_playbooks(settings.playbooks_dir)]
    rng.shuffle(playbooks)
    tag = uuid.uuid4().hex[:4]
    incidents = []
    for n in range(cfg.incidents):
        pb, iid = playbooks[n % len(playbooks)], f"CHAOS-{tag}-{n:03d}"
        incidents.append(Incident(iid, pb, fields_for(pb, iid, n, rng), 0.0))
    run = Run(cfg, settings, env, incidents)
    print(f"chaos: {cfg.incidents} incidents, {cfg.kills} kills, {cfg.server_restarts} server "
          f"restarts, seed {cfg.seed}, data in {data_dir}", flush=True)  # fmt: skip

    def stop(signum: int, _: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds into the finally below: nothing is left running

    signal.signal(signal.SIGTERM, stop)
    # The SDK's own retry warnings (expected while the server restarts) would drown the findings.
    quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet))))
    code = 1
    try:
        run.sandbox = start_sandbox(run)
        run.server = devserver.start_dev_server(settings)
        devserver.set_retention(settings)
        budget = cfg.incidents * cfg.spacing + (cfg.kills + cfg.server_restarts) * 10 + cfg.timeout
        code = asyncio.run(asyncio.wait_for(run_chaos(run, rng), budget + 600))
    except BaseException as err:  # noqa: BLE001 - one line, then stop every process
        print(f"chaos run failed: {type(err).__name__}: {err}", file=sys.stderr)
    finally:
        for worker in run.workers:
            kill_group(worker)
        for proc in (run.sandbox, run.server):
            if proc is not None:
                devserver.stop_process(proc)
    exit_process(code)


if __name__ == "__main__":
    main()
