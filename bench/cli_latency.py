"""`make bench-cli`: the wall time of an `incident` command as a person types it (issue 11):
`incident status X`, `incident list` and `incident approve X STEP --role R --reason r`, each a
new process from start to exit, against the embedded stack and with the API down (the error path).

The stack is `incident up` on a temporary data directory and free ports, as ``make bench-api``
starts it (``bench/api_latency.py``, whose helpers this reuses); the commander and the approver
each get a personal token (``CR_API_TOKEN``). Each command runs the ``incident`` console script
next to this Python, with ``PYTHONPATH`` set to this checkout so the code measured is the code
here, its byte code cached as on any machine after a first run (``PYTHONDONTWRITEBYTECODE`` is
dropped, so the warm-up runs write ``__pycache__``). What a command does at the API is in its
figure too (a status query, a visibility list, the ``approve`` Update): the person waits for it.

Before the clock runs, ``--warmup + --n`` incidents of ``--playbook`` are opened through the API
and each waits for its first approval; every ``approve`` then decides a fresh one, and the incident
it moved is left to settle (untimed) before the next command. The commands take turns in each
round, so drift and background load fall on all alike. "down": the same commands with
``CR_API_PORT`` pointing at a closed port (each must exit 1 with one line, never a traceback).
"python -c pass": the interpreter's own start, the floor under every figure.

Reported per command: the wall time's p50, p99 (nearest rank: of 20 samples, the slowest) and
mean, and the p50 of the CPU time the process used (user + system: what background load on a
shared machine stretches the wall time around), in ms.
`make bench-cli ARGS="--n 50"`; ``--json`` for machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from bench.api_latency import (
    APPROVER,
    OPENER,
    BenchError,
    add_people,
    approver_roles,
    awaiting_approval,
    open_fields,
    stack_env,
    start_stack,
    stop_stack,
    summary,
)
from connection import connect, exit_process
from incidents import actions
from playbooks.loader import load_playbook
from records.store import reset_engines
from sandbox.server import free_port
from settings import PROJECT_ROOT, get_settings

COMMANDS = ("status", "list", "approve")
FLOOR = "python -c pass"
POLL_SECONDS = 0.05


def incident_command() -> list[str]:
    """The `incident` console script of this Python (or ``python -m starter`` without one)."""
    script = Path(sys.executable).parent / "incident"
    return [str(script)] if script.exists() else [sys.executable, "-m", "starter"]


def cli_env(env: dict[str, str], token: str, *, api_down: bool = False) -> dict[str, str]:
    """The stack's configuration, signed in with ``token``, this checkout first on the path, its
    byte code kept (``__pycache__``) as on any machine after the first run."""
    result = env | {"CR_API_TOKEN": token, "CR_CONFIG_DIR": str(Path(env["CR_DATA_DIR"]) / "cfg")}
    result.pop("PYTHONDONTWRITEBYTECODE", None)
    result["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                         env.get("PYTHONPATH")]))  # fmt: skip
    if api_down:
        result["CR_API_PORT"] = str(free_port())  # nothing listens there
    return result


def timed_run(
    argv: list[str], env: dict[str, str], expected: int, expect_text: str
) -> tuple[float, float]:
    """Run one command to its exit; its wall time and CPU time (user + system) in ms. A wrong
    exit code or answer fails the run."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    elapsed = (time.perf_counter() - started) * 1000
    cpu = (_children_cpu() - cpu_before) * 1000
    said = proc.stdout + proc.stderr
    if proc.returncode != expected or expect_text not in said or "Traceback" in said:
        last = (said.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"{' '.join(argv[-6:])}: exit {proc.returncode} (expected {expected}), "
                         f"said {last!r}")  # fmt: skip
    return elapsed, cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the children waited for so far
    return usage.ru_utime + usage.ru_stime


async def opened_and_waiting(
    settings: Any, tokens: dict[str, str], pb: Any, count: int, timeout: float
) -> list[tuple[str, str, str]]:
    """Open ``count`` incidents through the API; each (id, step, role) once it awaits approval."""
    client = await connect(settings)
    tag = uuid.uuid4().hex[:6]
    ids = [f"CLI-{tag}-{n:04d}" for n in range(count)]
    body = {"playbook": pb.name, "summary": "bench-cli", "fields": open_fields(pb, {})}
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"authorization": f"Bearer {tokens[OPENER]}"}
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=timeout) as http:
        for iid in ids:
            reply = await http.post("/incidents", json=body | {"id": iid}, headers=headers)
            if reply.status_code != 201:
                raise BenchError(f"open {iid}: {reply.status_code} {' '.join(reply.text.split())}")
    waiting = []
    for iid in ids:
        pending = await awaiting_approval(client, iid, timeout)
        waiting.append((iid, pending.step_id, sorted(pending.roles)[0]))
    return waiting


