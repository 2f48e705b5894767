"""The emulators over real HTTP: vendor contracts, state, faults, and ``python -m sandbox``."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from sandbox.server import free_port
from settings import PROJECT_ROOT
from tests.integration_support import configure, inject, integration_env, sandbox_server, state

__all__ = ["integration_env", "sandbox_server"]  # fixtures used by name


@pytest.fixture
def sf(integration_env, sandbox_server):  # type: ignore[no-untyped-def]
    """An authenticated client on the emulated org's data API (v62.0)."""
    token = httpx.post(
        sandbox_server.url + "/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "sandbox-client",
              "client_secret": "sandbox-secret"},
    ).json()  # fmt: skip
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    with httpx.Client(base_url=token["instance_url"], headers=headers) as client:
        yield client


V62 = "/services/data/v62.0"


def test_token_response_shape_and_errors(sandbox_server, integration_env):
    url = sandbox_server.url + "/services/oauth2/token"
    body = httpx.post(url, data={"grant_type": "client_credentials", "client_id": "sandbox-client",
                                 "client_secret": "sandbox-secret"}).json()  # fmt: skip
    assert {"access_token", "instance_url", "id", "token_type", "issued_at"} <= body.keys()
    assert body["instance_url"] == sandbox_server.url  # the host root, as a real org answers
    bad = httpx.post(url, data={"grant_type": "password"})
    assert bad.status_code == 400 and bad.json()["error"] == "unsupported_grant_type"
    jwt_grant = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "x.y"}
    jwt_without_cert = httpx.post(url, data=jwt_grant)
    assert (
        jwt_without_cert.status_code == 400 and jwt_without_cert.json()["error"] == "invalid_grant"
    )


def test_versions_and_limit_header(sf):
    versions = sf.get("/services/data/")
    assert versions.status_code == 200 and "sforce-limit-info" not in versions.headers
    assert {"label", "url", "version"} <= versions.json()[0].keys()
    assert any(v["version"] == "62.0" for v in versions.json())
    created = sf.post(f"{V62}/sobjects/Case/", json={"Subject": "s"})
    assert created.status_code == 201 and created.json()["success"] is True
    assert created.headers["sforce-limit-info"] == "api-usage=1/15000"


def test_salesforce_answers_on_the_real_paths_only(sf, sandbox_server):
    """Token at /services/oauth2/token, REST under {instance_url}/services/data/vXX.X: nothing
    under an emulator-only prefix, so a real client needs no special configuration."""
    assert str(sf.base_url).rstrip("/") == sandbox_server.url
    assert sf.get("/services/data").status_code == 200
    limits = sf.get(f"{V62}/limits")
    assert limits.status_code == 200 and "sforce-limit-info" in limits.headers
    assert limits.json()["DailyApiRequests"]["Max"] == 15000
    legacy = httpx.post(sandbox_server.url + "/salesforce/services/oauth2/token",
                        data={"grant_type": "client_credentials"})  # fmt: skip
    assert legacy.status_code == 404
    assert sf.get(f"/salesforce{V62}/query", params={"q": "SELECT Id FROM Case"}).status_code == 404


def test_retired_version_and_bad_session(sf):
    gone = sf.get("/services/data/v30.0/query", params={"q": "SELECT Id FROM Case"})
    assert gone.status_code == 410
    anon = httpx.get(
        str(sf.base_url).rstrip("/") + f"{V62}/query", params={"q": "SELECT Id FROM Case"}
    )
    assert anon.status_code == 401 and anon.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_upsert_codes(sf):
    path = f"{V62}/sobjects/Case/Incident_Id__c/inc-7"
    assert sf.patch(path, json={"Subject": "a"}).status_code == 201
    updated = sf.patch(path, json={"Subject": "b"})
    assert updated.status_code == 200 and updated.json()["created"] is False
    assert sf.patch(path.replace("v62.0", "v45.0"), json={"Subject": "c"}).status_code == 204
    only = sf.patch(f"{V62}/sobjects/Case/Incident_Id__c/inc-8?updateOnly=true", json={})
    assert only.status_code == 404
    sf.post(f"{V62}/sobjects/Case/", json={"Subject": "d", "Incident_Id__c": "inc-7"})
    ambiguous = sf.patch(path, json={"Subject": "e"})
    assert ambiguous.status_code == 300 and len(ambiguous.json()) == 2
    assert sf.patch(f"{V62}/sobjects/Case/Nope__c/x", json={}).status_code == 404


