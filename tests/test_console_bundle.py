"""The console's pieces that need no Temporal: the auditor's bundle checked offline, console
passwords, the session cookie, and OpenID Connect sign-in against a stub provider (no network:
its discovery document, keys and token endpoint answer from an httpx mock transport)."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import time
import zipfile
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from pydantic import SecretStr

from audit.bundle import tamper_failures
from audit.replay import load_document, replay
from playbooks.loader import content_hash
from playbooks.schema import Playbook
from roster import passwords, service
from settings import Settings
from tests.records_db import both_backends, records_url

pytestmark = [
    both_backends,
    pytest.mark.usefixtures(records_url.__name__),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


async def verify_bundle(z: zipfile.ZipFile, incident_id: str) -> None:
    """What an auditor checks offline: every file's SHA-256, the export replays untampered, the
    chain held, the snapshot hashes to the pinned hash, the timeline CSV has the entries."""
    manifest = json.loads(z.read("MANIFEST.json"))
    assert manifest["incident_id"] == incident_id
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256(z.read(name)).hexdigest() == digest, name
    document = json.loads(z.read("export.json"))
    items = load_document(document, "bundle")
    assert items and tamper_failures(items) == [] and await replay(items) == []
    assert json.loads(z.read("chain.json"))["ok"] is True
    snapshot = json.loads(z.read("playbook.json"))
    pinned = document["manifest"]["playbook_hash"]
    assert content_hash(Playbook.model_validate(snapshot["playbook"])) == pinned
    rows = list(csv.reader(io.StringIO(z.read("timeline.csv").decode())))
    assert rows[0][:3] == ["seq", "at_utc", "actor"] and any(r[4] == "opened" for r in rows[1:])


def test_passwords_are_scrypt_hashed_checked_and_refused_when_short(records_url: str):
    service.add_person("pw-ann", display_name="Ann", roles=["ic"], actor="t", url=records_url)
    assert not passwords.check_password("pw-ann", "anything at all", url=records_url)
    with pytest.raises(service.RosterError, match="password: at least 12"):
        passwords.set_password("pw-ann", "short", actor="t", url=records_url)
    with pytest.raises(service.RosterError, match="no person"):
        passwords.set_password("pw-nobody", "long enough pass", actor="t", url=records_url)
    passwords.set_password("pw-ann", "long enough pass", actor="t", url=records_url)
    assert passwords.check_password("pw-ann", "long enough pass", url=records_url)
    assert not passwords.check_password("pw-ann", "long enough pasS", url=records_url)
    service.deactivate_person("pw-ann", actor="t", url=records_url)
    assert not passwords.check_password("pw-ann", "long enough pass", url=records_url)
    stored = passwords.hash_password("x" * 12)
    assert stored.startswith("16384$8$1$") and "x" * 12 not in stored


# --- OpenID Connect against a stub provider ----------------------------------------------------

ISSUER = "https://idp.example"


class StubProvider:
    """Discovery, keys and the token endpoint of an identity provider, answering in process."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.claims: dict[str, Any] = {}
        self.nonce = ""

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={
                "issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/authorize",
                "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/jwks"})  # fmt: skip
        if path == "/jwks":
            return httpx.Response(200, json={"keys": [self.key.as_dict(private=False)]})
        if path == "/token":
            now = int(time.time())
            claims = {"iss": ISSUER, "aud": "console-client", "iat": now, "exp": now + 300,
                      "nonce": self.nonce, **self.claims}  # fmt: skip
            token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)
            return httpx.Response(200, json={"access_token": "at", "token_type": "Bearer",
                                             "id_token": token, "expires_in": 300})  # fmt: skip
        return httpx.Response(404)


@pytest.fixture
def oidc_app(tmp_path: Any, records_url: str) -> tuple[Any, StubProvider]:
    from console.app import create_app

    settings = Settings(data_dir=tmp_path, database_url=SecretStr(records_url),
                        oidc_issuer=ISSUER, oidc_client_id=SecretStr("console-client"),
                        oidc_client_secret=SecretStr("s3cret"))  # fmt: skip
    app = create_app(settings, client=object())
    stub = StubProvider()
    app.state.oidc_transport = httpx.MockTransport(stub.handler)
    service.add_person("oidc-olga", display_name="Olga", email="olga@example.com", roles=["ic"],
                       actor="t", url=records_url)  # fmt: skip
    return app, stub


