"""The codec server (issue 10): the Web UI shows an incident's payloads in plaintext only to a
signed-in person who may read that incident; everyone else, and every other origin, sees them
sealed. On the real dev server, with the real encryption codec."""

from __future__ import annotations

import uuid

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from incidents.actions import handle
from tests.test_api import PHYSICAL, api, as_  # noqa: F401 - the fixture

CANARY = "Canary Callahan +1-415-555-0142"
UI = "http://127.0.0.1:8233"


async def start_payloads(h, iid: str) -> dict:
    """The incident's start input exactly as Temporal stores it (sealed), as the UI sends it."""
    history = await handle(h.client, iid).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    return json_format.MessageToDict(Payloads(payloads=list(started.input.payloads)))


async def opened(api, h, playbook: str, fields: dict, who: str) -> str:  # noqa: F811
    iid = f"COD-{uuid.uuid4().hex[:6]}"
    body = {"playbook": playbook, "summary": CANARY, "id": iid, "fields": fields}
    r = await api.post("/incidents", json=body, headers=as_(who))
    assert r.status_code == 201, r.text
    h.handles.append(handle(h.client, iid))
    return iid


async def test_a_reader_sees_plaintext_an_outsider_the_sealed_payload(api, h):  # noqa: F811
    iid = await opened(api, h, "physical-safety", PHYSICAL, "tok-casey")
    sealed = await start_payloads(h, iid)
    assert CANARY.encode() not in json_format.ParseDict(sealed, Payloads()).SerializeToString()

    r = await api.post("/codec/decode", json=sealed, headers=as_("tok-aud"))  # an auditor reads
    assert r.status_code == 200, r.text
    (payload,) = json_format.ParseDict(r.json(), Payloads()).payloads
    assert CANARY in payload.data.decode() and payload.metadata["encoding"] == b"json/plain"

    assert (await api.post("/codec/decode", json=sealed)).status_code == 401
    bad = await api.post("/codec/decode", json={"payloads": "nope"}, headers=as_("tok-aud"))
    assert bad.status_code == 422 and bad.json()["message"].startswith("payloads:")
    other_ns = await api.post("/codec/decode", json=sealed,
                              headers=as_("tok-aud") | {"x-namespace": "elsewhere"})  # fmt: skip
    assert other_ns.status_code == 403


async def test_a_restricted_incident_stays_sealed_for_outsiders(api, h):  # noqa: F811
    iid = await opened(api, h, "child-safety", {"jurisdiction": "us"}, "tok-kim")
    sealed = await start_payloads(h, iid)
    outsider = await api.post("/codec/decode", json=sealed, headers=as_("tok-casey"))
    assert outsider.status_code == 200 and outsider.json() == sealed  # returned as it came
    member = await api.post("/codec/decode", json=sealed, headers=as_("tok-kim"))
    assert CANARY in str(json_format.ParseDict(member.json(), Payloads()).payloads[0].data)


async def test_the_web_ui_signs_in_by_cookie_and_only_its_origin_is_answered(api, h):  # noqa: F811
    iid = await opened(api, h, "physical-safety", PHYSICAL, "tok-casey")
    sealed = await start_payloads(h, iid)
    preflight = await api.options("/codec/decode", headers={"origin": UI})
    assert preflight.headers["access-control-allow-origin"] == UI
    assert preflight.headers["access-control-allow-credentials"] == "true"
    evil = await api.options("/codec/decode", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in evil.headers

    refused = await api.post("/codec/signin", content="token=tok-nobody",
                             headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert refused.status_code == 401 and "set-cookie" not in refused.headers
    signed_in = await api.post("/codec/signin", content="token=tok-lena",
                               headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Path=/codec" in cookie and "SameSite=lax" in cookie
    r = await api.post("/codec/decode", json=sealed, headers={"origin": UI})  # the cookie rides
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == UI
    assert CANARY in json_format.ParseDict(r.json(), Payloads()).payloads[0].data.decode()


@pytest.fixture(autouse=True)
def _fresh_cookies(api):  # noqa: F811
    api.cookies.clear()
