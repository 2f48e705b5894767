"""The web console through the ASGI app (httpx), on the real dev server with the real records
activity: every page and action, each refusal (not signed in, wrong role, a hidden restricted
incident, a form without its CSRF token, a decision without a reason), and a console action
being exactly the API's (same verdict, same actor, signed)."""

from __future__ import annotations

import asyncio
import io
import uuid
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.service import RPCError, RPCStatusCode

from activities.records import append
from console.app import create_app
from incidents.actions import handle
from records.tables import IncidentBoard, records_engine
from sandbox.server import free_port
from settings import Settings, get_settings
from tests.console_support import cast, playbooks_dir, sign_in
from workflows.incident import IncidentWorkflow

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
async def hr(dev_env: Any) -> AsyncIterator[Any]:
    """The engine harness with the real ``records.append``: the console's lists read the records."""
    from tests.engine_support import engine_harness

    async with engine_harness(dev_env, activities=[append]) as harness:
        yield harness


class Console:
    """The app, a client per signed-in person, and the API tokens of the cast."""

    def __init__(self, app: Any, tokens: dict[str, str], url: str) -> None:
        self.app, self.tokens, self.url = app, tokens, url
        self.transport = httpx.ASGITransport(app=app)
        self.clients: list[httpx.AsyncClient] = []
        self.csrf: dict[str, str] = {}

    def client(self) -> httpx.AsyncClient:
        c = httpx.AsyncClient(transport=self.transport, base_url="http://console")
        self.clients.append(c)
        return c

    async def as_(self, person: str) -> httpx.AsyncClient:
        c = self.client()
        self.csrf[person] = await sign_in(c, person)
        c.headers["x-person"] = person
        return c

    def form(self, c: httpx.AsyncClient, **data: str) -> dict[str, str]:
        return {"csrf": self.csrf[c.headers["x-person"]], **data}

    async def open(self, person: str, playbook: str = "console-drill", **body: Any) -> str:
        iid = body.pop("id", f"CON-{uuid.uuid4().hex[:6]}")
        async with httpx.AsyncClient(transport=self.transport, base_url="http://console") as api:
            r = await api.post("/incidents", json={"playbook": playbook, "summary": "drill",
                                                   "id": iid, **body},
                               headers={"authorization": f"Bearer {self.tokens[person]}"})  # fmt: skip
        assert r.status_code == 201, r.text
        return iid


@pytest.fixture
async def con(hr: Any, tmp_path: Any) -> AsyncIterator[Console]:
    url = get_settings().effective_database_url  # where the records activity writes
    settings = Settings(task_queue=hr.task_queue, data_dir=tmp_path, database_url=SecretStr(url),
                        playbooks_dir=playbooks_dir(tmp_path / "playbooks"),
                        sandbox_port=free_port())  # nothing answers as Salesforce here  # fmt: skip
    app = create_app(settings, client=hr.client)
    console = Console(app, await asyncio.to_thread(cast, url), url)
    yield console
    for c in console.clients:
        await c.aclose()


async def board_row(url: str, iid: str, check: Any = bool, timeout: float = 20) -> IncidentBoard:
    """The incident's board row once ``check`` holds (the records flush in batches)."""
    from sqlmodel import Session

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with Session(records_engine(url)) as s:
            row = s.get(IncidentBoard, iid)
        if row is not None and check(row):
            return row
        assert asyncio.get_running_loop().time() < deadline, f"board row of {iid}: {row}"
        await asyncio.sleep(0.2)


