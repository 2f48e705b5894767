"""The assist endpoints: ``POST /suggest`` (role-checked, one line on a bad body), an incident
opened with ``triage`` records the suggestion beside the person's choice (timeline entry, then the
records' audit log, from which the agreement figures are read), and ``GET .../summary`` from the
records, hidden from outsiders for restricted playbooks."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from assist.recording import agreement, recorded_choices
from incidents.actions import handle
from records.chain import write_batch
from tests.engine_support import has, wait_for_timeline
from tests.integration_support import sandbox_server
from tests.integration_support import state as state_of_sandbox
from tests.test_api_records import bearer, live, records_url, secrets
from workflows.models import RecordBatch

pytestmark = pytest.mark.usefixtures(records_url.__name__)
FIXTURES = (live, secrets, sandbox_server)  # the API, tokens, the sandbox

CASE = ("Emergency disclosure request from Springfield PD (det.12@police.gov) in Ohio: a "
        "kidnapping in progress, subscriber data for account acct-1234567")  # fmt: skip


async def test_suggest_needs_a_role_and_a_text(live, secrets):
    r = await live.post("/suggest", json={"text": CASE})
    assert r.status_code == 401
    r = await live.post("/suggest", json={"text": ""}, headers=bearer(secrets["casey"]))
    assert r.status_code == 422 and r.json()["field"] == "text"
    r = await live.post("/suggest", json={"text": CASE, "provider": "chat"},
                        headers=bearer(secrets["casey"]))  # fmt: skip
    assert r.status_code == 422 and "CR_ASSIST_CHAT_URL" in r.json()["message"]
    r = await live.post("/suggest", json={"text": CASE}, headers=bearer(secrets["audra"]))
    assert r.status_code == 403
    r = await live.post("/suggest", json={"text": CASE}, headers=bearer(secrets["casey"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["playbook"]["value"] == "emergency-disclosure" and body["provider"] == "local"
    assert body["fields"]["account_id"]["value"] == "acct-1234567"


async def test_an_incident_opened_with_triage_records_suggestion_and_choice(live, secrets, h):
    iid = f"AS-{uuid.uuid4().hex[:6]}"
    fields = {"requester_agency": "Springfield PD", "requester_email": "det.12@police.gov",
              "account_id": "acct-1234567"}  # fmt: skip
    body = {"playbook": "emergency-disclosure", "severity": "sev1", "summary": CASE,
            "fields": fields, "id": iid, "triage": "local"}  # fmt: skip
    r = await live.post("/incidents", json=body, headers=bearer(secrets["casey"]))
    assert r.status_code == 201, r.text
    assert r.json()["triage"]["suggested_playbook"] == "emergency-disclosure"
    wf = handle(h.client, iid)
    h.handles.append(wf)
    tl = await wait_for_timeline(wf, has("triage"))
    entry = next(e for e in tl if e.kind == "triage")
    assert entry.actor == "casey" and entry.data["chosen_severity"] == "sev1"
    assert entry.data["suggested_severity"] == "sev0" and entry.data["accepted"] == "no"

    await _mirror_records(h, iid)
    summary = await live.get(f"/incidents/{iid}/summary", headers=bearer(secrets["casey"]))
    assert summary.status_code == 200, summary.text
    assert summary.json()["text"].startswith(f"Incident {iid} (emergency-disclosure, sev1)")
    mine = [c for c in recorded_choices() if c.incident_id == iid]
    assert len(mine) == 1 and mine[0].chosen_severity == "sev1"
    figures = agreement(mine)["emergency-disclosure"]
    assert figures == {"suggestions": 1, "playbook_right": 1.0, "severity_right": 0.0}


async def _mirror_records(h, iid: str) -> None:
    """What the (stand-in) records activity was sent, written to the records as the real one
    does, once the triage entry is among it."""
    for _ in range(500):
        batches = [RecordBatch.model_validate(b) for b in h.stand_ins.named("records.append")]
        mine = [b for b in batches if b.incident_id == iid]
        if any(e.kind == "triage" for b in mine for e in b.entries):
            for b in mine:
                write_batch(b)
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the triage entry never reached the records activity")


async def test_the_summary_of_an_unknown_or_hidden_incident_is_a_404(live, secrets):
    r = await live.get("/incidents/NOPE-1/summary", headers=bearer(secrets["casey"]))
    assert r.status_code == 404 and "NOPE-1" in r.json()["message"]


async def test_the_summary_of_a_restricted_incident_is_for_its_group_only(live, secrets):
    from tests.records_db import batch, entry, state

    opened = entry(1, 0, "kim", "opened", detail="report", data={"severity": "sev1"})
    write_batch(batch("CS-1", [opened], state([opened]), playbook="child-safety"))
    r = await live.get("/incidents/CS-1/summary", headers=bearer(secrets["audra"]))
    assert r.status_code == 404
    r = await live.get("/incidents/CS-1/summary", headers=bearer(secrets["cleo"]))
    assert r.status_code == 200 and r.json()["text"].startswith("Incident CS-1 (child-safety")


async def test_a_summary_rewritten_by_the_chat_endpoint_keeps_the_records_facts(
    secrets, tmp_path, sandbox_server
):
    from pydantic import SecretStr

    from settings import Settings
    from tests.records_db import batch, entry, state
    from tests.test_api_records import serve

    opened = entry(1, 0, "casey", "opened", detail="report", data={"severity": "sev1"})
    write_batch(batch("RW-1", [opened], state([opened]), playbook="preservation"))
    where = f"http://{sandbox_server.config.host}:{sandbox_server.config.port}/openai"
    chat = Settings(data_dir=tmp_path, assist_chat_url=where,
                    assist_chat_api_key=SecretStr("sk-test"))  # fmt: skip
    async for http in serve(chat, object()):
        plain = (await http.get("/incidents/RW-1/summary", headers=bearer(secrets["casey"]))).json()
        r = await http.get("/incidents/RW-1/summary?rewrite=true", headers=bearer(secrets["casey"]))
        assert r.status_code == 200 and r.json()["source"] == "chat"  # the emulator adds nothing
        assert r.json()["text"] == plain["text"] and plain["source"] == "records"
        requests = state_of_sandbox(sandbox_server)["openai"]["requests"]
        assert requests and "handover" in requests[-1]["messages"][0]["content"]


async def test_a_suggestion_recorded_on_an_open_incident_with_the_commanders_choice(
    live, secrets, h
):
    iid = f"TR-{uuid.uuid4().hex[:6]}"
    fields = {"requester_agency": "Springfield PD", "requester_email": "det.12@police.gov",
              "account_id": "acct-1234567"}  # fmt: skip
    body = {"playbook": "emergency-disclosure", "summary": CASE, "fields": fields, "id": iid}
    assert (await live.post("/incidents", json=body, headers=bearer(secrets["casey"]))).is_success
    h.handles.append(handle(h.client, iid))
    r = await live.post(f"/incidents/{iid}/triage", json={"severity": "sev1"},
                        headers=bearer(secrets["audra"]))  # fmt: skip
    assert r.status_code == 403
    r = await live.post(f"/incidents/{iid}/triage", json={"severity": "sev1"},
                        headers=bearer(secrets["casey"]))  # fmt: skip
    assert r.status_code == 200, r.text
    entry = r.json()
    assert entry["kind"] == "triage" and entry["actor"] == "casey"
    assert entry["data"]["chosen_severity"] == "sev1" and entry["data"]["accepted"] == "no"
    assert entry["data"]["suggested_playbook"] == "emergency-disclosure"