def test_validation_errors_are_arrays(sf):
    missing = sf.post(f"{V62}/sobjects/CaseComment/", json={"CommentBody": "x"})
    assert missing.status_code == 400
    (error,) = missing.json()
    assert error["errorCode"] == "REQUIRED_FIELD_MISSING" and error["fields"] == ["ParentId"]
    assert (
        sf.post(f"{V62}/sobjects/Case/", json={"Bogus": 1}).json()[0]["errorCode"]
        == "INVALID_FIELD"
    )
    bad_query = sf.get(f"{V62}/query", params={"q": "DELETE FROM Case"})
    assert bad_query.status_code == 400 and bad_query.json()[0]["errorCode"] == "MALFORMED_QUERY"
    assert sf.patch(f"{V62}/sobjects/Case/bad", json={}).json()[0]["errorCode"] == "MALFORMED_ID"


def test_query_pages(sf, sandbox_server):
    for n in range(3):
        sf.post(f"{V62}/sobjects/Case/", json={"Subject": f"s{n}", "Incident_Id__c": "inc-q"})
    configure(sandbox_server, query_page_size=2)
    q = "SELECT Id, Subject FROM Case WHERE Incident_Id__c = 'inc-q' ORDER BY CreatedDate ASC"
    page = sf.get(f"{V62}/query", params={"q": q}).json()
    assert page["totalSize"] == 3 and not page["done"] and len(page["records"]) == 2
    assert page["records"][0]["attributes"]["type"] == "Case"
    rest = sf.get(page["nextRecordsUrl"]).json()
    assert rest["done"] and [r["Subject"] for r in rest["records"]] == ["s2"]


def test_daily_limit_and_token_expiry(sf, sandbox_server):
    configure(sandbox_server, daily_limit=1)
    assert sf.post(f"{V62}/sobjects/Case/", json={"Subject": "s"}).status_code == 201
    spent = sf.post(f"{V62}/sobjects/Case/", json={"Subject": "s"})
    assert spent.status_code == 403 and spent.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    httpx.post(sandbox_server.url + "/_sandbox/faults", json={"expire_tokens": True})
    assert sf.get(f"{V62}/query", params={"q": "SELECT Id FROM Case"}).status_code == 401


def test_fault_rate_is_seeded_and_countable(sf, sandbox_server):
    rule = {"route": "salesforce.*", "rate": 0.3, "status": 503}
    httpx.post(sandbox_server.url + "/_sandbox/faults", json={"seed": 7, "rules": [rule]})
    codes = [
        sf.post(f"{V62}/sobjects/Case/", json={"Subject": "s"}).status_code for _ in range(100)
    ]
    failures = codes.count(503)
    assert 15 <= failures <= 45 and set(codes) == {201, 503}
    snapshot = state(sandbox_server)
    assert snapshot["faults_injected"]["salesforce.create"] == failures
    assert len(snapshot["salesforce"]["records"]["Case"]) == 100 - failures
    httpx.delete(sandbox_server.url + "/_sandbox/faults")
    assert state(sandbox_server)["rules"] == []


def test_throttle_latency_and_drop(integration_env, sandbox_server):
    url = sandbox_server.url + "/slack/services/T1/B1/x"
    inject(sandbox_server, route="slack.webhook", kind="throttle", retry_after=2, times=1)
    throttled = httpx.post(url, json={"text": "hi"})
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "2"
    inject(sandbox_server, route="slack.webhook", kind="latency", latency_ms=120)
    started = time.monotonic()
    ok = httpx.post(url, json={"text": "hi"})
    assert ok.text == "ok" and time.monotonic() - started >= 0.1
    inject(sandbox_server, route="slack.webhook", kind="drop_after_commit", times=1)
    with pytest.raises(httpx.TransportError):
        httpx.post(url, json={"text": "dropped"})
    texts = [m["text"] for m in state(sandbox_server)["slack"]["messages"]]
    assert texts == ["hi", "dropped"]
    assert httpx.post(url, json={}).text == "no_text"