async def test_every_page_needs_a_signed_in_person_and_the_form_needs_its_token(con: Console):
    anon = con.client()
    for path in ("/console/incidents", "/console/incidents/X-1", "/console/approvals",
                 "/console/audit", "/console/lead", "/console/events"):  # fmt: skip
        r = await anon.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/signin?next=")
    r = await anon.get("/console/incidents/rows", headers={"hx-request": "true"})
    assert r.status_code == 401 and r.headers["hx-redirect"].startswith("/console/signin")
    form = await anon.get("/console/signin")
    assert form.status_code == 200 and 'for="handle"' in form.text
    assert "script-src 'self'" in form.headers["content-security-policy"]
    assert form.headers["x-frame-options"] == "DENY"
    cookie = form.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    r = await anon.post("/console/signin", data={"handle": "cc-casey", "password": "x" * 20})
    assert r.status_code == 403 and "csrf" in r.text  # the sign-in form's token is required too
    casey = await con.as_("cc-casey")
    r = await casey.post("/console/incidents/X-1/act/ack", data={})
    assert r.status_code == 403 and "csrf: this form&#39;s security token is missing" in r.text
    r = await casey.post("/console/incidents/X-1/act/ack", data={"csrf": "forged"})
    assert r.status_code == 403
    r = await casey.get("/console/incidents/NOPE-1")
    assert r.status_code == 404 and "no incident NOPE-1" in r.text
    assert (await casey.post("/console/signout", data={})).status_code == 403
    r = await casey.post("/console/signout", data=con.form(casey))
    assert r.status_code == 303 and r.headers["location"] == "/console/signin"
    r = await casey.get("/console/incidents")  # the cookie is gone
    assert r.status_code == 303 and r.headers["location"].startswith("/console/signin")


async def test_a_wrong_password_signs_nobody_in(con: Console):
    c = con.client()
    form = await c.get("/console/signin")
    from tests.console_support import csrf_of

    r = await c.post("/console/signin", data={"handle": "cc-casey", "password": "wrong password!",
                                              "csrf": csrf_of(form.text)})  # fmt: skip
    assert r.status_code == 401 and "handle or password" in r.text
    assert "cr_console=" not in r.headers.get("set-cookie", "")
    r = await c.post("/console/signin", data={"handle": "cc-nobody", "password": "x" * 20,
                                              "csrf": csrf_of(form.text)})  # fmt: skip
    assert r.status_code == 401


async def test_commander_acts_and_each_answer_is_the_servers(con: Console, hr: Any):
    casey, audra = await con.as_("cc-casey"), await con.as_("cc-audra")
    iid = await con.open("cc-casey")
    hr.handles.append(handle(hr.client, iid))
    await board_row(con.url, iid, lambda r: "legal-approval" in r.steps)

    r = await casey.get("/console/incidents")
    assert r.status_code == 200 and f'href="/console/incidents/{iid}"' in r.text
    assert "legal-approval" in r.text and "countdown" in r.text
    r = await casey.get("/console/incidents?must_act=legal&severity=sev2&playbook=console-drill")
    assert iid in r.text
    r = await casey.get("/console/incidents?must_act=nobody-at-all")
    assert iid not in r.text and "No incident matches" in r.text

    page = await casey.get(f"/console/incidents/{iid}")
    assert page.status_code == 200
    html = page.text
    assert "<svg" in html and "Text outline of the playbook" in html and "(current step)" in html
    assert "statutory: never pauses" in html and "Temporal Web UI" in html
    assert f'href="/console/incidents/{iid}/case"' in html  # open-case (upsert_case) is done
    assert "Nearest deadlines" in html and "legal-approval" in html

    seen = await audra.get(f"/console/incidents/{iid}")  # auditors get no action forms ...
    assert seen.status_code == 200 and ">Acknowledge</button>" not in seen.text
    assert ">Acknowledge</button>" in html
    r = await audra.post(f"/console/incidents/{iid}/act/ack", data=con.form(audra))  # ... nor acts
    assert r.status_code == 403 and "ack needs one of the roles" in r.text  # auditors read
    r = await casey.post(f"/console/incidents/{iid}/act/ack", data=con.form(casey))
    assert r.status_code == 200 and "acknowledged recorded" in r.text, r.text[:3000]
    r = await casey.post(f"/console/incidents/{iid}/act/escalate",
                         data=con.form(casey, severity="sev1", reason="spreading"))  # fmt: skip
    assert r.status_code == 200 and "Done:" in r.text and "SEV1" in r.text
    r = await casey.post(f"/console/incidents/{iid}/act/note", data=con.form(casey, reason=""))
    assert r.status_code in (409, 422) and "Refused" in r.text
    r = await casey.post(f"/console/incidents/{iid}/act/note",
                         data=con.form(casey, reason="called the reporter"))  # fmt: skip
    assert r.status_code == 200 and "called the reporter" in r.text
    r = await casey.post(f"/console/incidents/{iid}/act/assign", data=con.form(casey, to="cc-lena"))
    assert (
        r.status_code == 422 and "to: cc-lena is not on the roster with a commander role" in r.text
    )
    r = await casey.post(f"/console/incidents/{iid}/event",
                         data=con.form(casey, name="no_such_event"))  # fmt: skip
    assert r.status_code == 409 and "not declared" in r.text
    r = await casey.post(f"/console/incidents/{iid}/event",
                         data=con.form(casey, name="evidence_preserved"))  # fmt: skip
    assert r.status_code == 200 and "Done:" in r.text
    r = await casey.post(f"/console/incidents/{iid}/steps/open-case/retry",
                         data=con.form(casey, reason="again"))  # fmt: skip
    assert r.status_code == 409 and "not failed" in r.text
    timeline = await handle(hr.client, iid).query(IncidentWorkflow.timeline)
    acked = next(e for e in timeline if e.kind == "acknowledged")
    assert (acked.actor, acked.role) == ("cc-casey", "ic")  # the signed-in person, as the API

    case = await casey.get(f"/console/incidents/{iid}/case")  # no Salesforce in this suite
    assert case.status_code == 502 and "salesforce: the Case could not be looked up" in case.text
    r = await casey.post(f"/console/incidents/{iid}/act/close", data=con.form(casey, reason="done"))
    assert r.status_code == 200 and "closed" in r.text
    r = await casey.post(f"/console/incidents/{iid}/reopen", data=con.form(casey, reason=""))
    assert r.status_code == 422 and "reason" in r.text


