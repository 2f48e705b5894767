"""Records, reports, on-call and the roster through the API (issue 9): the auditors' export, the
team lead's SLA report, who holds a role, and the admins' people and tokens.

Each endpoint checks its row of the role matrix (``api/authz.py``) and calls the function the
matching `incident` command calls. Restricted playbooks stay invisible to everyone outside their
group here too: their export is a 404 (decided from the records, so a closed and archived incident
is covered), and a report leaves their incidents out. A roster change names the signed-in admin as
its actor in the audit log.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from api import authz
from api.bodies import PersonBody, PurgeBody, TokenCreateBody
from api.errors import NotVisible
from api.routes import caller, client_of, playbook_of, recorded_playbook
from audit.export import export_incident
from incidents.service import InvalidRequest
from records.purge import IncidentPurged, purge_incident
from records.tables import iso
from reports.report import Report, build_report, known_playbooks, parse_since, to_csv
from roster import service as roster
from roster import tokens, yamlfile
from roster.tables import ApiToken

router = APIRouter()
Caller = Annotated[authz.Caller, Depends(caller)]


def _url(request: Request) -> str:
    return request.app.state.settings.effective_database_url  # type: ignore[no-any-return]


# --- the auditors' export ----------------------------------------------------------------------


@router.get("/incidents/{incident_id}/export")
async def export(incident_id: str, request: Request, who: Caller) -> JSONResponse:
    """Every run's history (archive and Temporal) and a manifest, as `incident audit export`."""
    authz.check(who, "export")
    missing = f"no incident {incident_id}"
    recorded = await asyncio.to_thread(recorded_playbook, incident_id, _url(request))
    if recorded is not None and not authz.may_see(who, recorded):
        raise NotVisible(missing)
    try:
        bundle = await export_incident(incident_id, client_of(request))
    except IncidentPurged:
        raise  # 410, with when, by whom and why (visibility was checked from the records above)
    except LookupError:
        raise NotVisible(missing, hidden=False) from None  # answers as a hidden one does
    if not authz.may_see(who, bundle["manifest"]["playbook"]):
        raise NotVisible(missing)
    return JSONResponse(bundle)


@router.post("/incidents/{incident_id}/purge")
async def purge(incident_id: str, body: PurgeBody, request: Request, who: Caller) -> dict[str, Any]:
    """Destroy the incident's data keys (every copy of its data unreadable at once) and record
    who, when and why; refused (409) while it runs, under a legal hold or before its retention
    ends (``records/purge.py``)."""
    authz.check(who, "purge")
    playbook = await playbook_of(request, incident_id)
    if playbook is None:
        raise NotVisible(f"no incident {incident_id}", hidden=False)
    if not authz.may_see(who, playbook):
        raise NotVisible(f"no incident {incident_id}")
    done = await purge_incident(client_of(request), incident_id, body.reason, who.person)
    return {"incident_id": done.incident_id, "purged_at": iso(done.at), "by": done.by,
            "reason": done.reason, "keys_destroyed": done.keys_destroyed,
            "already": done.already}  # fmt: skip


# --- the team lead's report --------------------------------------------------------------------


