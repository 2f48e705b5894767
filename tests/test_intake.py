"""The case-intake endpoint over real HTTP: signatures, routing, idempotent opening, rejections."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from incidents.service import IncidentClosed
from intake import app as intake
from sandbox.server import free_port
from settings import get_settings
from tests.integration_support import ThreadedServer

SECRET = "whsec_" + "dGVzdC1pbnRha2Utc2VjcmV0LTAxMjM0NTY3"  # base64("test-intake-secret-01234567")


@dataclass
class Opened:
    incident_id: str
    workflow_id: str
    run_id: str
    created: bool


class FakeOpener:
    """Stands in for incidents.service.open_incident: same keywords, same idempotency contract."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.incidents: dict[str, dict[str, Any]] = {}
        self.fail: Exception | None = None

    async def __call__(self, **kwargs: Any) -> Opened:
        if self.fail:
            raise self.fail
        self.calls.append(kwargs)
        created = kwargs["incident_id"] not in self.incidents
        self.incidents.setdefault(kwargs["incident_id"], kwargs)
        iid = kwargs["incident_id"]
        return Opened(iid, f"incident-{iid}", "run-1", created)


@pytest.fixture
def env(monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - match: {type: safety.alert, data.kind: [threat_to_life, self_harm]}\n"
        "    playbook: emergency-disclosure\n"
        "    severity: sev0\n"
        "  - match: {type: salesforce.case.created, data.category: preservation}\n"
        "    playbook: preservation\n"
    )
    monkeypatch.setenv("CR_INTAKE_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("CR_INTAKE_RULES_FILE", str(rules))
    monkeypatch.setenv("CR_INTAKE_PORT", str(free_port()))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def opener() -> FakeOpener:
    return FakeOpener()


@pytest.fixture
def endpoint(env, opener):  # type: ignore[no-untyped-def]
    with ThreadedServer(intake.build_server(env, opener)) as server:
        yield server.url + "/webhooks/intake"


def signed(payload: Any, *, msg_id: str = "msg_1", at: datetime | None = None,
           secret: str = SECRET) -> tuple[bytes, dict[str, str]]:  # fmt: skip
    body = payload if isinstance(payload, str) else json.dumps(payload)
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, at, body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
               "webhook-signature": signature, "content-type": "application/json"}  # fmt: skip
    return body.encode(), headers


ALERT = {"type": "safety.alert", "timestamp": "2026-01-01T00:00:00Z",
         "data": {"id": "al-42", "kind": "threat_to_life", "summary": "Credible threat",
                  "jurisdiction": "DE", "nested": {"ignored": True}}}  # fmt: skip
CASE = {"type": "salesforce.case.created",
        "data": {"id": "5003000000D8cuI", "category": "preservation", "subject": "2703(f)",
                 "severity": "sev3"}}  # fmt: skip


def post(url: str, payload: Any, **kw: Any) -> httpx.Response:
    body, headers = signed(payload, **kw)
    return httpx.post(url, content=body, headers=headers)


def test_signed_alert_opens_routed_playbook(endpoint, opener):
    response = post(endpoint, ALERT)
    assert response.status_code == 201
    assert response.json() == {
        "incident_id": "alert-al-42", "workflow_id": "incident-alert-al-42", "run_id": "run-1",
        "created": True, "playbook": "emergency-disclosure", "severity": "sev0",
    }  # fmt: skip
    (call,) = opener.calls
    assert call["playbook"] == "emergency-disclosure" and call["severity"] == "sev0"
    assert call["summary"] == "Credible threat" and call["opened_by"] == "intake:safety.alert"
    assert call["fields"]["jurisdiction"] == "DE" and "nested" not in call["fields"]


def test_case_routes_by_category_and_takes_severity_from_payload(endpoint, opener):
    response = post(endpoint, CASE)
    assert response.status_code == 201 and response.json()["incident_id"] == "sf-5003000000D8cuI"
    assert opener.calls[0]["playbook"] == "preservation"
    assert opener.calls[0]["severity"] == "sev3"


def test_replayed_webhook_opens_nothing_new(endpoint, opener):
    body, headers = signed(ALERT)
    assert httpx.post(endpoint, content=body, headers=headers).status_code == 201
    replay = httpx.post(endpoint, content=body, headers=headers)
    assert replay.status_code == 200 and replay.json()["created"] is False
    redelivered = post(endpoint, ALERT, msg_id="msg_2")  # same case, new delivery id
    assert redelivered.json()["created"] is False
    assert len(opener.incidents) == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"secret": "whsec_" + "b3RoZXItc2VjcmV0LTAxMjM0NTY3ODk="}, "bad_signature"),
        ({"skew": timedelta(minutes=-10)}, "stale_timestamp"),
        ({"skew": timedelta(minutes=10)}, "stale_timestamp"),
    ],
)
def test_bad_signatures_are_rejected(endpoint, opener, kwargs, error):
    kwargs = dict(kwargs)
    if "skew" in kwargs:  # from the moment the test runs, not when the suite was collected
        kwargs["at"] = datetime.now(UTC) + kwargs.pop("skew")
    response = post(endpoint, ALERT, **kwargs)
    assert response.status_code == 401 and response.json()["error"] == error
    assert opener.calls == []