async def test_legal_decides_from_the_inbox_and_others_are_refused_in_words(con: Console, hr: Any):
    casey, lena = await con.as_("cc-casey"), await con.as_("cc-lena")
    iid = await con.open("cc-casey")
    hr.handles.append(handle(hr.client, iid))
    await board_row(con.url, iid, lambda r: "legal-approval" in r.approvals)

    inbox = await lena.get("/console/approvals")
    assert inbox.status_code == 200 and iid in inbox.text and "legal-approval" in inbox.text
    assert iid not in (await casey.get("/console/approvals")).text  # not casey's role
    items = await lena.get("/console/approvals/items")  # the live refresh's fragment
    assert items.status_code == 200 and iid in items.text and "<html" not in items.text
    decision = {"step": "legal-approval", "decision": "approve", "role": "legal"}
    r = await casey.post(f"/console/incidents/{iid}/decide", data=con.form(casey, **decision,
                                                                          reason="ok"))  # fmt: skip
    assert r.status_code == 403 and "deciding as legal needs one of the roles: legal" in r.text
    from roster import journal

    refusals = journal.entries(con.url, stream=journal.ACCESS_ID)
    assert any(e.actor == "cc-casey" and "deciding as legal" in e.detail for e in refusals)
    r = await lena.post(f"/console/incidents/{iid}/decide",
                        data=con.form(lena, **decision, reason="", back="approvals"))  # fmt: skip
    assert r.status_code == 422 and "reason" in r.text and "Approvals inbox" in r.text
    r = await lena.post(f"/console/incidents/{iid}/decide",
                        data=con.form(lena, **decision, reason="lawful", back="approvals"))  # fmt: skip
    assert r.status_code == 200 and "decision on legal-approval: approved" in r.text
    await board_row(con.url, iid, lambda r: r.approvals == "[]")
    assert iid not in (await lena.get("/console/approvals")).text


async def test_a_restricted_incident_is_invisible_outside_its_group(con: Console, hr: Any):
    kim, casey = await con.as_("cc-kim"), await con.as_("cc-casey")
    iid = await con.open("cc-kim", "child-safety", fields={"jurisdiction": "us"})
    hr.handles.append(handle(hr.client, iid))
    await board_row(con.url, iid)
    assert iid in (await kim.get("/console/incidents")).text
    assert iid not in (await casey.get("/console/incidents?status=any")).text
    r = await casey.get(f"/console/incidents/{iid}")
    assert r.status_code == 404 and f"no incident {iid}" in r.text
    r = await casey.post(f"/console/incidents/{iid}/act/ack", data=con.form(casey))
    assert r.status_code == 404
    r = await casey.get(f"/console/incidents/{iid}/panel")
    assert r.status_code == 404


