"""The codec server: the Web UI shows an incident's payloads in plaintext only in the browser of a
signed-in person who may read that incident.

Temporal stores every payload sealed (``encryption/codec.py``); the Web UI, and `temporal` with
``--codec-endpoint``, send what they show to ``POST /codec/decode`` (Temporal's codec server
protocol: ``{"payloads": [...]}`` as protobuf JSON, ``X-Namespace``). Each payload is opened only
if the caller holds a reading role and may see the incident whose data key sealed it (restricted
playbooks: their group only); any other comes back as it was, still sealed. The caller signs in by
``Authorization: Bearer`` (the UI's "pass access token", once an identity provider is wired) or
by the cookie ``/codec/signin`` sets (HttpOnly, this path only): the embedded Web UI sends it with
"include cross-origin credentials" on. CORS answers the Web UI's origin only, on these paths only.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from api import authz
from api.errors import Unauthenticated
from api.routes import playbook_of
from encryption.codec import WORKFLOW, EncryptionCodec, Keys, data_key_of, is_sealed
from incidents.service import InvalidRequest
from records.purge import purged
from settings import Settings
from workflows.names import incident_id_of

router = APIRouter()
log = structlog.get_logger("api.codec")
COOKIE = "cr_codec_session"
SESSION_SECONDS = 8 * 3600
MAX_PAYLOADS = 1_000


def ui_origins(settings: Settings) -> set[str]:
    """The Web UI's origins the codec answers (the embedded UI on loopback, or configured)."""
    if settings.ui_origins:
        return {o.rstrip("/") for o in settings.ui_origins}
    return {f"http://{host}:{settings.ui_port}" for host in ("127.0.0.1", "localhost")}


def _cors(request: Request, response: Response) -> Response:
    origin = request.headers.get("origin", "")
    if origin in ui_origins(request.app.state.settings):
        response.headers.update({
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, Authorization, X-Namespace",
            "Vary": "Origin",
        })  # fmt: skip
    return response


def _caller(request: Request) -> authz.Caller:
    """The signed-in person: a Bearer token, else the session cookie (401 otherwise)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    secret = token.strip() if scheme.lower() == "bearer" else request.cookies.get(COOKIE, "")
    if not secret:
        raise Unauthenticated("missing", "sign in at /codec/signin, or send a Bearer token")
    who: authz.Caller = request.app.state.authenticate(secret)
    request.state.caller = who
    return who


@router.options("/codec/{operation}")
async def preflight(operation: str, request: Request) -> Response:
    return _cors(request, Response(status_code=204))


def _payloads(body: Any, settings: Settings, request: Request) -> Payloads:
    namespace = request.headers.get("x-namespace")
    if namespace and namespace != settings.temporal_namespace:
        raise authz.Forbidden(
            f"decoding for namespace {namespace}", frozenset(), "is not served here"
        )
    if not isinstance(body, dict) or len(body.get("payloads") or []) > MAX_PAYLOADS:
        raise InvalidRequest(f"payloads: expected {{'payloads': [...]}}, at most {MAX_PAYLOADS}")
    try:
        return json_format.ParseDict(body, Payloads(), ignore_unknown_fields=True)
    except json_format.ParseError as err:
        raise InvalidRequest(f"payloads: not protobuf JSON ({str(err)[:120]})") from None


async def _may_open(request: Request, who: authz.Caller, scope: str, seen: dict[str, bool]) -> bool:
    """Whether ``who`` may read what the data key ``scope`` sealed (cached per request)."""
    if scope not in seen:
        incident_id = incident_id_of(scope.removeprefix(WORKFLOW))
        allowed = False
        if incident_id is not None and who.roles & authz.ACTIONS["read"]:
            allowed = authz.may_see(who, await playbook_of(request, incident_id))
            # A purge destroys the key; a process may still hold it cached for a few minutes.
            url = request.app.state.settings.effective_database_url
            allowed = allowed and await asyncio.to_thread(purged, incident_id, url) is None
        seen[scope] = allowed
    return seen[scope]


@router.post("/codec/decode")
async def decode(request: Request) -> Response:
    """Open the payloads the caller may read; leave every other one sealed."""
    settings: Settings = request.app.state.settings
    who = _caller(request)
    authz.check(who, "read")
    payloads = _payloads(await request.json(), settings, request)
    codec = EncryptionCodec(request.app.state.codec_keys)
    seen: dict[str, bool] = {}
    opened, scopes = [], set()
    for payload in payloads.payloads:
        scope = data_key_of(payload)
        if is_sealed(payload) and await _may_open(request, who, scope, seen):
            payload = (await asyncio.to_thread(codec.decode_sync, [payload]))[0]
            scopes.add(scope)
        opened.append(payload)
    log.info("codec.decoded", person=who.person, scopes=sorted(scopes)[:20],
             withheld=sum(1 for ok in seen.values() if not ok))  # fmt: skip
    answer = json_format.MessageToDict(Payloads(payloads=opened))
    return _cors(request, JSONResponse(answer))


@router.post("/codec/encode")
async def encode(request: Request) -> Response:
    """Seal payloads under the master key (what the Web UI sends; an incident acts only on
    messages the API signed, so nothing sealed here can change one)."""
    settings: Settings = request.app.state.settings
    who = _caller(request)
    authz.check(who, "read")
    payloads = _payloads(await request.json(), settings, request)
    codec = EncryptionCodec(request.app.state.codec_keys)
    sealed = await asyncio.to_thread(codec.encode_sync, list(payloads.payloads))
    return _cors(request, JSONResponse(json_format.MessageToDict(Payloads(payloads=sealed))))


SIGNIN_PAGE = """<!doctype html><meta charset="utf-8"><title>critical-response: codec sign-in</title>
<h1>Show incidents' payloads in the Web UI</h1>
<p>Paste your API token (<code>incident login</code> keeps it in ~/.config/critical-response/token).
The Web UI then shows, in this browser only, the payloads of the incidents you may read, for 8 hours.
In the Web UI's Codec Server settings turn on <em>Include cross-origin credentials</em>.</p>
<form method="post"><input name="token" type="password" size="60" autofocus>
<button>Sign in</button></form>"""


@router.get("/codec/signin", response_class=HTMLResponse)
async def signin_page() -> str:
    return SIGNIN_PAGE


@router.post("/codec/signin")
async def signin(request: Request) -> Response:
    """Check the token (the form's ``token`` field) and keep it in an HttpOnly cookie for the
    codec paths only."""
    body = (await request.body())[:1000].decode(errors="replace")
    token = (parse_qs(body).get("token") or [""])[0]
    who: authz.Caller = request.app.state.authenticate(token.strip())
    authz.check(who, "read")
    response = HTMLResponse(f"<p>Signed in as {who.person}: the Web UI can decode now.</p>")
    response.set_cookie(
        COOKIE, token.strip(), max_age=SESSION_SECONDS, path="/codec", httponly=True,
        samesite="lax", secure=request.url.scheme == "https",
    )  # fmt: skip
    return response


def codec_keys() -> Keys:
    """The keys the codec server opens payloads with (as every client's data converter)."""
    return Keys.from_settings()
