"""End to end on the real Temporal dev server with the real workers and the sandbox emulators.

Each test opens incidents through ``incidents.service`` on its own task queue, with the workers from
``worker.build_workers`` polling it, and then counts what the emulated vendors received. The
scenario playbook and the tally are shared with the bench (``bench/integrations.py``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities import ledger
from bench.scenario import (
    PLAYBOOK,
    WRITE_ROUTES,
    drive,
    expected_comments,
    fault_rules,
    open_scenario,
    poll,
    running_workers,
    tally,
    write_playbook,
)
from intake import app as intake
from playbooks.loader import load_playbook
from sandbox.server import SandboxServer, free_port
from settings import Settings
from tests.integration_support import (
    ThreadedServer,
    control,
    integration_env,
    refresh_settings,
    sandbox_server,
    state,
)
from workflows.incident import IncidentWorkflow
from workflows.names import SA_PLAYBOOK, SIGNAL_EVENT

__all__ = ["integration_env", "sandbox_server"]  # fixtures used by name

pytestmark = pytest.mark.e2e
SECRET = "whsec_" + "ZTJlLWludGFrZS1zZWNyZXQtMDEyMzQ1Njc4OQ=="  # base64("e2e-intake-secret-...")


@pytest.fixture
def playbooks_dir(tmp_path: Path) -> Path:
    write_playbook(tmp_path / "playbooks")
    return tmp_path / "playbooks"


@pytest.fixture
async def workers(
    dev_env: WorkflowEnvironment, integration_env: Settings
) -> AsyncIterator[Settings]:
    """The real workers on a fresh task queue; activities read the sandbox-aimed settings."""
    settings = integration_env.model_copy(update={"task_queue": f"e2e-{uuid.uuid4().hex[:8]}"})
    async with running_workers(dev_env.client, settings):
        yield settings


def new_id() -> str:
    return f"E2E-{uuid.uuid4().hex[:8]}"


def faults(server: SandboxServer, body: dict[str, Any]) -> None:
    control(server, "POST", "/_sandbox/faults", body)


def rule_injections(snapshot: dict[str, Any], kind: str) -> dict[str, int]:
    return {r["route"]: r["injected"] for r in snapshot["rules"] if r["kind"] == kind}


def details(entries: list[Any], step: str) -> list[str]:
    return [e.detail for e in entries if e.step == step and e.kind == "step_completed"]


def assert_clean(entries: list[Any]) -> None:
    """Every step completed, no notification gave up, the incident closed and its pages were
    resolved."""
    kinds = [e.kind for e in entries]
    assert "step_failed" not in kinds and "notification_failed" not in kinds, kinds
    assert "playbook_complete" in kinds and kinds.count("closed") == 1
    assert kinds[-1] == "pages_resolved", kinds


# --- The incident under 30% faults -----------------------------------------------------------


async def test_incident_under_30_percent_faults_and_a_dropped_commit(
    dev_env, workers, playbooks_dir, sandbox_server
):
    """One Case, comments in order, one alert per paging escalation, one Slack message per
    notification, although ~30% of vendor calls fail (503, or 429/403 throttles) and the response
    to the first comment's POST is dropped after Salesforce committed it."""
    faults(sandbox_server, fault_rules(rate=0.30, drops={"salesforce.create": 1}, seed=3))
    iid = new_id()
    handle = await open_scenario(dev_env.client, workers, playbooks_dir, iid)
    entries = await drive(handle, timeout=120)

    snapshot = state(sandbox_server)
    result = tally(snapshot, [iid])[iid]
    assert result.problems() == []
    assert result.cases == 1 and result.duplicates == 0
    assert result.comments == expected_comments(iid)  # once each, in playbook order
    assert set(result.alerts) == {f"{iid}:lers-secondary", f"{iid}:tns-leadership"}
    assert len(result.messages) == 3  # triage, the acknowledge breach, the close
    # The faults really happened, and the dropped comment was found by its marker, not re-posted.
    assert rule_injections(snapshot, "drop_after_commit") == {"salesforce.create": 1}
    requests, injected = (
        sum(snapshot["requests"].values()),
        sum(snapshot["faults_injected"].values()),
    )
    assert injected >= 0.15 * requests and injected >= 5, (injected, requests)
    assert details(entries, "comment-triage") == ["comment already posted"]
    assert_clean(entries)
    case = next(iter(snapshot["salesforce"]["records"]["Case"].values()))
    assert case["Status"] == "Closed" and case["Subject"] == f"Integration scenario {iid}"