async def test_auditor_reads_verifies_and_downloads_a_bundle_that_verifies(con: Console, hr: Any):
    casey, audra = await con.as_("cc-casey"), await con.as_("cc-audra")
    iid = await con.open("cc-casey")
    hr.handles.append(handle(hr.client, iid))
    await board_row(con.url, iid, lambda r: "legal-approval" in r.steps)
    assert (await casey.get("/console/audit")).status_code == 403
    r = await audra.get("/console/audit")
    assert r.status_code == 200 and iid in r.text
    r = await audra.get(f"/console/audit/{iid}")
    assert r.status_code == 200, r.text[:2000]
    assert "intact" in r.text and "replays" in r.text and "the snapshot matches its hash" in r.text
    r = await audra.get(f"/console/audit/{iid}/bundle.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    assert set(z.namelist()) == {"export.json", "timeline.csv", "playbook.json", "chain.json",
                                 "MANIFEST.json"}  # fmt: skip
    from tests.test_console_bundle import verify_bundle

    await verify_bundle(z, iid)
    assert (await casey.get(f"/console/audit/{iid}/bundle.zip")).status_code == 403


async def test_team_lead_sees_charts_tables_csv_and_coverage(con: Console, hr: Any):
    mx, casey = await con.as_("cc-max"), await con.as_("cc-casey")
    iid = await con.open("cc-casey")
    hr.handles.append(handle(hr.client, iid))
    await board_row(con.url, iid)
    r = await mx.get("/console/lead")
    assert r.status_code == 200, r.text[:2000]
    for part in ("SLA attainment per playbook", "per step", "per severity", "time to acknowledge",
                 "Backlog age", "Who is on call now", "Coverage gaps", "<svg"):  # fmt: skip
        assert part in r.text
    assert iid in r.text  # in the backlog
    r = await mx.get("/console/lead/backlog.csv")
    assert r.status_code == 200 and r.text.startswith("incident,age h") and iid in r.text
    assert (await mx.get("/console/lead/nothing.csv")).status_code == 404
    r = await casey.get("/console/lead")
    assert r.status_code == 403 and "report needs one of the roles" in r.text


async def test_the_live_stream_says_which_incident_changed(con: Console, hr: Any):
    from console import live

    casey = await con.as_("cc-casey")
    iid = await con.open("cc-casey")
    hr.handles.append(handle(hr.client, iid))
    await board_row(con.url, iid)

    class Req:
        app = con.app

        async def is_disconnected(self) -> bool:
            return False

    from console.session import Viewer

    who = Viewer("cc-casey", frozenset({"ic"}), frozenset(), "x")
    stream = live._stream(Req(), who)  # type: ignore[arg-type]
    assert await anext(stream) == "retry: 2000\n\n"
    nxt = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.3)
    r = await casey.post(f"/console/incidents/{iid}/act/ack", data=con.form(casey))
    assert r.status_code == 200
    frame = await asyncio.wait_for(nxt, 20)
    assert frame.startswith("event: changed\n") and iid in frame
    assert await asyncio.wait_for(anext(stream), 5) == f"event: changed-{iid}\ndata: {iid}\n\n"
    await stream.aclose()
    r = await casey.get(f"/console/incidents/{iid}/panel")
    assert r.status_code == 200 and 'id="panel"' in r.text and "<html" not in r.text
    rows = await casey.get("/console/incidents/rows")
    assert rows.status_code == 200 and iid in rows.text and "<html" not in rows.text


def test_every_asset_is_vendored_and_no_page_names_a_cdn():
    from console.web import HERE

    vendored = {p.name for p in (HERE / "static" / "vendor").iterdir()}
    assert {"htmx-2.0.11.min.js", "htmx-ext-sse-2.2.4.min.js"} <= vendored
    for path in (HERE / "templates").glob("*.html"):
        text = path.read_text()
        assert "https://" not in text and "http://" not in text and "@import" not in text, path
    css = (HERE / "static" / "console.css").read_text()
    assert "@font-face" not in css and "url(" not in css


