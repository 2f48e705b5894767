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

The dev server (SQLite, one writer), the workers (``python -m worker``, no workflow cache) and the
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

    async def opener() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            asked[f"{prefix}{i}"] = datetime.now(UTC)
            inp = build_input(playbook="scale", severity="sev2", summary="scale", fields={},
                              incident_id=f"{prefix}{i}", opened_by="bench", settings=settings)  # fmt: skip
            await start_incident(client, inp, settings.task_queue)

    await asyncio.gather(*(opener() for _ in range(args.concurrency)))
    return asked


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--timer", type=float, default=240.0, help="the timer step, seconds")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument(
        "--drain", type=float, default=600.0, help="seconds to wait after the timer"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep-log", help="copy the workers' log here")
    args = parser.parse_args()
    code = 0
    try:
        with tempfile.TemporaryDirectory(prefix="cr-scale-") as tmp:
            try:
                figures = asyncio.run(run(args, Path(tmp)))
            finally:
                log = Path(tmp) / "workers.log"
                if args.keep_log and log.exists():
                    Path(args.keep_log).write_bytes(log.read_bytes())
        if args.json:
            print(json.dumps(asdict(figures), indent=2))
        else:
            for key, value in asdict(figures).items():
                shown = f"{value:.2f}" if isinstance(value, float) else value
                print(f"{key:28} {shown}")
    except Exception as err:  # noqa: BLE001 - one line
        print(f"bench.scale failed: {err!r}", file=sys.stderr)
        code = 1
    exit_process(code)


if __name__ == "__main__":
    main()
