"""`make bench-scale`: many open incidents at once on the embedded stack, with 1..N workers.

Each incident walks a playbook of one SLA'd timer (``--timer``, long enough that every incident
is open when the first timers fire) and then waits on Legal's approval, so at the peak every
incident is open and waiting: on a timer, then on a person. Incidents are opened ``--concurrency``
at a time through the opening service, as intake and the API open them.

Measured, from what the records hold (``records/``: the audit log's times are in clear):
- opening rate (incidents/s, the opener's side);
- open-to-first-step: the timer step's ``step_started`` minus when the open was asked, p50/p99;
- SLA timer lateness: the timer step's ``step_completed`` minus its due time (start + duration),
  p50/p99: how late an SLA warning or a timer-driven step would be under that load;
- worker memory: the largest resident set (VmRSS) of each worker process, sampled every second;
- `incident list --open` (the first 100, by search attributes) and `incident report` latency
  once every incident waits on Legal.

The dev server (SQLite, one writer), the workers (``python -m worker``, the project's workflow cache) and the
load generator share the machine: the figures say where the limit is on it, not on a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from connection import connect, exit_process
from incidents import listing
from incidents.service import build_input, start_incident
from records.tables import AuditRow, records_engine
from reports.report import build_report
from sandbox.server import SandboxServer, free_port
from settings import PROJECT_ROOT, Settings, get_settings
from stack.devserver import (
    ensure_search_attributes,
    start_dev_server,
    stop_process,
    wait_for_client,
)

RESULTS = Path(__file__).with_name("scale_results.md")

PLAYBOOK = """name: scale
version: 1
title: Scale benchmark
description: One SLA'd timer, then Legal's approval.
steps:
  - id: hold
    title: Hold for {timer}
    kind: timer
    duration: {timer}
    sla:
      due: {timer_due}
  - id: legal
    title: Legal decides
    kind: approval
    roles: [legal]