async def test_an_incident_past_temporals_retention_is_read_from_the_records_and_archive(
    con: Console, hr: Any
):
    """Closed, archived, then gone from Temporal: the incident page and the auditor's page still
    show it, from the records and the archived history (the visibility rule unchanged)."""
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest

    from records.archive import store

    casey, audra = await con.as_("cc-casey"), await con.as_("cc-audra")
    iid = await con.open("cc-casey")
    target = handle(hr.client, iid)
    await board_row(con.url, iid, lambda r: "legal-approval" in r.steps)
    r = await casey.post(f"/console/incidents/{iid}/act/close", data=con.form(casey, reason="ok"))
    assert r.status_code == 200
    await hr.closed(target)
    await board_row(con.url, iid, lambda r: r.steps == "")
    history = await target.fetch_history()
    await asyncio.to_thread(store, iid, [history], [])
    await hr.client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(namespace=hr.client.namespace,
                                       workflow_execution=WorkflowExecution(workflow_id=target.id))
    )  # fmt: skip
    while True:  # deletion is asynchronous (the dev server takes half a minute)
        try:
            await target.describe()
        except RPCError as err:
            assert err.status == RPCStatusCode.NOT_FOUND
            break
        await asyncio.sleep(0.2)
    page = await casey.get(f"/console/incidents/{iid}")
    assert page.status_code == 200 and "Temporal no longer has this incident" in page.text, (
        page.text[page.text.find("<main") :][:1500]
    )
    assert "closed" in page.text and "Legal approves the disclosure" in page.text  # the graph
    r = await audra.get(f"/console/audit/{iid}")
    assert r.status_code == 200 and "archive" in r.text and "replays" in r.text, r.text[:3000]
    kim = await con.as_("cc-kim")
    assert (await kim.get(f"/console/incidents/{iid}")).status_code == 200


async def test_a_failed_step_is_retried_or_skipped_and_a_closed_incident_reopened(
    con: Console, hr: Any
):
    """The failed step waits (on_failure: ask) and needs attention; retry and skip are the
    commander's, each answered by the incident; close, then reopen with a reason."""
    casey, lena, cole = (
        await con.as_("cc-casey"),
        await con.as_("cc-lena"),
        await con.as_("cc-cole"),
    )
    hr.stand_ins.fail.add("salesforce.update_case")  # the drill's last step
    iid = await con.open("cc-casey")
    hr.handles.append(handle(hr.client, iid))
    await board_row(con.url, iid, lambda r: "legal-approval" in r.approvals)
    r = await lena.post(f"/console/incidents/{iid}/decide", data=con.form(
        lena, step="legal-approval", decision="approve", role="legal", reason="ok"))  # fmt: skip
    assert r.status_code == 200
    r = await casey.post(f"/console/incidents/{iid}/event",
                         data=con.form(casey, name="evidence_preserved"))  # fmt: skip
    assert r.status_code == 200
    await board_row(con.url, iid, lambda r: r.attention)
    assert iid in (await casey.get("/console/incidents?attention=true")).text
    page = await casey.get(f"/console/incidents/{iid}")
    main = page.text[page.text.find("<main") :]
    assert (
        "Step <strong>wrap-up</strong> failed" in main
        and "Needs attention: step wrap-up failed" in main
    )
    r = await cole.post(f"/console/incidents/{iid}/steps/wrap-up/skip", data=con.form(cole))
    assert r.status_code == 403 and "skip needs one of the roles" in r.text
    r = await casey.post(f"/console/incidents/{iid}/steps/wrap-up/retry",
                         data=con.form(casey, reason="slack is back"))  # fmt: skip
    assert r.status_code == 200 and "Done:" in r.text, r.text[:3000]
    await board_row(con.url, iid, lambda r: r.attention)  # it failed again
    r = await casey.post(f"/console/incidents/{iid}/steps/wrap-up/skip",
                         data=con.form(casey, reason="told them by phone"))  # fmt: skip
    assert r.status_code == 200 and "Done:" in r.text
    r = await casey.post(f"/console/incidents/{iid}/act/close", data=con.form(casey, reason="done"))
    assert r.status_code == 200
    await hr.closed(handle(hr.client, iid))
    r = await casey.post(f"/console/incidents/{iid}/reopen",
                         data=con.form(casey, reason="new report"))  # fmt: skip
    assert r.status_code == 200 and f"incident {iid} reopened" in r.text, r.text[:3000]