async def test_dropped_slack_pagerduty_and_upsert_responses_are_absorbed(
    dev_env, workers, playbooks_dir, sandbox_server, monkeypatch
):
    """Commit-then-drop on every other write: the Case upsert (replayed as an update), PagerDuty
    (the retried trigger joins the open alert) and chat.postMessage (the ledger's pending claim is
    reconciled from conversations.history instead of posting again)."""
    refresh_settings(monkeypatch, slack_bot_token="xoxb-e2e")
    drops = {route: 1 for route in WRITE_ROUTES if route != "salesforce.create"}
    faults(sandbox_server, {"replace": True, "rules": [
        {"route": route, "kind": "drop_after_commit", "times": 1} for route in drops
    ]})  # fmt: skip
    iid = new_id()
    handle = await open_scenario(dev_env.client, workers, playbooks_dir, iid)
    entries = await drive(handle, timeout=60)

    snapshot = state(sandbox_server)
    result = tally(snapshot, [iid])[iid]
    assert result.problems() == []
    assert rule_injections(snapshot, "drop_after_commit") == drops
    assert result.pagerduty_events == 5  # two alerts, one trigger sent twice, two resolves
    assert all(m["via"] == "api" for m in snapshot["slack"]["messages"])
    rows = ledger.deliveries(iid)
    assert [r.state for r in rows] == ["sent"] * 3 and max(r.attempts for r in rows) == 2
    assert details(entries, "open-case") == ["case updated"]  # the replayed upsert found it
    assert_clean(entries)


# --- Token expiry --------------------------------------------------------------------------


async def test_token_expiry_mid_incident_refreshes_once_and_fails_nothing(
    dev_env, workers, playbooks_dir, sandbox_server
):
    iid = new_id()
    handle = await open_scenario(dev_env.client, workers, playbooks_dir, iid)

    async def expire() -> None:
        assert state(sandbox_server)["salesforce"]["tokens_issued"] == 1
        faults(sandbox_server, {"expire_tokens": True})

    entries = await drive(handle, timeout=60, before_containment=expire)

    snapshot = state(sandbox_server)
    assert snapshot["salesforce"]["tokens_issued"] == 2  # exactly one refresh
    assert snapshot["requests"]["salesforce.token"] == 2
    assert tally(snapshot, [iid])[iid].problems() == []
    assert_clean(entries)
    # The refresh happened inside the call: no Salesforce activity needed a second attempt.
    attempts = {}
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_started_event_attributes"):
            attrs = event.activity_task_started_event_attributes
            attempts[attrs.scheduled_event_id] = attrs.attempt
    assert attempts and set(attempts.values()) == {1}


# --- Intake ----------------------------------------------------------------------------------


def signed(payload: dict[str, Any], msg_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload)
    at = datetime.now(UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, at, body),
        "content-type": "application/json",
    }
    return body.encode(), headers


async def cases_for(server: SandboxServer, iid: str) -> list[dict[str, Any]]:
    records = state(server)["salesforce"]["records"].get("Case", {})
    return [c for c in records.values() if c.get("Incident_Id__c") == iid]


