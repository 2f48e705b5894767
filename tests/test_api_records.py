"""The API's records, report, on-call and roster endpoints (issue 9): each for a role allowed and a
role refused (403 naming the roles), a restricted playbook's export and report invisible to an
outsider and visible to its group, roster changes audited with the signed-in admin as actor, and a
token created or revoked through the API working, or failing, at once. Identity is the roster's own
tokens; the export runs on the real dev server, the rest needs only the records database."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.authz import ACTIONS, ENDPOINTS, endpoint_table
from audit.replay import load_file
from incidents.actions import handle
from records import archive
from records.chain import write_batch
from reports.report import build_report
from roster import journal, service, tokens
from settings import Settings
from tests.records_db import batch, clock, entry, records_url, state

pytestmark = pytest.mark.usefixtures(records_url.__name__)
ROOT = Path(__file__).resolve().parent.parent
NOW = datetime.now(UTC)
PEOPLE = {  # handle: roles, groups
    "root": (["admin"], []),
    "casey": (["ic"], []),
    "kim": (["ic", "cr"], ["child-safety"]),
    "audra": (["auditor"], []),  # an auditor outside the child-safety group
    "cleo": (["auditor"], ["child-safety"]),
    "mo": (["mgr"], []),
    "bot": (["intake"], []),
}


def people(url: str) -> dict[str, str]:
    """Everyone in ``PEOPLE`` on the roster, each with a token: handle -> bearer headers."""
    headers = {}
    for name, (roles, groups) in PEOPLE.items():
        service.add_person(name, display_name=name.title(), roles=roles, groups=groups,
                           actor="setup", url=url)  # fmt: skip
        secret = tokens.create_token(name, name="test", expires_in=None, actor="setup", url=url)
        headers[name] = secret
    return headers


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


async def serve(settings: Settings, client: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, client=client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http


@pytest.fixture
def secrets(records_url) -> dict[str, str]:
    return people(records_url)


@pytest.fixture
async def api(records_url, tmp_path, secrets) -> AsyncIterator[httpx.AsyncClient]:
    """The API without Temporal (report, on-call, roster)."""
    async for http in serve(Settings(data_dir=tmp_path), object()):
        yield http


@pytest.fixture
async def live(records_url, tmp_path, secrets, h) -> AsyncIterator[httpx.AsyncClient]:
    """The API on the dev server (export, opening incidents)."""
    async for http in serve(Settings(task_queue=h.task_queue, data_dir=tmp_path), h.client):
        yield http


def refusals(url: str) -> list[str]:
    return [e.detail for e in journal.entries(url, stream=journal.ACCESS_ID)]


# --- every new endpoint refuses a role outside its row ------------------------------------------

REFUSED = [  # method, path, body, who is refused, the roles named
    ("GET", "/incidents/X/export", None, "casey", ["admin", "auditor", "legal"]),
    ("GET", "/reports/sla", None, "casey", ["admin", "auditor", "mgr"]),
    ("GET", "/oncall/ic", None, "bot", sorted(ACTIONS["oncall"])),
    ("GET", "/people", None, "cleo", ["admin"]),
    ("POST", "/people", {"handle": "zed", "name": "Zed"}, "casey", ["admin"]),
    ("POST", "/people/casey/deactivate", None, "mo", ["admin"]),
    ("GET", "/tokens", None, "audra", ["admin"]),
    ("POST", "/tokens", {"person": "casey", "name": "x"}, "casey", ["admin"]),
    ("DELETE", "/tokens/tok_x", None, "kim", ["admin"]),
]  # fmt: skip


@pytest.mark.parametrize("method,path,body,who,needed", REFUSED)
async def test_a_role_outside_the_row_is_refused_naming_the_roles(
    api, secrets, records_url, method, path, body, who, needed
):
    r = await api.request(method, path, json=body, headers=bearer(secrets[who]))
    assert (r.status_code, r.json()["error"]) == (403, "forbidden"), r.text
    assert r.json()["needed_roles"] == needed
    assert ", ".join(needed) in r.json()["message"]
    assert f"{method} {path.split('?')[0]}: forbidden" in refusals(records_url)[-1]
    assert service.get_person("zed", url=records_url) is None  # nothing was done
    assert service.get_person("casey", url=records_url).active  # type: ignore[union-attr]


# --- export ---------------------------------------------------------------------------------------

PHYSICAL = {"jurisdiction": "us", "category": "physical_assault", "retailer_involved": "yes",
            "retailer_contact_email": "safety@retailer.example"}  # fmt: skip


async def test_export_hides_a_restricted_incident_running_archived_or_recorded(
    live, h, secrets, records_url
):
    iid = f"EXP-CS-{uuid.uuid4().hex[:6]}"
    body = {"playbook": "child-safety", "summary": "report", "id": iid,
            "fields": {"jurisdiction": "us"}}  # fmt: skip
    r = await live.post("/incidents", json=body, headers=bearer(secrets["kim"]))
    assert r.status_code == 201, r.text
    h.handles.append(handle(h.client, iid))

    # The group's auditor gets the bundle `incident audit export` writes.
    r = await live.get(f"/incidents/{iid}/export", headers=bearer(secrets["cleo"]))
    assert r.status_code == 200, r.text
    manifest = r.json()["manifest"]
    assert (manifest["incident_id"], manifest["playbook"]) == (iid, "child-safety")
    assert "temporal" in manifest["source"] and r.json()["histories"]

    # An auditor outside the group: a 404 that looks like an unknown incident's, recorded.
    hidden = await live.get(f"/incidents/{iid}/export", headers=bearer(secrets["audra"]))
    nowhere = await live.get("/incidents/NO-SUCH-1/export", headers=bearer(secrets["audra"]))
    assert hidden.status_code == nowhere.status_code == 404
    assert hidden.json() == {"error": "not_found", "message": f"no incident {iid}"}
    assert nowhere.json() == {"error": "not_found", "message": "no incident NO-SUCH-1"}
    logged = refusals(records_url)
    assert logged == [f"GET /incidents/{iid}/export: not_visible: no incident {iid}"]

    # Closed and archived, gone from Temporal: the archive's playbook decides.
    runs = load_file(ROOT / "tests/histories/child-safety--s1.json")
    archived = runs[0].incident_id
    archive.store(archived, [run.history for run in runs], [])
    r = await live.get(f"/incidents/{archived}/export", headers=bearer(secrets["audra"]))
    assert r.status_code == 404 and len(refusals(records_url)) == 2
    r = await live.get(f"/incidents/{archived}/export", headers=bearer(secrets["cleo"]))
    assert r.status_code == 200, r.text
    assert "archive" in r.json()["manifest"]["source"]
    assert len(r.json()["histories"]) == len(runs)

    # Only in the records' projection: the outsider is refused before any history is read.
    recorded = f"REC-CS-{uuid.uuid4().hex[:6]}"
    opened = [entry(0, 0, "kim", "opened", base=NOW)]
    write_batch(batch(recorded, opened, state(opened, base=NOW), playbook="child-safety"))
    r = await live.get(f"/incidents/{recorded}/export", headers=bearer(secrets["audra"]))
    assert r.status_code == 404 and len(refusals(records_url)) == 3

    # An unrestricted incident is anyone's with the role; legal may export too.
    other = f"EXP-{uuid.uuid4().hex[:6]}"
    body = {"playbook": "physical-safety", "summary": "assault", "id": other, "fields": PHYSICAL}
    r = await live.post("/incidents", json=body, headers=bearer(secrets["casey"]))
    assert r.status_code == 201, r.text
    h.handles.append(handle(h.client, other))
    r = await live.get(f"/incidents/{other}/export", headers=bearer(secrets["audra"]))
    assert (r.status_code, r.json()["manifest"]["playbook"]) == (200, "physical-safety")


# --- the SLA report -------------------------------------------------------------------------------


def seed_report() -> None:
    """Two account-takeover incidents (one breached its ack clock) and a child-safety one."""
    for iid, playbook, ack, breached in (("R1", "account-takeover", 10, None),
                                         ("R2", "account-takeover", 30, 20),
                                         ("R3", "child-safety", 5, None)):  # fmt: skip
        base = NOW - timedelta(days=1)
        timeline = [entry(0, 0, "ic", "opened", base=base),
                    entry(1, ack, "ic", "acknowledged", base=base)]  # fmt: skip
        snapshot = state(
            timeline, base=base, severity="sev1", status="acknowledged",
            acknowledged_at=base + timedelta(minutes=ack),
            clocks={"incident.acknowledge": clock("incident.acknowledge", 15, base, stopped=ack,
                                                  breached=breached)},
        )  # fmt: skip
        write_batch(batch(iid, timeline, snapshot, playbook=playbook))
    old = NOW - timedelta(days=30)
    timeline = [entry(0, 0, "ic", "opened", base=old)]
    write_batch(batch("R0", timeline, state(timeline, base=old), playbook="account-takeover"))


def figures(report: dict[str, Any]) -> dict[str, Any]:
    return {key: report[key] for key in ("groups", "steps", "total")}


async def test_the_report_leaves_a_restricted_playbook_out_for_outsiders(api, secrets):
    seed_report()
    # The group's auditor reads exactly what `incident report` computes.
    r = await api.get("/reports/sla", headers=bearer(secrets["cleo"]))
    assert r.status_code == 200, r.text
    cli = build_report().model_dump(mode="json")
    assert figures(r.json()) == figures(cli) and r.json()["playbooks"] == []
    assert {g["playbook"] for g in r.json()["groups"]} == {"account-takeover", "child-safety"}

    # A manager outside it: the report of the other playbooks, computed over those alone.
    r = await api.get("/reports/sla", headers=bearer(secrets["mo"]))
    assert r.status_code == 200, r.text
    assert {g["playbook"] for g in r.json()["groups"]} == {"account-takeover"}
    assert "child-safety" not in r.json()["playbooks"]
    alone = build_report(None, ["account-takeover"]).model_dump(mode="json")
    assert figures(r.json()) == figures(alone)
    assert (r.json()["total"]["incidents"], r.json()["total"]["breached"]) == (3, 1)

    # Asking for it by name: unknown, as a typo is (the known ones listed do not name it).
    r = await api.get("/reports/sla", params={"playbook": "child-safety"},
                      headers=bearer(secrets["mo"]))  # fmt: skip
    assert r.status_code == 422 and "unknown playbook 'child-safety'" in r.json()["message"]
    assert "child-safety" not in r.json()["message"].split("known:")[1]
    r = await api.get("/reports/sla", params={"playbook": "child-safety"},
                      headers=bearer(secrets["cleo"]))  # fmt: skip
    assert r.status_code == 200 and r.json()["total"]["incidents"] == 1


async def test_the_report_takes_the_commands_filters(api, secrets):
    seed_report()
    who = bearer(secrets["audra"])
    r = await api.get("/reports/sla", params={"since": "7d"}, headers=who)
    assert r.status_code == 200 and r.json()["total"]["incidents"] == 2  # R0 is 30 days old
    since = (NOW - timedelta(days=7)).date().isoformat()
    r = await api.get("/reports/sla", params={"since": since, "playbook": "account-takeover"},
                      headers=who)  # fmt: skip
    assert r.status_code == 200 and r.json()["playbooks"] == ["account-takeover"]
    r = await api.get("/reports/sla", params={"since": "last tuesday"}, headers=who)
    assert r.status_code == 422 and r.json()["message"].startswith("since: ")
    r = await api.get("/reports/sla", params={"format": "csv"}, headers=who)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text.splitlines()[0].startswith("level,playbook,severity")
    assert "child-safety" not in r.text


# --- on call --------------------------------------------------------------------------------------


async def test_who_holds_a_role_at_a_time(api, secrets, records_url):
    start = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    service.add_override("ic", "casey", start=start, end=start + timedelta(days=1),
                         reason="kim on leave", actor="setup", url=records_url)  # fmt: skip
    who = bearer(secrets["audra"])
    r = await api.get("/oncall/ic", params={"at": "2026-05-01T12:00:00+00:00"}, headers=who)
    assert r.status_code == 200, r.text
    assert r.json() == {"role": "ic", "at": "2026-05-01T12:00:00.000000+00:00",
                        "holders": ["casey"]}  # fmt: skip
    r = await api.get("/oncall/ic", params={"at": "2026-05-03T12:00:00"}, headers=who)  # naive: UTC
    assert r.json()["holders"] == ["casey", "kim"] and r.json()["at"].endswith("+00:00")
    r = await api.get("/oncall/legal", headers=who)
    assert r.status_code == 200 and r.json()["holders"] == []
    r = await api.get("/oncall/ic", params={"at": "tomorrow-ish"}, headers=who)
    assert r.status_code == 422
    assert r.json()["message"] == "at: 'tomorrow-ish' is not an ISO time"
    r = await api.get("/oncall/Not A Role", headers=who)
    assert r.status_code == 422 and "not a role name" in r.json()["message"]


# --- roster admin ---------------------------------------------------------------------------------


async def test_admins_change_the_roster_as_themselves(api, secrets, records_url):
    root = bearer(secrets["root"])
    person = {"handle": "nia", "name": "Nia Obi", "email": "nia@example.org",
              "roles": ["legal"], "groups": ["child-safety"]}  # fmt: skip
    r = await api.post("/people", json=person, headers=root)
    assert r.status_code == 201, r.text
    assert r.json() == {"handle": "nia", "name": "Nia Obi", "email": "nia@example.org",
                        "active": True, "roles": ["legal"], "groups": ["child-safety"]}  # fmt: skip
    r = await api.post("/people", json=person, headers=root)
    assert (r.status_code, r.json()["error"]) == (409, "conflict")
    assert r.json()["message"] == "person 'nia' already exists"
    r = await api.post("/people", json=person | {"handle": "Nia O"}, headers=root)
    assert r.status_code == 422 and "is not a handle" in r.json()["message"]
    r = await api.post("/people", json=person | {"handle": "nib", "roles": ["Legal!"]},
                       headers=root)  # fmt: skip
    assert r.status_code == 422 and "not a role name" in r.json()["message"]
    assert service.get_person("nib", url=records_url) is None
    r = await api.get("/people", headers=root)
    assert r.status_code == 200
    assert [p["handle"] for p in r.json()] == sorted([*PEOPLE, "nia"])

    # A token made for her works at once; its secret is in that answer only.
    r = await api.post("/tokens", json={"person": "nia", "name": "laptop", "expires_in_days": 7},
                       headers=root)  # fmt: skip
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["person"] == "nia" and made["secret"].startswith("crt_")
    expires = datetime.fromisoformat(made["expires_at"])
    assert timedelta(days=6) < expires - datetime.now(UTC) <= timedelta(days=7)
    me = await api.get("/me", headers=bearer(made["secret"]))
    assert me.status_code == 200 and (me.json()["person"], me.json()["roles"]) == ("nia", ["legal"])
    r = await api.get("/tokens", params={"person": "nia"}, headers=root)
    assert [t["id"] for t in r.json()] == [made["id"]] and r.json()[0]["last_used_at"]
    listed = (await api.get("/tokens", headers=root)).text
    assert made["secret"] not in listed and "secret" not in listed

    # Revoked: it fails at once.
    r = await api.delete(f"/tokens/{made['id']}", headers=root)
    assert r.json() == {"id": made["id"], "revoked": True, "changed": True}
    me = await api.get("/me", headers=bearer(made["secret"]))
    assert (me.status_code, me.json()["error"]) == (401, "revoked")
    r = await api.delete(f"/tokens/{made['id']}", headers=root)
    assert r.status_code == 200 and r.json()["changed"] is False
    r = await api.delete("/tokens/tok_nothing", headers=root)
    assert r.status_code == 422 and "no such token" in r.json()["message"]

    # A service token that never expires; a lifetime given twice is refused, naming the field.
    r = await api.post("/tokens", json={"person": "nia", "name": "ci", "never": True,
                                        "service": True}, headers=root)  # fmt: skip
    assert r.status_code == 201 and (r.json()["expires_at"], r.json()["service"]) == (None, True)
    service_secret = r.json()["secret"]
    r = await api.post("/tokens", json={"person": "nia", "name": "x", "never": True,
                                        "expires_in_days": 3}, headers=root)  # fmt: skip
    assert r.status_code == 422 and r.json()["field"] == "never"

    # Deactivated: her tokens stop at once, and no new one can be made (a state conflict).
    r = await api.post("/people/nia/deactivate", headers=root)
    assert r.json() == {"handle": "nia", "active": False, "changed": True}
    me = await api.get("/me", headers=bearer(service_secret))
    assert (me.status_code, me.json()["error"]) == (401, "inactive")
    r = await api.post("/people/nia/deactivate", headers=root)
    assert r.status_code == 200 and r.json()["changed"] is False
    r = await api.post("/tokens", json={"person": "nia", "name": "y"}, headers=root)
    assert r.status_code == 409 and "deactivated" in r.json()["message"]
    r = await api.post("/people/nobody/deactivate", headers=root)
    assert r.status_code == 422 and "no such person" in r.json()["message"]

    # Every change is in the roster's audit log, with the signed-in admin as its actor.
    changes = [(e.actor, e.detail) for e in journal.entries(records_url) if e.actor != "setup"]
    assert [actor for actor, _ in changes] == ["root"] * len(changes)
    details = [detail for _, detail in changes]
    assert details[:3] == ["person nia added (Nia Obi)", "role legal granted to nia",
                           "nia joined group child-safety"]  # fmt: skip
    assert details[3].startswith(f"token {made['id']} (laptop) created for nia, expires ")
    assert details[4] == f"token {made['id']} (laptop) of nia revoked"
    assert details[5].startswith("service token ") and details[5].endswith("never expires")
    assert details[6:] == ["person nia deactivated"]


# --- the endpoint list ----------------------------------------------------------------------------


def test_every_endpoint_is_in_the_list_and_the_readme_shows_it(tmp_path):
    """Each operation the app serves (its OpenAPI paths) is a row of ``ENDPOINTS``, and each row
    one of them; README's "HTTP API and the roster" carries ``endpoint_table()`` as generated."""
    app = create_app(Settings(data_dir=tmp_path), client=object())
    served = [(method.upper(), re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
              for path, operations in app.openapi()["paths"].items() for method in operations]  # fmt: skip

    def routes(method: str, path: str) -> list[str]:
        return [template for m, pattern, template in served if m == method and pattern.match(path)]

    assert [row for row in ENDPOINTS if len(routes(row[0], row[1])) != 1] == []
    listed = {(method, t) for method, path, _ in ENDPOINTS for t in routes(method, path)}
    assert [(m, t) for m, _, t in served if (m, t) not in listed] == []
    assert endpoint_table() in (ROOT / "README.md").read_text(), (
        "README's endpoint list is stale: paste the output of "
        "`python -c 'from api.authz import endpoint_table; print(endpoint_table())'`"
    )