"""


@dataclass
class Figures:
    incidents: int
    workers: int
    timer_s: float
    opened_per_s: float
    first_steps_per_s: float
    open_to_first_step_p50_s: float | None
    open_to_first_step_p99_s: float | None
    timer_lateness_p50_s: float | None
    timer_lateness_p99_s: float | None
    timers_measured: int
    worker_rss_max_mb: float
    list_open_s: float
    report_s: float
    wall_s: float


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def uptake(times: dict[str, dict[str, datetime]], asked_at: dict[str, datetime]) -> float:
    """New incidents the workers took up per second: first steps started, from the first open
    asked to the last first step (the opening rate when the workers keep up, less when not)."""
    started = [t["hold_started"] for t in times.values() if "hold_started" in t]
    if not started or not asked_at:
        return 0.0
    span = (max(started) - min(asked_at.values())).total_seconds()
    return len(started) / max(span, 1e-3)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def step_times(url: str, prefix: str) -> dict[str, dict[str, datetime]]:
    """incident -> {"opened", "hold_started", "hold_done", "legal_asked"}, from the audit log."""
    wanted = {("opened", None): "opened", ("step_started", "hold"): "hold_started",
              ("step_completed", "hold"): "hold_done",
              ("approval_requested", "legal"): "legal_asked"}  # fmt: skip
    out: dict[str, dict[str, datetime]] = {}
    with Session(records_engine(url)) as s:
        rows = s.exec(
            select(AuditRow.incident_id, AuditRow.action, AuditRow.step, AuditRow.at).where(
                AuditRow.incident_id.startswith(prefix)  # type: ignore[union-attr]
            )
        ).all()
    for incident_id, action, step, at in rows:
        name = wanted.get((action, step if action != "opened" else None))
        if name:
            out.setdefault(incident_id, {})[name] = at.replace(tzinfo=at.tzinfo or UTC)
    return out


async def run(args: argparse.Namespace, tmp: Path) -> Figures:
    playbooks = tmp / "playbooks"
    playbooks.mkdir()
    timer = f"{args.timer}s"
    (playbooks / "scale.yaml").write_text(
        PLAYBOOK.format(timer=timer, timer_due=f"{args.timer * 2}s")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CR_")}
    env |= {
        "CR_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "CR_UI_PORT": str(free_port()),
        "CR_DATA_DIR": str(tmp), "CR_DATABASE_URL": f"sqlite:///{tmp / 'records.db'}",
        "CR_PLAYBOOKS_DIR": str(playbooks), "CR_TASK_QUEUE": f"scale-{uuid.uuid4().hex[:6]}",
        "CR_SANDBOX_PORT": str(free_port()), "CR_SANDBOX_STATE_FILE": ":memory:",
        "CR_WORKFLOW_CACHE_SIZE": str(args.cache),  # workers, and the opener's local_calls
        "CR_LOCAL_CALLS": "true" if args.local_calls else "false",
    }  # fmt: skip
    os.environ.update(env)
    get_settings.cache_clear()
    settings = get_settings()
    server = start_dev_server(settings)
    sandbox = SandboxServer(settings, settings.sandbox_host, settings.sandbox_port)
    sandbox.start_in_thread()  # the emulated vendors the incidents notify
    workers: list[subprocess.Popen[bytes]] = []
    try:
        client = await wait_for_client(lambda: connect(settings))
        await ensure_search_attributes(client)
        log = (tmp / "workers.log").open("ab")
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "worker"],
                env=env,
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            for _ in range(args.workers)
        ]
        peak = {w.pid: 0.0 for w in workers}
        sampling = True

        async def sample() -> None:
            while sampling:
                for w in workers:
                    peak[w.pid] = max(peak[w.pid], rss_mb(w.pid))
                await asyncio.sleep(1)

        sampler = asyncio.create_task(sample())
        prefix = f"SC{uuid.uuid4().hex[:4]}-"
        started = time.monotonic()
        asked_at = await open_all(client, settings, prefix, args)
        opened_s = time.monotonic() - started
        print(f"opened {args.incidents} in {opened_s:.1f} s", file=sys.stderr)
        url = settings.effective_database_url
        deadline = time.monotonic() + args.timer + args.drain
        while time.monotonic() < deadline:
            await asyncio.sleep(5)
            times = await asyncio.to_thread(step_times, url, prefix)
            asked = sum(1 for t in times.values() if "legal_asked" in t)
            print(f"  {asked}/{args.incidents} waiting on Legal", file=sys.stderr)
            if asked >= args.incidents:
                break
        t0 = time.monotonic()
        query = listing.list_query(open_only=True, severity=None, playbook=None, breached=False,
                                   attention=False)  # fmt: skip
        await listing.list_incidents(client, query, 100)
        list_s = time.monotonic() - t0
        t0 = time.monotonic()
        await asyncio.to_thread(build_report, None, None, None, url)
        report_s = time.monotonic() - t0
        sampling = False
        await sampler
        times = await asyncio.to_thread(step_times, url, prefix)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
        stop_process(server)
        sandbox.stop()
    first = [(t["hold_started"] - asked_at[i]).total_seconds() for i, t in times.items()
             if "hold_started" in t and i in asked_at]  # fmt: skip
    late = [(t["hold_done"] - t["hold_started"] - timedelta(seconds=args.timer)).total_seconds()
            for t in times.values() if "hold_done" in t and "hold_started" in t]  # fmt: skip
    return Figures(
        incidents=args.incidents, workers=args.workers, timer_s=args.timer,
        opened_per_s=args.incidents / opened_s,
        first_steps_per_s=uptake(times, asked_at),
        open_to_first_step_p50_s=pct(first, 0.5), open_to_first_step_p99_s=pct(first, 0.99),
        timer_lateness_p50_s=pct(late, 0.5), timer_lateness_p99_s=pct(late, 0.99),
        timers_measured=len(late), worker_rss_max_mb=max(peak.values(), default=0.0),
        list_open_s=list_s, report_s=report_s, wall_s=time.monotonic() - started,
    )  # fmt: skip


async def open_all(
    client: Any, settings: Settings, prefix: str, args: argparse.Namespace
) -> dict[str, datetime]:
    """Open ``args.incidents`` incidents, ``args.concurrency`` at a time; when each was asked
    for (the incident's own ``opened`` entry is written by its first workflow task, later)."""
    asked: dict[str, datetime] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(args.incidents):
        queue.put_nowait(i)

    started = time.monotonic()

    async def opener() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            if args.rate:  # paced: incident i is opened no sooner than i / rate seconds in
                await asyncio.sleep(max(0.0, started + i / args.rate - time.monotonic()))
            asked[f"{prefix}{i}"] = datetime.now(UTC)
            inp = build_input(playbook="scale", severity="sev2", summary="scale", fields={},
                              incident_id=f"{prefix}{i}", opened_by="bench", settings=settings)  # fmt: skip
            await start_incident(client, inp, settings.task_queue)

    await asyncio.gather(*(opener() for _ in range(args.concurrency)))
    return asked


def measure_in_child(workers: int) -> Figures:
    """One run in a process of its own: the payload codec and the records engines a process
    caches point at its run's data directory, which is gone once the run ends."""
    argv = [a for a in sys.argv[1:] if a != "--json" and not a.startswith("--workers=")]
    at = argv.index("--workers") if "--workers" in argv else None
    if at is not None:
        del argv[at : at + 2]
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", *argv, "--workers", str(workers), "--json"],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the run with {workers} worker(s) failed (exit {done.returncode})")
    [figures] = json.loads(done.stdout)
    return Figures(**figures)


