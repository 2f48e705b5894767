"""Bench: incidents through the sandbox emulators with ~30% injected faults, on the real Temporal
dev server and the real workers, counting what the vendors actually received.

Run it with ``python -m bench.integrations [--incidents 50]``. It starts the sandbox on a free
loopback port, a Temporal dev server (the venv's ``temporal`` binary), and the workers from
``worker.build_workers``; opens every incident through ``incidents.service`` with the scenario
playbook of ``bench/scenario.py``; drives each one (SLA breaches page and notify, an outside event, close); then reads
``GET /_sandbox/state`` and writes ``bench/integrations.md``.

The scenario and the tally (``bench/scenario.py``) are shared with ``tests/test_integrations_e2e.py``, so the test proves
per incident what the bench measures over many: one Case, its comments in order, one PagerDuty
alert per paging escalation, one Slack message per notification, and no duplicates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import temporalio
from temporalio.testing import WorkflowEnvironment

import logs
from activities.salesforce_api import forget_tokens
from bench.scenario import (
    PLAYBOOK,
    WRITE_ROUTES,
    activity_attempts,
    drive,
    expected_comments,
    fault_rules,
    open_scenario,
    running_workers,
    tally,
    write_playbook,
)
from connection import DATA_CONVERTER, exit_process
from records.store import reset_engines
from sandbox.server import free_port
from settings import get_settings
from stack import devserver
from workflows.models import TimelineEntry

# --- The bench -------------------------------------------------------------------------------

_REAL_ENDPOINTS = (
    "CR_SALESFORCE_BASE_URL", "CR_SALESFORCE_LOGIN_URL", "CR_PAGERDUTY_URL",
    "CR_SLACK_WEBHOOK_URL", "CR_SLACK_API_URL", "CR_SLACK_BOT_TOKEN", "CR_TWILIO_API_URL",
    "CR_SENDGRID_API_URL", "CR_SALESFORCE_AUTH_FLOW", "CR_EMAIL_TRANSPORT", "CR_DATABASE_URL",
)  # fmt: skip


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        cpus = len(os.sched_getaffinity(0))  # what `nproc` prints
    except AttributeError:
        cpus = os.cpu_count() or 0
    return {
        "nproc": str(cpus),
        "CPU": model,
        "Python": platform.python_version(),
        "OS": f"{platform.system()} {platform.release()}",
        "temporalio": getattr(temporalio, "__version__", "?"),
    }


def render(rows: list[tuple[str, str]], context: dict[str, str], command: str) -> str:
    lines = [
        "# Integrations bench",
        "",
        f"`{command}`, run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. All incidents run at once,",
        f"each the `{PLAYBOOK}` scenario (bench/integrations.py): upsert a Case, three comments,",
        "one Slack post, an acknowledge SLA of 1 s that pages `lers-secondary` and notifies",
        "`#tns-managers`, a containment step whose 1 s SLA pages `tns-leadership`, then close the",
        "Case and the incident. One machine: the Temporal dev server (in-memory), the real workers",
        "from `worker.build_workers` in this process, the sandbox emulators in their own process.",
        "",
        "| Measure | Value |",
        "| --- | --- |",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
        "Counts come from what the emulators stored (`GET /_sandbox/state`), not from the engine.",
        "Time goes to waiting, not work: the fleet-wide Salesforce queue limit admits N",
        "Salesforce activity attempts in no less than N / limit seconds, failed attempts wait",
        "for their retry (action steps every 1 s: sub-second playbook durations do not survive",
        "serialisation yet; escalation notifications 1 s doubling to 60 s), and every incident",
        "waits out its two 1 s SLAs.",
        "",
        "Machine:",
        "",
        *(f"- {name}: {value}" for name, value in context.items()),
        "",
    ]
    return "\n".join(lines)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextlib.contextmanager
def sandbox_process(env: dict[str, str]) -> Iterator[str]:
    """``python -m sandbox`` in its own process (the vendors do not share our GIL); its URL."""
    host, port = env["CR_SANDBOX_HOST"], int(env["CR_SANDBOX_PORT"])
    env = {**env, "CR_SANDBOX_STATE_FILE": ":memory:"}  # a bench never touches .data/
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox"], env=env, stdout=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not devserver.port_open(host, port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start on {host}:{port}")
            time.sleep(0.05)
        yield f"http://{host}:{port}"
    finally:
        devserver.stop_process(proc)


async def run_bench(incidents: int, rate: float, out: Path, command: str) -> bool:
    # Thousands of expected, injected activity failures: keep their tracebacks off the console.
    logs.configure("WARNING")
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="cr-bench-"))
    playbooks_dir = workdir / "playbooks"
    write_playbook(playbooks_dir)
    for name in _REAL_ENDPOINTS:
        os.environ.pop(name, None)
    os.environ.update(
        CR_SANDBOX_HOST="127.0.0.1",
        CR_SANDBOX_PORT=str(free_port()),
        CR_DATABASE_URL=f"sqlite:///{workdir / 'cr.db'}",
        CR_HTTP_TIMEOUT_SECONDS="5",
        CR_SLACK_BOT_TOKEN="xoxb-bench",  # chat.postMessage: its drops are reconcilable
        CR_TASK_QUEUE=f"bench-{uuid.uuid4().hex[:8]}",
    )
    get_settings.cache_clear()
    reset_engines()
    forget_tokens()
    settings = get_settings()
    with sandbox_process(dict(os.environ)) as sandbox_url:
        drops = dict.fromkeys(WRITE_ROUTES, 3)
        httpx.post(f"{sandbox_url}/_sandbox/faults", json=fault_rules(rate=rate, drops=drops),
                   timeout=5).raise_for_status()  # fmt: skip
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(devserver.temporal_binary()),
            data_converter=DATA_CONVERTER,
            search_attributes=devserver.search_attribute_keys(),
            dev_server_log_level="error",
        )
        ids = [f"BENCH-{uuid.uuid4().hex[:8]}-{n:03d}" for n in range(incidents)]
        latencies: list[float] = []
        attempts: Counter[str] = Counter()
        async with running_workers(env.client, settings):

            async def one(iid: str) -> list[TimelineEntry]:
                began = time.monotonic()
                handle = await open_scenario(env.client, settings, playbooks_dir, iid)
                entries = await drive(handle, timeout=900)
                latencies.append(time.monotonic() - began)
                attempts.update(await activity_attempts(handle))
                return entries

            started = time.monotonic()
            timelines = await asyncio.gather(*(one(iid) for iid in ids))
            wall = time.monotonic() - started
        snapshot = httpx.get(f"{sandbox_url}/_sandbox/state", timeout=10).json()
        await env.shutdown()

    tallies = tally(snapshot, ids)
    problems = [p for t in tallies.values() for p in t.problems()]
    failed_steps = sum(e.kind == "step_failed" for tl in timelines for e in tl)
    failed_notices = sum(e.kind == "notification_failed" for tl in timelines for e in tl)
    requests = sum(snapshot["requests"].values())
    injected = sum(snapshot["faults_injected"].values())
    dropped = sum(r["injected"] for r in snapshot["rules"] if r["kind"] == "drop_after_commit")
    duplicates = sum(t.duplicates for t in tallies.values())
    sf_attempts = sum(n for name, n in attempts.items() if name.startswith("salesforce."))
    notify_attempts = sum(n for name, n in attempts.items() if name.startswith("notify."))
    sf_first = incidents * 5  # upsert, three comments, update
    notify_first = incidents * 4  # one Slack step, one Slack and two PagerDuty escalations
    in_order = sum(t.comments == expected_comments(t.incident_id) for t in tallies.values())
    rows = [
        ("Incidents opened and closed", f"{len(timelines)}"),
        ("Cases created (expected 1 each)", f"{sum(t.cases for t in tallies.values())}"),
        ("Duplicates (Cases, comments, pages, messages)", f"{duplicates}"),
        ("Comments (expected 3 each)", f"{sum(len(t.comments) for t in tallies.values())}"),
        ("Incidents with all comments once, in order", f"{in_order}"),
        ("Pages: PagerDuty alerts (expected 2 each)",
         f"{sum(len(t.alerts) for t in tallies.values())}"),
        ("PagerDuty events received (retries join the alert)",
         f"{sum(t.pagerduty_events for t in tallies.values())}"),
        ("Slack messages (expected 2 each)", f"{sum(len(t.messages) for t in tallies.values())}"),
        ("Failed steps / failed notifications", f"{failed_steps} / {failed_notices}"),
        ("Activity attempts: Salesforce / notifications (first tries)",
         f"{sf_attempts} / {notify_attempts} ({sf_first} / {notify_first})"),
        ("Vendor requests received", f"{requests}"),
        ("Faults injected (503 + 429/403 throttles + drops)",
         f"{injected} ({injected / max(requests, 1):.0%} of requests)"),
        ("Responses dropped after commit", f"{dropped}"),
        ("Wall time, all incidents concurrently", f"{wall:.1f} s"),
        ("Per incident, open to closed: p50 / p95 / max",
         f"{statistics.median(latencies):.1f} s / {_percentile(latencies, 0.95):.1f} s / "
         f"{max(latencies):.1f} s"),
        ("Salesforce queue rate limit", f"{settings.salesforce_max_activities_per_second:g}/s"),
    ]  # fmt: skip
    context = machine()
    context["Fault mix"] = (
        f"{rate:.0%} of every vendor route (half 503, half 429 with Retry-After 0.05 s; Salesforce "
        "throttles as 403 REQUEST_LIMIT_EXCEEDED), plus 3 dropped-after-commit responses on each "
        f"of {', '.join(WRITE_ROUTES)}; Slack via chat.postMessage"
    )
    text = render(rows, context, command)
    if problems:
        text += "\nProblems:\n\n" + "\n".join(f"- {p}" for p in problems[:50]) + "\n"
    out.write_text(text)
    print(text)
    return not problems and duplicates == 0 and failed_steps == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=50)
    parser.add_argument("--fault-rate", type=float, default=0.30)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("integrations.md"))
    args = parser.parse_args()
    command = ".venv/bin/python -m bench.integrations"
    if args.incidents != 50 or args.fault_rate != 0.30:
        command += f" --incidents {args.incidents} --fault-rate {args.fault_rate:g}"
    code = 1
    try:
        ok = asyncio.run(run_bench(args.incidents, args.fault_rate, args.out, command))
        code = 0 if ok else 1
    except Exception as err:  # noqa: BLE001 - one line, then leave without the SDK's teardown
        print(f"bench failed: {type(err).__name__}: {err}", file=sys.stderr)
    exit_process(code)


if __name__ == "__main__":
    main()
