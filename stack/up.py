"""`incident up` (`make run`): the embedded stack in one foreground process group.

The Temporal dev server (``stack/devserver.py``), the sandbox emulators (unless real vendors are
configured), the case-intake webhook and the workers; it prints the addresses and stops everything on
Ctrl-C. If a Temporal server already answers at the configured address, that one is used instead.
Payloads are sealed from the first run on: the master key file is made in the data directory before
anything talks to Temporal (``encryption/``).

Everything it and the dev server write is private: umask 077, the data directory 0700 and its
files 0600 (``datadir.py``). The first start on a data directory generates the intake webhook's
secret (unless ``CR_INTAKE_WEBHOOK_SECRET`` is set) and prints it, that once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import logs
from connection import connect, exit_process
from console.app import build_server as build_api_server
from datadir import private_umask, secure_dir
from encryption import master
from intake.app import build_server
from intake.secret import install_secret, secret_file
from playbooks.operations import salesforce_queue
from sandbox.server import SandboxServer
from settings import PROJECT_ROOT, Settings
from stack.devserver import (
    ensure_search_attributes,
    port_open,
    set_retention,
    split_address,
    start_dev_server,
    stop_process,
    wait_for_client,
)
from stack.first_run import ensure_console_password, ensure_local_admin, local_person
from stack.listeners import Listeners, PortTaken, reserve
from worker import run_workers


def run_stack(settings: Settings) -> None:
    """`incident up`: run everything in the foreground until Ctrl-C, then stop it all."""
    private_umask()
    logs.configure()
    secure_dir(settings.data_dir)
    try:
        listeners = reserve(settings, sandbox=settings.salesforce_base_url is None)
    except PortTaken as err:
        print(f"incident up: {err}", file=sys.stderr, flush=True)
        exit_process(1)
    host, port = split_address(settings.temporal_address)
    server = None
    code = 0
    try:
        if port_open(host, port):
            print(f"Temporal already answers at {settings.temporal_address}: using it")
        else:
            server = start_dev_server(settings)
            set_retention(settings)
        asyncio.run(_serve(settings, listeners, embedded=server is not None))
    except KeyboardInterrupt:
        pass
    except Exception as err:  # noqa: BLE001 - one line, then a clean stop
        print(f"incident up: {err}", file=sys.stderr)
        code = 1
    finally:
        listeners.close()
        if server is not None:
            stop_process(server)
        print("stopped", flush=True)
    exit_process(code)


def payload_keys(settings: Settings) -> str:
    """Make (first run) or check the master keys now, so a bad key list stops the stack at once;
    the line that says where they are."""
    if not settings.payload_encryption:
        return "not encrypted (CR_PAYLOAD_ENCRYPTION=false)"
    ring = master.load(settings)
    return f"sealed (AES-256-GCM), master keys in {ring.path or 'CR_MASTER_KEYS'}"


async def _serve(settings: Settings, listeners: Listeners, *, embedded: bool) -> None:
    keys = await asyncio.to_thread(payload_keys, settings)
    client = await wait_for_client(lambda: connect(settings))
    await ensure_search_attributes(client)
    sandbox = None
    if listeners.sandbox is not None:
        sandbox = SandboxServer(settings, settings.sandbox_host, settings.sandbox_port)
        sandbox.start_in_thread(sockets=[listeners.sandbox])
    admin_token = await asyncio.to_thread(ensure_local_admin, settings)
    console_password = await asyncio.to_thread(ensure_console_password, settings)
    new_secret = _intake_secret(settings)
    intake = build_server(settings)
    api = build_api_server(settings)
    # uvicorn would take over SIGINT/SIGTERM; this process stops everything in one place.
    for server in (intake, api):
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    intake_task = asyncio.create_task(intake.serve(sockets=[listeners.intake]))
    api_task = asyncio.create_task(api.serve(sockets=[listeners.api]))
    spawned = _spawn_workers(settings)
    workers = asyncio.create_task(
        run_workers(settings, stop, client) if not spawned else stop.wait()
    )
    for _ in range(300):  # "Ready." means ready: both HTTP servers listen (at most 30 s)
        if (intake.started and api.started) or intake_task.done() or api_task.done():
            break
        await asyncio.sleep(0.1)
    _print_addresses(settings, embedded=embedded, sandbox=sandbox is not None, token=admin_token,
                     keys=keys, new_secret=new_secret, console_password=console_password)  # fmt: skip
    try:
        await stop.wait()
    finally:
        intake.should_exit = api.should_exit = True
        await asyncio.gather(workers, intake_task, api_task, return_exceptions=True)
        await asyncio.to_thread(_stop_workers, spawned)
        if sandbox is not None:
            sandbox.stop()


def _spawn_workers(settings: Settings) -> list[subprocess.Popen[bytes]]:
    """``CR_WORKER_PROCESSES`` > 1: that many `python -m worker` processes (same settings, same
    process group, so Ctrl-C reaches them too); 1: none, the worker runs in this process."""
    if settings.worker_processes <= 1:
        return []
    return [
        subprocess.Popen([sys.executable, "-m", "worker"], cwd=PROJECT_ROOT)
        for _ in range(settings.worker_processes)
    ]


def _stop_workers(spawned: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """SIGTERM each (a worker drains gracefully), then SIGKILL what is left after ``timeout``."""
    for proc in spawned:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in spawned:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _intake_secret(settings: Settings) -> str | None:
    """The install's intake secret if this start created it (to be shown once), else None."""
    if settings.intake_webhook_secret is not None or settings.salesforce_base_url is not None:
        return None  # configured (or required: intake refuses to start without it)
    secret, created = install_secret(settings)
    return secret if created else None


def _print_addresses(
    settings: Settings,
    *,
    embedded: bool,
    sandbox: bool,
    token: Path | None,
    keys: str,
    new_secret: str | None = None,
    console_password: Path | None = None,
) -> None:
    where = secret_file(settings)
    if settings.intake_webhook_secret is not None:
        signed = "              signed with CR_INTAKE_WEBHOOK_SECRET"
    elif new_secret is not None:
        signed = (f"              signing secret (shown this once): {new_secret}\n"
                  f"              read it again: cat {where}")  # fmt: skip
    else:
        signed = f"              signing secret in {where}" if where.exists() else ""
    lines = [
        f"Temporal      {settings.temporal_address} namespace {settings.temporal_namespace}"
        + (f" (embedded, data in {settings.data_dir})" if embedded else ""),
        f"Web UI        http://127.0.0.1:{settings.ui_port}" if embedded else "",
        f"Intake        http://{settings.intake_host}:{settings.intake_port}/webhooks/intake",
        signed,
        f"API           http://{settings.api_host}:{settings.api_port} (OpenAPI at /docs)",
        f"              a token for {local_person()} (admin) is in {token}" if token else "",
        f"Console       {settings.effective_api_url}/console",
        f"              sign in as {local_person()} with the password in {console_password}"
        if console_password
        else "",
        f"Emulators     {settings.sandbox_url}/_sandbox/state" if sandbox else "",
        f"Worker        task queues {settings.task_queue}, {salesforce_queue(settings.task_queue)}"
        + (f" ({settings.worker_processes} processes)" if settings.worker_processes > 1 else ""),
        f"Payloads      {keys}",
        "Ready. From another terminal: .venv/bin/incident open --playbook physical-safety ...",
        "Ctrl-C stops everything.",
    ]
    print("\n".join(line for line in lines if line), flush=True)