async def test_signed_webhook_opens_the_routed_playbook_once(
    dev_env, integration_env, sandbox_server, monkeypatch
):
    """A signed Salesforce case webhook, through intake.py's own Temporal opener, starts the
    `preservation` playbook on the dev server; the real workers run its first steps against the
    sandbox; the replayed and the redelivered webhook open nothing new."""
    monkeypatch.delenv("CR_INTAKE_RULES_FILE", raising=False)  # the shipped default routing
    settings = refresh_settings(
        monkeypatch,
        temporal_address=dev_env.client.service_client.config.target_host,
        task_queue=f"e2e-intake-{uuid.uuid4().hex[:8]}",
        intake_webhook_secret=SECRET,
        intake_port=str(free_port()),
    )
    source_id = f"500E2E{uuid.uuid4().hex[:9]}"
    iid = f"sf-{source_id}"
    case = {
        "type": "salesforce.case.created",
        "data": {
            "id": source_id, "category": "preservation", "subject": "2703(f) request",
            "requester_agency": "Springfield PD", "requester_email": "officer@example.org",
            "account_id": "acct-42", "jurisdiction": "us",
        },
    }  # fmt: skip
    body, headers = signed(case, "msg_e2e_1")
    client: Client = dev_env.client
    async with (
        running_workers(client, settings),
        httpx.AsyncClient(timeout=30) as http,
    ):
        with ThreadedServer(intake.build_server(settings)) as server:
            url = server.url + "/webhooks/intake"
            first = await http.post(url, content=body, headers=headers)
            assert first.status_code == 201, first.text
            opened = first.json()
            assert opened["incident_id"] == iid and opened["created"] is True
            assert opened["playbook"] == "preservation"

            handle = client.get_workflow_handle(opened["workflow_id"])
            status = await handle.query(IncidentWorkflow.status)
            assert status.playbook == "preservation" and status.severity == "sev2"
            assert status.playbook_hash == load_playbook("preservation").content_hash
            assert status.fields["requester_agency"] == "Springfield PD"
            described = await handle.describe()
            assert described.typed_search_attributes.get(SA_PLAYBOOK) == "preservation"

            async def first_steps_done() -> bool:
                status = await handle.query(IncidentWorkflow.status)
                return any(s.step_id == "legal-hold-snapshot" for s in status.active_steps)

            await poll(first_steps_done, 30, "the preservation Case and snapshot Task")

            # Opened by intake, the incident trusts only the API's keys: an unsigned event sent
            # straight to Temporal is refused and recorded, and sets nothing.
            assert (await handle.query(IncidentWorkflow.status)).trusted_key_ids
            await handle.signal(SIGNAL_EVENT, {"name": "legal_hold_taken", "actor": "mallory",
                                               "data": {"snapshot_ref": "forged"}})  # fmt: skip

            async def refused() -> bool:
                timeline = await handle.query(IncidentWorkflow.timeline)
                return any(e.kind == "message_refused" and e.data.get("code") == "unsigned"
                           for e in timeline)  # fmt: skip

            await poll(refused, 30, "the unsigned event refused")
            status = await handle.query(IncidentWorkflow.status)
            assert status.fields.get("snapshot_ref") != "forged"

            replay = await http.post(url, content=body, headers=headers)
            body2, headers2 = signed(case, "msg_e2e_2")  # same case, new delivery
            redelivered = await http.post(url, content=body2, headers=headers2)
            forged = body.replace(source_id.encode(), b"500E2Eforged")  # signature no longer fits
            rejected = await http.post(url, content=forged, headers=headers)

        for response in (replay, redelivered):
            assert response.status_code == 200, response.text
            assert response.json()["created"] is False
            assert response.json()["run_id"] == opened["run_id"]
        assert (await handle.describe()).run_id == opened["run_id"]
        assert rejected.status_code == 401 and rejected.json()["error"] == "bad_signature"
        with pytest.raises(RPCError) as missing:
            await client.get_workflow_handle("incident-sf-500E2Eforged").describe()
        assert missing.value.status == RPCStatusCode.NOT_FOUND
        (sf_case,) = await cases_for(sandbox_server, iid)
        assert sf_case["Type"] == "Preservation"
        assert sf_case["Subject"] == "Preservation request from Springfield PD"
        tasks = state(sandbox_server)["salesforce"]["records"].get("Task", {})
        assert [t["WhatId"] for t in tasks.values()] == [sf_case["Id"]]
        await handle.terminate("end of test")


def test_scenario_playbook_lints_clean(playbooks_dir):
    loaded = load_playbook(PLAYBOOK, playbooks_dir)
    steps = [s.id for s in loaded.playbook.iter_steps()]
    assert steps[0] == "open-case" and steps[-1] == "close-case"