@router.get("/metrics", response_model=None)
async def metrics(request: Request, who: Caller) -> PlainTextResponse:
    """Prometheus metrics from the records (``insights/metrics.py``), for a token that may read
    the SLA report; restricted playbooks the caller may not see are left out."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from insights.metrics import RecordsCollector

    authz.check(who, "report")
    registry = CollectorRegistry()
    registry.register(RecordsCollector(_url(request), lambda p: authz.may_see(who, p)))
    body = await asyncio.to_thread(generate_latest, registry)
    return PlainTextResponse(body.decode(), media_type=CONTENT_TYPE_LATEST)


@router.get("/reports/sla", response_model=None)
async def sla_report(
    request: Request,
    who: Caller,
    since: str | None = None,
    playbook: Annotated[list[str], Query(max_length=64)] = [],  # noqa: B006 - FastAPI copies it
    format: Literal["json", "csv"] = "json",
) -> Report | PlainTextResponse:
    """The SLA and operations report `incident report` prints (``since``: a date, an ISO time or
    a look-back such as 7d; ``playbook`` repeated), over the playbooks the caller may see."""
    authz.check(who, "report")
    try:
        start = parse_since(since)
    except (ValueError, OverflowError) as err:
        raise InvalidRequest(f"since: {err}") from None
    url = _url(request)
    known = await asyncio.to_thread(known_playbooks, request.app.state.settings.playbooks_dir, url)
    visible = sorted(name for name in known if authz.may_see(who, name))
    unknown = [name for name in playbook if name not in visible]  # a hidden one is unknown too
    if unknown:
        raise InvalidRequest(
            f"playbook: unknown playbook {unknown[0]!r}; known: {', '.join(visible)}"
        )
    # Someone outside a restricted playbook's group sees the report of the others only: the
    # scope is the playbooks they may see, even none, never "every playbook".
    hiding = any(not authz.may_see(who, name) for name in authz.RESTRICTED_PLAYBOOKS)
    scope = playbook or (visible if hiding else [])
    report = await asyncio.to_thread(build_report, start, scope, url=url, scoped=hiding)
    if format == "csv":
        return PlainTextResponse(to_csv(report), media_type="text/csv")
    return report


# --- who is on call ----------------------------------------------------------------------------


def _at(value: str | None) -> datetime:
    """An ISO time (naive: UTC), or now when absent or ``now``."""
    if value is None or value == "now":
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"at: {value[:64]!r} is not an ISO time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@router.get("/oncall/{role}")
async def oncall(
    role: str, request: Request, who: Caller, at: str | None = None
) -> dict[str, object]:
    """Who holds ``role`` at ``at`` (default now): override, then rotation, then every holder."""
    authz.check(who, "oncall")
    roster.check_name(role, "role")
    when = _at(at)
    people = await asyncio.to_thread(roster.holders, role, when, url=_url(request))
    return {"role": role, "at": iso(when), "holders": people}


# --- the admins' roster ------------------------------------------------------------------------


@router.get("/people")
async def people(request: Request, who: Caller) -> list[dict[str, Any]]:
    """Everyone, with their roles and groups and whether they are active."""
    authz.check(who, "roster_admin")
    return await asyncio.to_thread(yamlfile.people_rows, url=_url(request))


@router.post("/people", status_code=201)
async def add_person(body: PersonBody, request: Request, who: Caller) -> dict[str, Any]:
    """Add a person with their roles and groups (a handle already taken: 409)."""
    authz.check(who, "roster_admin")
    url = _url(request)
    person = await asyncio.to_thread(
        roster.add_person, body.handle, display_name=body.name, email=body.email,
        roles=body.roles, groups=body.groups, actor=who.person, url=url,
    )  # fmt: skip
    return await asyncio.to_thread(yamlfile.person_row, person, url=url)


@router.post("/people/{handle}/deactivate")
async def deactivate(handle: str, request: Request, who: Caller) -> dict[str, object]:
    """They hold no role from now on and none of their tokens works; ``changed`` is false when
    they already were deactivated."""
    authz.check(who, "roster_admin")
    changed = await asyncio.to_thread(
        roster.deactivate_person, handle, actor=who.person, url=_url(request)
    )
    return {"handle": handle, "active": False, "changed": changed}


def _token_of(person: str, secret: str, url: str) -> ApiToken:
    digest = tokens.hash_secret(secret)
    return next(t for t in tokens.list_tokens(person, url=url) if t.secret_sha256 == digest)


@router.post("/tokens", status_code=201)
async def create_token(body: TokenCreateBody, request: Request, who: Caller) -> dict[str, object]:
    """A token for ``person``: its metadata and its secret, in this answer only."""
    authz.check(who, "roster_admin")
    url, days = _url(request), body.lifetime_days
    secret = await asyncio.to_thread(
        tokens.create_token, body.person, name=body.name,
        expires_in=None if days is None else timedelta(days=days), service=body.service,
        actor=who.person, url=url,
    )  # fmt: skip
    made = await asyncio.to_thread(_token_of, body.person, secret, url)
    return tokens.describe(made) | {"secret": secret}


@router.get("/tokens")
async def list_tokens(
    request: Request, who: Caller, person: str | None = None
) -> list[dict[str, object]]:
    """Tokens (of ``person``, or everyone's), newest first: metadata, never a secret."""
    authz.check(who, "roster_admin")
    found = await asyncio.to_thread(tokens.list_tokens, person, url=_url(request))
    return [tokens.describe(t) for t in found]


@router.delete("/tokens/{token_id}")
async def revoke_token(token_id: str, request: Request, who: Caller) -> dict[str, object]:
    """Revoke a token: it stops working at once (``changed`` false: it already had)."""
    authz.check(who, "roster_admin")
    changed = await asyncio.to_thread(tokens.revoke, token_id, who.person, url=_url(request))
    return {"id": token_id, "revoked": True, "changed": changed}