def test_unsigned_and_tampered_requests_are_rejected(endpoint, opener):
    unsigned = httpx.post(endpoint, json=ALERT)
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "missing_signature"
    body, headers = signed(ALERT)
    tampered = httpx.post(endpoint, content=body.replace(b"al-42", b"al-43"), headers=headers)
    assert tampered.status_code == 401 and tampered.json()["error"] == "bad_signature"
    garbled = httpx.post(endpoint, content=body, headers={**headers, "webhook-signature": "v1"})
    assert garbled.status_code == 401
    assert opener.calls == []


@pytest.mark.parametrize(
    ("payload", "status", "error"),
    [
        ("{not json", 400, "malformed_body"),
        ({"type": "safety.alert"}, 422, "invalid_payload"),
        ({"type": "safety.alert", "data": {"kind": "threat_to_life"}}, 422, "invalid_payload"),
        ({"type": "safety.alert", "data": {"id": "../x", "kind": "self_harm"}}, 422,
         "invalid_payload"),
        ({"type": "billing.dispute", "data": {"id": "1"}}, 422, "no_route"),
    ],
)  # fmt: skip
def test_malformed_bodies_are_rejected(endpoint, opener, payload, status, error):
    response = post(endpoint, payload)
    assert response.status_code == status and response.json()["error"] == error
    assert response.json()["detail"] and "\n" not in response.json()["detail"]
    assert response.json()["field"] and response.json()["expected"]
    assert opener.calls == []


class RecordingLog:
    """Stands in for the intake's structlog logger: (level, event, keys) per call."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.lines.append((level, event, kw))


@pytest.mark.parametrize(
    "closed_at", [datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC), None], ids=["when", "unknown"]
)
def test_redelivery_of_a_closed_incident_answers_200_and_opens_nothing(
    endpoint, opener, monkeypatch, closed_at
):
    """An incident id is unique forever: the service refuses to open a closed one, and intake
    tells the sender so with a 200 (not an error it would retry), and logs ids only."""
    recorded = RecordingLog()
    monkeypatch.setattr(intake, "log", recorded)
    opener.fail = IncidentClosed("alert-al-42", closed_at)
    response = post(endpoint, ALERT, msg_id="msg_redelivered")
    assert response.status_code == 200
    assert response.json() == {
        "created": False, "status": "closed", "incident_id": "alert-al-42",
        "closed_at": closed_at.isoformat() if closed_at else None,
    }  # fmt: skip
    assert opener.calls == [] and opener.incidents == {}
    assert recorded.lines == [
        ("info", "intake.redelivered_closed",
         {"incident_id": "alert-al-42", "webhook_id": "msg_redelivered"}),
    ]  # fmt: skip


def test_open_failures_map_to_4xx_and_503(endpoint, opener):
    opener.fail = LookupError("unknown playbook 'emergency-disclosure'")
    assert post(endpoint, ALERT).json()["error"] == "cannot_open"
    opener.fail = ConnectionError("temporal down")
    assert post(endpoint, ALERT).status_code == 503


def test_default_rules_and_the_install_secret(monkeypatch, tmp_path):
    """Unset, the secret is the install's own: generated once (0600), never the known DEV_SECRET."""
    monkeypatch.delenv("CR_INTAKE_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("CR_INTAKE_RULES_FILE", raising=False)
    monkeypatch.delenv("CR_SALESFORCE_BASE_URL", raising=False)
    monkeypatch.setenv("CR_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        settings = get_settings()
        secret = intake.webhook_secret(settings)
        assert secret.startswith("whsec_") and secret != intake.DEV_SECRET
        Webhook(secret)  # the Standard Webhooks shape
        path = tmp_path / "data" / "intake-webhook-secret"
        assert path.read_text().strip() == secret and path.stat().st_mode & 0o777 == 0o600
        assert intake.webhook_secret(get_settings()) == secret  # generated once, then kept
        rules = intake.load_rules(settings)
        event = {"type": "salesforce.case.created", "data": {"category": "emergency_disclosure"}}
        assert intake.route(event, rules).playbook == "emergency-disclosure"  # type: ignore[union-attr]
        alert = {"type": "safety.alert", "data": {"kind": "self_harm"}}
        assert intake.route(alert, rules).severity == "sev0"  # type: ignore[union-attr]
        case = {"type": "salesforce.case.created", "data": {"category": "Preservation"}}
        assert intake.route(case, rules).playbook == "preservation"  # type: ignore[union-attr]
        assert intake.route({"type": "x", "data": {"category": "spam"}}, rules) is None
        loaded = {r.playbook for r in rules}
        shipped = {p.stem for p in settings.playbooks_dir.glob("*.yaml")}
        assert loaded <= shipped  # every default route names a playbook that exists
        monkeypatch.setenv("CR_SALESFORCE_BASE_URL", "https://acme.my.salesforce.com")
        get_settings.cache_clear()
        with pytest.raises(RuntimeError):
            intake.webhook_secret(get_settings())
    finally:
        get_settings.cache_clear()