def measure_with(args: argparse.Namespace, workers: int) -> Figures:
    """One run with ``workers`` worker processes, on a fresh server and data directory."""
    args = argparse.Namespace(**{**vars(args), "workers": workers})
    with tempfile.TemporaryDirectory(prefix="cr-scale-") as tmp:
        try:
            return asyncio.run(run(args, Path(tmp)))
        finally:
            log = Path(tmp) / "workers.log"
            if args.keep_log and log.exists():
                Path(f"{args.keep_log}.{workers}").write_bytes(log.read_bytes())


def table(rows: list[Figures], args: argparse.Namespace) -> str:
    """The scale-out table: one row per worker count, same load."""

    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    default_cache = Settings.model_fields["workflow_cache_size"].default
    cache = f" --cache {args.cache}" if args.cache != default_cache else ""
    cache += " --local-calls" if args.local_calls else ""
    paced = f", at most {args.rate:g} a second" if args.rate else ""
    rate = f" --rate {args.rate:g}" if args.rate else ""
    lines = [
        "# Scale-out on one machine: 1..N worker processes, one dev server",
        "",
        f"Load: {args.incidents} incidents opened {args.concurrency} at a time through the opening "
        f"service{paced}; each holds a {args.timer:g} s SLA'd timer, then waits on Legal. "
        f"Workflow cache: {args.cache} workflows per worker (CR_WORKFLOW_CACHE_SIZE); the engine's "
        f"own calls as {'local activities' if args.local_calls else 'activities'} "
        "(CR_LOCAL_CALLS). Reproduce: `make bench-scale "
        f'ARGS="--incidents {args.incidents} --timer {args.timer:g}{rate} '
        f'--workers {args.workers}{cache}"`.',
        "",
        "| workers | opened/s | taken up/s | open-to-first-step p50 / p99 (s) "
        "| timer lateness p50 / p99 (s) | timers measured | worker RSS max (MB) "
        "| list --open (s) | report (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in rows:
        lines.append(
            f"| {f.workers} | {f.opened_per_s:.0f} | {f.first_steps_per_s:.0f} | "
            f"{s(f.open_to_first_step_p50_s)} / {s(f.open_to_first_step_p99_s)} | "
            f"{s(f.timer_lateness_p50_s)} / {s(f.timer_lateness_p99_s)} | {f.timers_measured} | "
            f"{f.worker_rss_max_mb:.0f} | {f.list_open_s:.2f} | {f.report_s:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument("--workers", default="1",
                        help="worker processes; a list (1,2,4) runs each and writes a table")  # fmt: skip
    parser.add_argument("--timer", type=float, default=240.0, help="the timer step, seconds")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument(
        "--rate", type=float, default=0.0,
        help="open at most this many incidents a second (0: as fast as the opener goes), so "
        "timers later fire at that rate too, as on a busy day rather than in one burst",
    )  # fmt: skip
    parser.add_argument(
        "--drain", type=float, default=600.0, help="seconds to wait after the timer"
    )
    parser.add_argument(
        "--cache", type=int, default=Settings.model_fields["workflow_cache_size"].default,
        help="workflows each worker keeps cached (CR_WORKFLOW_CACHE_SIZE; 0 replays every task: "
        "see settings.workflow_cache_size)",
    )  # fmt: skip
    parser.add_argument(
        "--local-calls", action="store_true",
        help="the engine's own calls as local activities (CR_LOCAL_CALLS; see settings.local_calls)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep-log", help="copy the workers' log here")
    args = parser.parse_args()
    code = 0
    try:
        counts = [int(n) for n in str(args.workers).split(",")]
        if any(n < 1 for n in counts):
            raise ValueError(f"--workers {args.workers}: expected worker counts of 1 or more")
        rows = (
            [measure_with(args, counts[0])]
            if len(counts) == 1
            else [measure_in_child(n) for n in counts]
        )
        if args.json:
            print(json.dumps([asdict(f) for f in rows], indent=2))
        else:
            for figures in rows:
                for key, value in asdict(figures).items():
                    shown = f"{value:.2f}" if isinstance(value, float) else value
                    print(f"{key:28} {shown}")
        if len(rows) > 1:
            RESULTS.write_text(table(rows, args))
            print(f"table written to {RESULTS}", file=sys.stderr)
    except Exception as err:  # noqa: BLE001 - one line
        print(f"bench.scale failed: {err!r}", file=sys.stderr)
        code = 1
    exit_process(code)


if __name__ == "__main__":
    main()
