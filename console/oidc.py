"""Signing in through OpenID Connect (production), when ``CR_OIDC_ISSUER``,
``CR_OIDC_CLIENT_ID`` and ``CR_OIDC_CLIENT_SECRET`` are set: the authorization-code flow with
state and nonce (authlib's OAuth 2 client), the ID token's signature checked against the issuer's
keys and its issuer, audience, expiry and nonce checked (joserfc, authlib's JOSE library).

The identity provider says who someone is; the roster says what they may do. The token's subject
is a roster handle, or its (verified) email is a roster person's email: anyone else is refused,
with that reason. From there the session is the same as a local account's (``console/session.py``).
"""

from __future__ import annotations

import asyncio
import secrets
import warnings
from typing import Any

import authlib.deprecate  # noqa: F401 - its warning filter first, so ours below wins
import httpx
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from joserfc import jwt
from joserfc.jwk import KeySet

from console import session
from console.verdict import Verdict
from console.web import page
from roster import service as roster

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # authlib's notice about its httpx module's future name
    from authlib.integrations.httpx_client import AsyncOAuth2Client

router = APIRouter(prefix="/console")
ALGORITHMS = ["RS256", "ES256", "PS256", "EdDSA"]


class OidcRefused(Exception):
    """Sign-in through the identity provider failed; the message says why, in one line."""


def person_for(claims: dict[str, Any], url: str) -> str:
    """The roster handle the ID token's claims name: its subject as a handle, else its verified
    email as a person's email; an inactive or unknown person is refused."""
    people = {p.handle: p for p in roster.list_people(url=url)}
    subject = str(claims.get("sub") or "")
    person = people.get(subject)
    email = str(claims.get("email") or "").lower()
    if person is None and email and claims.get("email_verified") is not False:
        person = next((p for p in people.values() if (p.email or "").lower() == email), None)
    if person is None:
        raise OidcRefused(
            f"sub: {subject!r} (email {email or 'none'}) is not a person on the roster; ask an "
            "admin to add you (incident people add)"
        )
    if not person.active:
        raise OidcRefused(f"sub: {person.handle} is deactivated on the roster")
    return person.handle


def _configured(request: Request) -> tuple[str, str, str]:
    s = request.app.state.settings
    if not (s.oidc_issuer and s.oidc_client_id and s.oidc_client_secret):
        raise OidcRefused("CR_OIDC_ISSUER: OpenID Connect is not configured here")
    return (s.oidc_issuer.rstrip("/"), s.oidc_client_id.get_secret_value(),
            s.oidc_client_secret.get_secret_value())  # fmt: skip


def _http(request: Request) -> dict[str, Any]:
    """httpx options: a transport tests can replace (no network in the suite)."""
    transport = getattr(request.app.state, "oidc_transport", None)
    return {"transport": transport} if transport is not None else {}


async def metadata(request: Request, issuer: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10, **_http(request)) as http:
        r = await http.get(f"{issuer}/.well-known/openid-configuration")
        r.raise_for_status()
        meta: dict[str, Any] = r.json()
    if meta.get("issuer", "").rstrip("/") != issuer:
        raise OidcRefused(f"issuer: the provider says {meta.get('issuer')!r}, not {issuer!r}")
    return meta


def _redirect_uri(request: Request) -> str:
    base = request.app.state.settings.console_url or str(request.base_url).rstrip("/")
    return f"{base.rstrip('/')}/console/signin/oidc/callback"


def _client(request: Request, client_id: str, secret: str) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(client_id, secret, scope="openid email profile",
                             redirect_uri=_redirect_uri(request), **_http(request))  # fmt: skip


@router.get("/signin/oidc", include_in_schema=False)
async def start(request: Request, next: str | None = None) -> Response:
    try:
        issuer, client_id, secret = _configured(request)
        meta = await metadata(request, issuer)
    except (OidcRefused, httpx.HTTPError) as err:
        return _refused(request, err)
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    async with _client(request, client_id, secret) as client:
        where, _ = client.create_authorization_url(meta["authorization_endpoint"], state=state,
                                                   nonce=nonce)  # fmt: skip
    response = RedirectResponse(where, 303)
    pre = session.pre_session(request) | {"s": state, "n": nonce, "next": next or ""}
    session.keep_pre_session(request, response, pre)
    return response


async def _claims(request: Request, code: str, nonce: str) -> dict[str, Any]:
    issuer, client_id, secret = _configured(request)
    meta = await metadata(request, issuer)
    async with _client(request, client_id, secret) as client:
        token = await client.fetch_token(meta["token_endpoint"], code=code,
                                         grant_type="authorization_code")  # fmt: skip
    async with httpx.AsyncClient(timeout=10, **_http(request)) as http:
        r = await http.get(meta["jwks_uri"])
        r.raise_for_status()
        keys = KeySet.import_key_set(r.json())
    if "id_token" not in token:
        raise OidcRefused("id_token: the provider's answer has none (is the scope openid?)")
    decoded = jwt.decode(token["id_token"], keys, algorithms=ALGORITHMS)
    jwt.JWTClaimsRegistry(
        leeway=60, iss={"essential": True, "value": issuer}, sub={"essential": True},
        aud={"essential": True, "value": client_id}, exp={"essential": True},
        nonce={"essential": True, "value": nonce},
    ).validate(decoded.claims)  # fmt: skip
    return dict(decoded.claims)


@router.get("/signin/oidc/callback", include_in_schema=False)
async def callback(request: Request, code: str = "", state: str = "") -> Response:
    pre = session.pre_session(request)
    try:
        if not state or state != pre.get("s"):
            raise OidcRefused("state: this sign-in was not started here, or it expired; try again")
        claims = await _claims(request, code, str(pre.get("n", "")))
        url = request.app.state.settings.effective_database_url
        handle = await asyncio.to_thread(person_for, claims, url)
    except Exception as err:  # noqa: BLE001 - every failure is one line on the sign-in page
        return _refused(request, err)
    next_page = str(pre.get("next") or "")
    target = next_page if next_page.startswith("/console/") else "/console/incidents"
    response = RedirectResponse(target, 303)
    session.start(request, response, handle)
    return response


def _refused(request: Request, err: Exception) -> Response:
    text = str(err) if isinstance(err, OidcRefused) else f"sign-in: {type(err).__name__}: {err}"
    return page(request, "refused.html", None, 403, verdict=Verdict(False, 403, text))