async def _flow(app: Any, stub: StubProvider, claims: dict[str, Any]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as c:
        r = await c.get("/console/signin/oidc?next=/console/approvals")
        assert r.status_code == 303
        query = parse_qs(urlparse(r.headers["location"]).query)
        assert query["client_id"] == ["console-client"] and "openid" in query["scope"][0]
        stub.nonce, stub.claims = query["nonce"][0], claims
        r = await c.get(f"/console/signin/oidc/callback?code=abc&state={query['state'][0]}")
        if r.status_code == 303:
            r2 = await c.get(r.headers["location"])
            assert r2.status_code == 200 and "Signed in as <strong>oidc-olga</strong>" in r2.text
        return r


async def test_oidc_maps_the_subject_or_verified_email_to_a_roster_person(oidc_app: Any):
    app, stub = oidc_app
    r = await _flow(app, stub, {"sub": "oidc-olga"})
    assert r.status_code == 303 and r.headers["location"] == "/console/approvals"
    r = await _flow(app, stub, {"sub": "00u1abc", "email": "Olga@example.com"})
    assert r.status_code == 303
    r = await _flow(app, stub, {"sub": "00u1abc", "email": "olga@example.com",
                                "email_verified": False})  # fmt: skip
    assert r.status_code == 403 and "is not a person on the roster" in r.text
    r = await _flow(app, stub, {"sub": "stranger"})
    assert r.status_code == 403 and "sub: &#39;stranger&#39;" in r.text


async def test_oidc_refuses_a_forged_state_or_a_token_for_another_client(oidc_app: Any):
    app, stub = oidc_app
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as c:
        r = await c.get("/console/signin/oidc/callback?code=abc&state=forged")
        assert r.status_code == 403 and "state:" in r.text
    r = await _flow(app, stub, {"sub": "oidc-olga", "aud": "another-client"})
    assert r.status_code == 403 and "aud" in r.text


async def test_the_live_stream_never_names_a_restricted_incident_to_an_outsider(monkeypatch):
    """One watcher per process reads the changes; each stream sends only what its person may see."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from console import board, live
    from console.session import Viewer

    epoch = datetime.fromtimestamp(0, UTC)
    later = datetime.fromtimestamp(1, UTC)

    def changed(url: str, since: datetime) -> tuple[datetime, list[tuple[str, str]]]:
        """Two changes, once per watcher (its ``since`` moves past them)."""
        if since > epoch:
            return since, []
        return later, [("CS-1", "child-safety"), ("PS-1", "physical-safety")]

    monkeypatch.setattr(board, "latest_change", lambda url: epoch)
    monkeypatch.setattr(board, "changed_since", changed)
    state = SimpleNamespace(settings=Settings(console_poll_seconds=0.3))  # both subscribe first

    class Req:
        app = SimpleNamespace(state=state)

        async def is_disconnected(self) -> bool:
            return False

    outsider = Viewer("o", frozenset({"ic"}), frozenset(), "x")
    member = Viewer("m", frozenset({"ic"}), frozenset({"child-safety"}), "x")
    streams = [live._stream(Req(), who) for who in (outsider, member)]  # type: ignore[arg-type]
    for s in streams:
        assert await anext(s) == "retry: 2000\n\n"
    got = [await asyncio.wait_for(anext(s), 5) for s in streams]
    assert got == ["event: changed\ndata: PS-1\n\n", "event: changed\ndata: CS-1 PS-1\n\n"]
    watcher = state.console_watcher
    assert len(watcher.streams) == 2
    for s in streams:
        await s.aclose()
    assert watcher.streams == set()


def test_the_board_says_what_an_incident_waits_on_and_follows_the_projection(records_url: str):
    """Who must act (the owner until the ack, the roles a decision waits on, the owner of a step),
    the nearest running deadline and its warning, the pending decisions; written with every
    batch the records take, and emptied once the incident closes."""
    from sqlmodel import Session

    from records.board import board_values
    from records.chain import write_batch
    from records.tables import IncidentBoard, records_engine
    from tests.records_db import T0, at, batch, clock, entry, state
    from workflows.models import PendingApproval, StepState

    st = state([entry(1, 0, "alice", "opened")], owner="casey")
    st.steps = {
        "notice": StepState(step_id="notice", kind="approval", status="running", started_at=T0),
        "wait": StepState(
            step_id="wait", kind="wait_for", status="running", owner="lers", started_at=T0
        ),  # fmt: skip
        "sms": StepState(step_id="sms", kind="action", status="failed", started_at=T0),
    }
    st.approvals = {"notice": PendingApproval(step_id="notice", roles=["legal"], second_roles=["mgr"],
                                              requested_by="casey", requested_at=T0)}  # fmt: skip
    st.clocks = {
        "notice": clock("notice", 60, warn=30).model_copy(update={"due_at": at(60)}),
        "incident.resolve": clock("incident.resolve", 600).model_copy(update={"due_at": at(600)}),
    }
    v = board_values(st)
    assert v["must_act"] == ",casey,legal,lers,"  # owner (no ack, a failed step), Legal, lers
    assert v["steps"] == "notice,wait" and v["next_clock"] == "notice"
    assert (v["next_due_at"], v["next_warn_at"]) == (at(60), at(30))
    [pending] = json.loads(v["approvals"])
    assert (pending["step"], pending["roles"], pending["due_at"][:16]) == ("notice", ["legal"],
                                                                           at(60).isoformat()[:16])  # fmt: skip

    write_batch(batch("B-1", st.timeline, st), records_url)
    with Session(records_engine(records_url)) as s:
        row = s.get(IncidentBoard, "B-1")
    assert row is not None and row.must_act == ",casey,legal,lers,"
    done = st.model_copy(update={"status": "closed", "closed_at": at(90)})
    done.timeline = [*st.timeline, entry(2, 90, "casey", "closed")]
    write_batch(batch("B-1", done.timeline[1:], done), records_url)
    with Session(records_engine(records_url)) as s:
        row = s.get(IncidentBoard, "B-1")
    assert row is not None and (row.must_act, row.steps, row.next_due_at, row.approvals) == (
        "", "", None, "[]")  # fmt: skip
