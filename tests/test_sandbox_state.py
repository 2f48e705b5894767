"""The sandbox keeps what the vendors received across restarts (``CR_SANDBOX_STATE_FILE``), over
real HTTP: write, stop, start a new server on the same file, read back."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.persist import SandboxStateError
from sandbox.server import SandboxServer, free_port, running_sandbox
from settings import Settings

V62 = "/services/data/v62.0"
CLIENT = {"grant_type": "client_credentials", "client_id": "sandbox-client",
          "client_secret": "sandbox-secret"}  # fmt: skip
ROUTING_KEY = "k" * 32


def plain_settings(tmp_path: Path, **values: Any) -> Settings:
    """Settings from defaults only (no developer .env), data directory under ``tmp_path``."""
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)  # type: ignore[call-arg]


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "sandbox-state.json"


def started(path: Path, tmp_path: Path) -> Any:
    return running_sandbox(plain_settings(tmp_path), port=free_port(), state_file=path)


def token(url: str) -> str:
    return str(httpx.post(url + "/services/oauth2/token", data=CLIENT).json()["access_token"])


def snapshot(url: str) -> dict[str, Any]:
    return httpx.get(url + "/_sandbox/state").json()  # type: ignore[no-any-return]


def write_everything(url: str) -> dict[str, Any]:
    """One of each thing an incident leaves at the vendors; returns what was created."""
    auth = {"Authorization": f"Bearer {token(url)}"}
    sf = httpx.Client(base_url=url + V62, headers=auth)
    case = sf.patch("/sobjects/Case/Incident_Id__c/inc-1", json={"Subject": "s", "Status": "New"})
    comment = sf.post("/sobjects/CaseComment/", json={"ParentId": case.json()["id"],
                                                      "CommentBody": "note [ref:1]"})  # fmt: skip
    trigger = {"routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": "inc-1:p",
               "payload": {"summary": "s", "source": "cr", "severity": "critical"}}  # fmt: skip
    httpx.post(url + "/pagerduty/v2/enqueue", json=trigger).raise_for_status()
    httpx.post(url + "/slack/services/T/B/x", json={"text": "hook"}).raise_for_status()
    posted = httpx.post(url + "/slack/api/chat.postMessage", json={"channel": "C1", "text": "api"},
                        headers={"Authorization": "Bearer xoxb-1"}).json()  # fmt: skip
    sid = "AC" + "0" * 32
    sms = httpx.post(f"{url}/twilio/2010-04-01/Accounts/{sid}/Messages.json",
                     data={"To": "+15551230000", "From": "+15005550006", "Body": "b"},
                     auth=(sid, "sandbox-token"))  # fmt: skip
    mail = {"personalizations": [{"to": [{"email": "a@example.com"}]}],
            "from": {"email": "b@example.com"}, "subject": "s",
            "content": [{"type": "text/plain", "value": "v"}]}  # fmt: skip
    httpx.post(url + "/sendgrid/v3/mail/send", json=mail,
               headers={"Authorization": "Bearer SG.x"}).raise_for_status()  # fmt: skip
    return {"auth": auth, "case": case.json()["id"], "comment": comment.json()["id"],
            "ts": posted["ts"], "sms": sms.json()["sid"]}  # fmt: skip


def kept(snap: dict[str, Any]) -> dict[str, Any]:
    """The parts of ``GET /_sandbox/state`` a restart must keep."""
    org = snap["salesforce"]
    return {"records": org["records"], "api_usage": org["api_usage"],
            "tokens_issued": org["tokens_issued"], "pagerduty": snap["pagerduty"],
            "slack": snap["slack"], "twilio": snap["twilio"], "sendgrid": snap["sendgrid"]}  # fmt: skip


def test_everything_received_survives_a_restart(tmp_path, state_file):
    with started(state_file, tmp_path) as first:
        made = write_everything(first.url)
        httpx.post(first.url + "/_sandbox/faults", json={"rules": [{"route": "slack.*",
                   "rate": 0.0}]})  # fmt: skip
        before = snapshot(first.url)
    with started(state_file, tmp_path) as second:
        after = snapshot(second.url)
        assert kept(after) == kept(before)
        # Fault rules and request counters are test-time settings: a restart starts them afresh.
        assert after["rules"] == [] and after["requests"] == {}
        url = second.url
        sf = httpx.Client(base_url=url + V62, headers=made["auth"])  # the old token still works
        updated = sf.patch("/sobjects/Case/Incident_Id__c/inc-1", json={"Status": "Closed"})
        assert updated.status_code == 200 and updated.json()["id"] == made["case"]
        found = sf.get("/query", params={"q": "SELECT Id, CommentBody FROM CaseComment WHERE "
                                              f"ParentId = '{made['case']}'"}).json()  # fmt: skip
        assert [r["Id"] for r in found["records"]] == [made["comment"]]
        fresh = sf.post("/sobjects/Task/", json={"WhatId": made["case"], "Subject": "t"})
        assert fresh.json()["id"] not in {made["case"], made["comment"]}  # counters carried on
        resolve = {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "inc-1:p"}
        httpx.post(url + "/pagerduty/v2/enqueue", json=resolve).raise_for_status()
        (alert,) = snapshot(url)["pagerduty"]["alerts"]
        assert alert["status"] == "resolved" and alert["opened"] == 1
        history = httpx.get(url + "/slack/api/conversations.history", params={"channel": "C1"},
                            headers={"Authorization": "Bearer xoxb-1"}).json()  # fmt: skip
        assert [m["ts"] for m in history["messages"]] == [made["ts"]]
        sid = "AC" + "0" * 32
        listed = httpx.get(f"{url}/twilio/2010-04-01/Accounts/{sid}/Messages.json",
                           auth=(sid, "sandbox-token")).json()  # fmt: skip
        assert [m["sid"] for m in listed["messages"]] == [made["sms"]]


def test_state_file_is_private_json_written_atomically(tmp_path, state_file):
    with started(state_file, tmp_path) as server:
        httpx.post(server.url + "/slack/services/T/B/x", json={"text": "one"})
        # Written after the change, before the server stops (a killed process keeps it).
        assert json.loads(state_file.read_text())["slack_messages"][0]["text"] == "one"
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        httpx.post(server.url + "/slack/services/T/B/x", json={"text": "two"})
    saved = json.loads(state_file.read_text())
    assert saved["format"] == 1 and [m["text"] for m in saved["slack_messages"]] == ["one", "two"]
    assert "rules" not in saved and "requests" not in saved
    leftovers = sorted(p.name for p in state_file.parent.iterdir())
    assert leftovers == ["sandbox-state.json", "sandbox-state.json.lock"]


def test_reads_count_api_usage_kept_at_stop(tmp_path, state_file):
    with started(state_file, tmp_path) as server:
        headers = {"Authorization": f"Bearer {token(server.url)}"}
        for _ in range(3):
            httpx.get(server.url + V62 + "/query", params={"q": "SELECT Id FROM Case"},
                      headers=headers).raise_for_status()  # fmt: skip
    with started(state_file, tmp_path) as server:
        assert snapshot(server.url)["salesforce"]["api_usage"] == 3


def test_a_committed_write_whose_answer_was_dropped_is_kept(tmp_path, state_file):
    with started(state_file, tmp_path) as server:
        rule = {"route": "salesforce.upsert", "kind": "drop_after_commit", "times": 1}
        httpx.post(server.url + "/_sandbox/faults", json={"rules": [rule]})
        headers = {"Authorization": f"Bearer {token(server.url)}"}
        with pytest.raises(httpx.TransportError):
            httpx.patch(server.url + V62 + "/sobjects/Case/Incident_Id__c/inc-9",
                        json={"Subject": "s"}, headers=headers)  # fmt: skip
        saved = json.loads(state_file.read_text())
    (case,) = saved["salesforce"]["records"]["Case"].values()
    assert case["Incident_Id__c"] == "inc-9"


def test_reset_is_kept_too(tmp_path, state_file):
    with started(state_file, tmp_path) as server:
        httpx.post(server.url + "/slack/services/T/B/x", json={"text": "x"})
        httpx.post(server.url + "/_sandbox/reset")
    with started(state_file, tmp_path) as server:
        assert snapshot(server.url)["slack"]["messages"] == []


def test_two_sandboxes_never_share_a_file(tmp_path, state_file):
    busy = pytest.raises(SandboxStateError, match="in use by another sandbox")
    with started(state_file, tmp_path), busy:
        SandboxServer(plain_settings(tmp_path, sandbox_state_file=str(state_file)),
                      "127.0.0.1", free_port())  # fmt: skip
    with started(state_file, tmp_path):  # released when the first one stopped
        pass


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{not json", "is not JSON"), ('{"format": 2}', "format"),
     ('{"format": 1, "sms": {}}', "sms"), ("[]", "not a sandbox state file")],
)  # fmt: skip
def test_an_unusable_file_is_refused_in_one_line(tmp_path, state_file, content, problem):
    state_file.parent.mkdir(parents=True)
    state_file.write_text(content)
    with pytest.raises(SandboxStateError) as info:
        SandboxServer(plain_settings(tmp_path, sandbox_state_file=str(state_file)),
                      "127.0.0.1", free_port())  # fmt: skip
    message = str(info.value)
    assert problem in message and str(state_file) in message and "\n" not in message
    with started(state_file.with_name("other.json"), tmp_path):
        pass
    # The refused file stays as it was, and its lock was released.
    assert state_file.read_text() == content
    with pytest.raises(SandboxStateError):
        SandboxServer(plain_settings(tmp_path, sandbox_state_file=str(state_file)),
                      "127.0.0.1", free_port())  # fmt: skip


def test_state_file_setting(tmp_path):
    default = plain_settings(tmp_path)
    assert default.effective_sandbox_state_file == tmp_path / "data" / "sandbox-state.json"
    for memory in (":memory:", ""):
        assert (
            plain_settings(tmp_path, sandbox_state_file=memory).effective_sandbox_state_file is None
        )
    chosen = plain_settings(tmp_path, sandbox_state_file=str(tmp_path / "s.json"))
    assert chosen.effective_sandbox_state_file == tmp_path / "s.json"


def test_in_process_sandboxes_stay_in_memory_unless_given_a_file(tmp_path):
    """Tests must not pick up (or overwrite) the state of `make run` or of each other."""
    with running_sandbox(plain_settings(tmp_path), port=free_port()) as server:
        httpx.post(server.url + "/slack/services/T/B/x", json={"text": "x"})
    assert not (tmp_path / "data").exists()