async def settle(settings: Any, iid: str, timeout: float) -> None:
    """Wait until ``iid`` runs nothing (no activity, child or workflow task pending)."""
    client: Client = await connect(settings)
    target = actions.handle(client, iid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = (await target.describe()).raw_description
        if not (raw.pending_activities or raw.pending_children) and not raw.HasField(
            "pending_workflow_task"
        ):
            return
        await asyncio.sleep(POLL_SECONDS)
    raise BenchError(f"incident {iid} did not settle within {timeout:.0f}s after its approval")


def measure(cfg: argparse.Namespace, env: dict[str, str], tokens: dict[str, str],
            waiting: list[tuple[str, str, str]]) -> dict[str, Any]:  # fmt: skip
    """Each command ``cfg.warmup + cfg.n`` times, taking turns; the figures per command."""
    settings = get_settings()
    incident = incident_command()
    up_ic, up_ap = cli_env(env, tokens[OPENER]), cli_env(env, tokens[APPROVER])
    down_ic = cli_env(env, tokens[OPENER], api_down=True)
    down_ap = cli_env(env, tokens[APPROVER], api_down=True)
    refused = "cannot reach the API"
    samples: dict[str, list[tuple[float, float]]] = {}

    def round_of(n: int) -> list[tuple[str, Callable[[], tuple[float, float]]]]:
        iid, step, role = waiting[n]
        approve = [*incident, "approve", iid, step, "--role", role, "--reason", "bench"]
        return [
            ("status up", lambda: timed_run([*incident, "status", iid], up_ic, 0, iid)),
            ("list up", lambda: timed_run([*incident, "list"], up_ic, 0, "")),
            ("approve up", lambda: timed_run(approve, up_ap, 0, step)),
            ("status down", lambda: timed_run([*incident, "status", iid], down_ic, 1, refused)),
            ("list down", lambda: timed_run([*incident, "list"], down_ic, 1, refused)),
            ("approve down", lambda: timed_run(approve, down_ap, 1, refused)),
            (FLOOR, lambda: timed_run([sys.executable, "-c", "pass"], up_ic, 0, "")),
        ]

    for n in range(cfg.warmup + cfg.n):
        turns = round_of(n)
        shift = n % len(turns)
        for name, call in turns[shift:] + turns[:shift]:
            measured = call()
            if name == "approve up":  # what it set moving runs out before the next command
                asyncio.run(settle(settings, waiting[n][0], cfg.timeout))
            if n >= cfg.warmup:
                samples.setdefault(name, []).append(measured)
    order = [f"{c} {state}" for state in ("up", "down") for c in COMMANDS] + [FLOOR]
    return {name: summary([wall for wall, _ in samples[name]])
            | {"cpu_p50": summary([cpu for _, cpu in samples[name]])["p50"]}
            for name in order}  # fmt: skip


def render(result: dict[str, Any]) -> None:
    table = Table(title="`incident` wall time, process start to exit")
    for name in ("command", "API", "p50 ms", "p99 ms", "mean ms", "CPU p50 ms"):
        table.add_column(name, justify="left" if name in ("command", "API") else "right")
    for key, stats in result["commands"].items():
        command, _, state = key.partition(" ")
        label = {"up": "up", "down": "down (refused)"}.get(state, "")
        table.add_row(command if state else key, label,
                      *(f"{stats[k]:.0f}" for k in ("p50", "p99", "mean", "cpu_p50")))  # fmt: skip
    console = Console(highlight=False)
    console.print(table)
    console.print(
        f"{result['runs_per_command']} runs per command after {result['warmup']} warm-up, one "
        f"at a time, taking turns; playbook {result['playbook']}; {result['command']}.\n"
        f"Machine: {result['machine']}."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--n", type=int, default=20, help="measured runs per command (default 20)")
    add("--warmup", type=int, default=2, help="unmeasured runs per command first (default 2)")
    add("--playbook", default="emergency-disclosure",
        help="a playbook whose walk reaches an approval without an outside event")  # fmt: skip
    add("--timeout", type=float, default=60.0, help="seconds for any one wait of the run")
    add("--json", action="store_true", help="machine-readable output")
    cfg = parser.parse_args(argv)
    if cfg.n < 1 or cfg.warmup < 0:
        parser.error("--n must be at least 1 and --warmup at least 0")
    return cfg


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cr-bench-cli-", ignore_cleanup_errors=True) as tmp:
        env = stack_env(Path(tmp))
        for name in [k for k in os.environ if k.startswith("CR_")]:
            del os.environ[name]
        os.environ.update({k: v for k, v in env.items() if k.startswith("CR_")})
        get_settings.cache_clear()
        reset_engines()
        settings = get_settings()
        pb = load_playbook(cfg.playbook, settings.playbooks_dir).playbook
        deciding = approver_roles(pb)
        proc = start_stack(env, Path(tmp) / "up.log")
        try:
            tokens = add_people(settings, pb, deciding)
            count = cfg.warmup + cfg.n
            waiting = asyncio.run(opened_and_waiting(settings, tokens, pb, count, cfg.timeout))
            figures = measure(cfg, env, tokens, waiting)
        finally:
            stop_stack(proc)
    return {
        "runs_per_command": cfg.n, "warmup": cfg.warmup, "playbook": cfg.playbook, "unit": "ms",
        "command": " ".join(incident_command()), "commands": figures,
        "machine": f"{os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}",
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)

    def stop(signum: int, _: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through run(): the stack is stopped

    signal.signal(signal.SIGTERM, stop)
    code = 0
    try:
        result = run(cfg)
        if cfg.json:
            print(json.dumps(result, indent=2))
        else:
            render(result)
    except KeyboardInterrupt:
        code = 130
    except SystemExit as stopped:
        code = stopped.code if isinstance(stopped.code, int) else 1
    except Exception as err:  # noqa: BLE001 - one line, never a traceback
        detail = " ".join(str(err).split()) or type(err).__name__
        print(f"bench-cli failed: {detail}", file=sys.stderr)
        code = 1
    exit_process(code)


if __name__ == "__main__":
    main()