def test_pagerduty_alert_state(integration_env, sandbox_server):
    url = sandbox_server.url + "/pagerduty/v2/enqueue"
    key = "k" * 32
    trigger = {"routing_key": key, "event_action": "trigger", "dedup_key": "inc-1:t1",
               "payload": {"summary": "s", "source": "cr", "severity": "critical"}}  # fmt: skip
    accepted = httpx.post(url, json=trigger)
    assert accepted.status_code == 202 and accepted.json()["dedup_key"] == "inc-1:t1"
    resolve = {"routing_key": key, "event_action": "resolve", "dedup_key": "inc-1:t1"}
    assert httpx.post(url, json=resolve).status_code == 202
    assert httpx.post(url, json=resolve).status_code == 202  # dropped, still 202
    httpx.post(url, json=trigger)  # after resolve: a new alert
    (alert,) = state(sandbox_server)["pagerduty"]["alerts"]
    assert alert["status"] == "triggered" and alert["opened"] == 2
    no_key = httpx.post(url, json={**trigger, "dedup_key": None}).json()["dedup_key"]
    assert len(no_key) == 36  # a fresh UUID: a new alert every time
    ack = httpx.post(url, json={"routing_key": key, "event_action": "acknowledge"})
    assert ack.status_code == 400 and ack.json()["status"] == "invalid event"


def test_slack_api_twilio_sendgrid_contracts(integration_env, sandbox_server):
    base = sandbox_server.url
    unauth = httpx.post(base + "/slack/api/chat.postMessage", json={"channel": "C1", "text": "x"})
    assert unauth.status_code == 200 and unauth.json() == {"ok": False, "error": "not_authed"}
    sid, token = integration_env.twilio_account_sid, "sandbox-token"
    twilio = f"{base}/twilio/2010-04-01/Accounts/{sid}/Messages.json"
    sms = httpx.post(twilio, data={"To": "+15551230000", "From": "+15005550006", "Body": "b"},
                     auth=(sid, token))  # fmt: skip
    assert sms.status_code == 201 and sms.json()["sid"].startswith("SM")
    assert httpx.post(twilio, data={"To": "+1"}, auth=(sid, "x")).json()["code"] == 20003
    listed = httpx.get(twilio, params={"To": "+15551230000"}, auth=(sid, token)).json()
    assert [m["sid"] for m in listed["messages"]] == [sms.json()["sid"]]
    mail = {"personalizations": [{"to": [{"email": "a@example.com"}]}],
            "from": {"email": "b@example.com"}, "subject": "s",
            "content": [{"type": "text/plain", "value": "v"}]}  # fmt: skip
    sent = httpx.post(base + "/sendgrid/v3/mail/send", json=mail,
                      headers={"Authorization": "Bearer SG.x"})  # fmt: skip
    assert sent.status_code == 202 and sent.content == b"" and sent.headers["x-message-id"]
    bad = httpx.post(
        base + "/sendgrid/v3/mail/send", json={}, headers={"Authorization": "Bearer SG.x"}
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "personalizations"


def test_reset_and_invalid_faults(integration_env, sandbox_server):
    httpx.post(sandbox_server.url + "/slack/services/T/B/x", json={"text": "x"})
    assert state(sandbox_server)["slack"]["messages"]
    httpx.post(sandbox_server.url + "/_sandbox/reset")
    assert state(sandbox_server)["slack"]["messages"] == []
    bad = httpx.post(sandbox_server.url + "/_sandbox/faults", json={"rules": [{"rate": 2}]})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_faults"


def _serve_sandbox_process(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "sandbox"], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_sandbox/state", timeout=1)
            return proc
        except httpx.TransportError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)


def test_python_dash_m_sandbox_keeps_its_state_across_restarts(tmp_path):
    """As `make run` is restarted: the Case written before is still there after (SIGTERM)."""
    port = free_port()
    env = {**os.environ, "CR_SANDBOX_PORT": str(port), "CR_SANDBOX_HOST": "127.0.0.1",
           "CR_SANDBOX_STATE_FILE": str(tmp_path / "sandbox-state.json")}  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    proc = _serve_sandbox_process(env, port)
    try:
        assert httpx.get(url + "/_sandbox/state").json()["salesforce"]["api_usage"] == 0
        token = httpx.post(url + "/services/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": "sandbox-client",
            "client_secret": "sandbox-secret"}).json()  # fmt: skip
        assert token["instance_url"] == url
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        created = httpx.patch(f"{url}{V62}/sobjects/Case/Incident_Id__c/inc-r",
                              json={"Subject": "kept"}, headers=headers)  # fmt: skip
        assert created.status_code == 201
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    proc = _serve_sandbox_process(env, port)
    try:
        cases = httpx.get(url + "/_sandbox/state").json()["salesforce"]["records"]["Case"]
        assert [c["Subject"] for c in cases.values()] == ["kept"]
        again = httpx.patch(f"{url}{V62}/sobjects/Case/Incident_Id__c/inc-r",
                            json={"Status": "Closed"}, headers=headers)  # fmt: skip
        assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
