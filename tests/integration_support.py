"""Fixtures and helpers for the integration tests: the sandbox on a free loopback port, settings
pointing at it with a fresh SQLite database per test, and a way to call activities as Temporal does.

Import the fixtures into a test module with ``from tests.integration_support import *``-style
explicit imports; they are not in conftest.py so the lead's fixtures stay separate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from temporalio.testing import ActivityEnvironment

from activities.salesforce_api import forget_tokens
from records.store import reset_engines
from sandbox.server import SandboxServer, free_port, running_sandbox
from settings import Settings, get_settings
from workflows.models import ActionRequest, ActionResult

# Real endpoints configured in the developer's environment must not leak into these tests.
_REAL_ENDPOINTS = (
    "CR_SALESFORCE_BASE_URL", "CR_SALESFORCE_LOGIN_URL", "CR_PAGERDUTY_URL",
    "CR_SLACK_WEBHOOK_URL", "CR_SLACK_API_URL", "CR_SLACK_BOT_TOKEN", "CR_TWILIO_API_URL",
    "CR_SENDGRID_API_URL", "CR_SALESFORCE_AUTH_FLOW", "CR_EMAIL_TRANSPORT",
)  # fmt: skip


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[SandboxServer]:
    with running_sandbox(Settings(_env_file=None), port=free_port()) as server:  # type: ignore[call-arg]
        yield server


@pytest.fixture
def integration_env(
    sandbox_server: SandboxServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings aimed at the sandbox, a temp database, cold token cache, emptied emulators."""
    for name in _REAL_ENDPOINTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CR_SANDBOX_HOST", sandbox_server.config.host)
    monkeypatch.setenv("CR_SANDBOX_PORT", str(sandbox_server.config.port))
    monkeypatch.setenv("CR_DATABASE_URL", f"sqlite:///{tmp_path / 'cr.db'}")
    monkeypatch.setenv("CR_HTTP_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("CR_PAGERDUTY_RETRY_DELAY_SECONDS", "0.05")
    monkeypatch.setenv("CR_SALESFORCE_LIMIT_RETRY_SECONDS", "0.5")
    get_settings.cache_clear()
    reset_engines()
    forget_tokens()
    control(sandbox_server, "POST", "/_sandbox/reset")
    yield get_settings()
    get_settings.cache_clear()
    reset_engines()
    forget_tokens()


def refresh_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    """Change settings mid-test (``CR_`` variables) and forget cached tokens."""
    for key, value in env.items():
        monkeypatch.setenv(f"CR_{key.upper()}", value)
    get_settings.cache_clear()
    forget_tokens()
    return get_settings()


def control(server: SandboxServer, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, server.url + path, json=body, timeout=5)
    response.raise_for_status()
    return response.json()


def state(server: SandboxServer) -> dict[str, Any]:
    return control(server, "GET", "/_sandbox/state")  # type: ignore[no-any-return]


def inject(server: SandboxServer, **rule: Any) -> None:
    control(server, "POST", "/_sandbox/faults", {"rules": [rule]})


def configure(server: SandboxServer, **cfg: Any) -> None:
    control(server, "POST", "/_sandbox/config", cfg)


def request(
    operation: str, args: dict[str, Any], *, incident: str = "inc-1", step: str = "s1",
    key: str | None = None, severity: str = "sev1",
) -> ActionRequest:  # fmt: skip
    return ActionRequest(
        incident_id=incident, step_id=step, operation=operation, args=args, severity=severity,
        playbook="emergency-disclosure", idempotency_key=key or f"{incident}:{step}:{operation}",
    )  # fmt: skip


async def run_activity(fn: Any, req: ActionRequest) -> ActionResult:
    """Call the activity the way a worker does, so ``activity.info()`` works."""
    return await ActivityEnvironment().run(fn, req)  # type: ignore[no-any-return]


class ThreadedServer:
    """Any uvicorn.Server in a background thread (used for the intake endpoint)."""

    def __init__(self, server: uvicorn.Server) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://{self.server.config.host}:{self.server.config.port}"
