"""The endpoints: each authenticates (``caller``), authorizes (``api/authz.py``), and calls the
front door (``incidents/``) as the signed-in person. Nobody names themselves: the actor is the
token's person, and a role is chosen only among the roles that person holds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlmodel import Session
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api import authz
from api.bodies import ActionBody, DecisionBody, EventBody, OpenBody, ReopenBody, StepBody
from api.errors import NotVisible, Unauthenticated
from assist.recording import triage_note
from identity.signing import signed, trusting
from incidents import actions, listing
from incidents.actions import new_request_id
from incidents.service import (
    InvalidRequest,
    build_input,
    new_incident_id,
    reopen_incident,
    start_incident,
)
from playbooks.loader import PlaybookError, load_playbook
from records.tables import IncidentRecord, records_engine
from roster import service as roster
from workflows.models import (
    ApprovalRequest,
    CommanderRequest,
    ExternalEvent,
    ReopenRequest,
    Severity,
    StepRequest,
)
from workflows.names import SA_PLAYBOOK

router = APIRouter()
# The Update each commander action is (what its signature names).
UPDATE_NAMES = {"ack": "acknowledge", "assign": "assign", "escalate": "escalate", "note": "note",
                "close": "close"}  # fmt: skip


def caller(request: Request) -> authz.Caller:
    """The signed-in person, from ``Authorization: Bearer <token>`` (401 otherwise)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing", "send Authorization: Bearer <token> (incident login)")
    who: authz.Caller = request.app.state.authenticate(token.strip())
    request.state.caller = who  # for the access log of a refusal (api/errors.py)
    return who


Caller = Annotated[authz.Caller, Depends(caller)]


def client_of(request: Request) -> Client:
    return request.app.state.client  # type: ignore[no-any-return]


def _role(who: authz.Caller, action: str, asked: str | None) -> str:
    """The role to act in: the one asked for (if held), else the first held that may act."""
    if asked:
        if asked not in who.roles & authz.ACTIONS[action]:
            raise authz.Forbidden(f"{action} as {asked}", who.roles & authz.ACTIONS[action])
        return asked
    return sorted(who.roles & authz.ACTIONS[action])[0]


def recorded_playbook(incident_id: str, url: str) -> str | None:
    """The incident's playbook as the records' projection has it (None: not in the records)."""
    with Session(records_engine(url)) as s:
        record = s.get(IncidentRecord, incident_id)
    return record.playbook if record is not None else None


def _event_role(request: Request, who: authz.Caller, playbook: str, body: EventBody) -> str:
    """The role an event is sent in: the one asked for (if held), else one the playbook names
    for this event that the caller holds, else the caller's first role that may send events.
    The incident's own snapshot decides whether it is accepted."""
    if body.role:
        return _role(who, "event", body.role)
    try:
        spec = load_playbook(playbook, request.app.state.settings.playbooks_dir).playbook.events
    except PlaybookError:
        spec = {}
    fits = sorted(
        who.roles & authz.ACTIONS["event"] & set(getattr(spec.get(body.name), "roles", []))
    )
    return fits[0] if fits else _role(who, "event", None)


async def playbook_of(request: Request, incident_id: str) -> str | None:
    """The incident's playbook: from the records, else from its workflow's search attributes
    (None: unknown), for deciding who may see an incident without reading its payloads."""
    url = request.app.state.settings.effective_database_url
    if recorded := await asyncio.to_thread(recorded_playbook, incident_id, url):
        return recorded
    try:
        described = await actions.handle(client_of(request), incident_id).describe()
    except RPCError:
        return None
    return described.typed_search_attributes.get(SA_PLAYBOOK)


async def _visible(
    request: Request, who: authz.Caller, incident_id: str, *, acting: bool = False
) -> Any:
    """The incident's status, if the caller may see it; an unknown incident and a hidden one
    answer alike (404), and only the hidden one is recorded as a refusal. ``acting``: only what
    an action needs to know first (``actions.target``, no query to the incident's worker)."""
    fetch = actions.target if acting else actions.status
    try:
        status = await fetch(client_of(request), incident_id)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND or "already completed" in err.message:
            raise
        raise NotVisible(f"no incident {incident_id}", hidden=False) from None
    except actions.IncidentPurged:  # 410 Gone, to those who may see it; to others it never was
        if not authz.may_see(who, await playbook_of(request, incident_id)):
            raise NotVisible(f"no incident {incident_id}") from None
        raise
    if not authz.may_see(who, status.playbook):
        raise NotVisible(f"no incident {incident_id}")
    return status


async def _assignable(request: Request, person: str) -> None:
    """An owner is an active person holding a commander role (a typo never leaves an incident
    owned by nobody)."""
    url = request.app.state.settings.effective_database_url
    held = await asyncio.to_thread(roster.roles_of, person, url=url)
    if not held & authz.COMMANDERS:
        raise InvalidRequest(
            f"to: {person} is not on the roster with a commander role "
            f"({', '.join(sorted(authz.COMMANDERS))})"
        )


@router.post("/incidents", status_code=201)
async def open_incident(body: OpenBody, request: Request, who: Caller) -> JSONResponse:
    authz.check(who, "open")
    if not authz.may_see(who, body.playbook):
        group = authz.RESTRICTED_PLAYBOOKS[body.playbook]
        raise authz.Forbidden(
            f"opening {body.playbook}", frozenset(), f"is for the {group} group only"
        )
    settings = request.app.state.settings
    inp = build_input(
        playbook=body.playbook, severity=body.severity, summary=body.summary,
        fields=body.fields, incident_id=body.id or new_incident_id(), opened_by=who.person,
        settings=settings,
    )  # fmt: skip
    note = await triage_note(settings, body.triage, body.summary, playbook=body.playbook,
                             severity=inp.severity, by=who.person)  # fmt: skip
    if note is not None:
        inp = inp.model_copy(update={"triage": note})
    inp = trusting(inp, request.app.state.keys, settings.effective_database_url)
    result = await start_incident(client_of(request), inp, settings.task_queue)
    answer = result.__dict__ | {"ignored_fields": [], "triage": note.model_dump() if note else None}
    return JSONResponse(answer, 201 if result.created else 200)


@router.get("/incidents")
async def list_incidents(
    request: Request,
    who: Caller,
    open: bool = False,
    severity: Severity | None = None,
    playbook: str | None = None,
    breached: bool = False,
    attention: bool = False,
    limit: Annotated[int, Field(ge=1, le=1000)] = 100,
) -> list[dict[str, object]]:
    authz.check(who, "list")
    query = listing.list_query(
        open_only=open, severity=severity, playbook=playbook, breached=breached,
        attention=attention,
    )  # fmt: skip
    rows = await listing.list_incidents(client_of(request), query, limit)
    return [r.as_json() for r in rows if authz.may_see(who, r.playbook)]


@router.get("/incidents/{incident_id}")
async def status(incident_id: str, request: Request, who: Caller) -> Any:
    authz.check(who, "read")
    return await _visible(request, who, incident_id)


@router.get("/incidents/{incident_id}/timeline")
async def timeline(incident_id: str, request: Request, who: Caller) -> Any:
    authz.check(who, "read")
    await _visible(request, who, incident_id)
    return await actions.timeline(client_of(request), incident_id)


@router.post("/incidents/{incident_id}/actions/{action}")
async def act(
    incident_id: str,
    action: Literal["ack", "assign", "escalate", "note", "close"],
    body: ActionBody,
    request: Request,
    who: Caller,
) -> Any:
    authz.check(who, action)
    status = await _visible(request, who, incident_id, acting=True)
    if action == "assign" and body.to:
        await _assignable(request, body.to)
    command = CommanderRequest(
        actor=who.person, role=_role(who, action, body.role), to=body.to,
        severity=body.severity, reason=body.reason, confirm=body.confirm,
    )  # fmt: skip
    command = signed(request.app.state.keys, status, UPDATE_NAMES[action], command)
    return await actions.act(client_of(request), incident_id, action, command)


@router.post("/incidents/{incident_id}/decisions")
async def decide(incident_id: str, body: DecisionBody, request: Request, who: Caller) -> Any:
    authz.check_decision(who, body.role)
    status = await _visible(request, who, incident_id, acting=True)
    # A signal is confirmed by the entry carrying its request id: stamped before signing, as the
    # signature covers every field.
    decision = ApprovalRequest(step_id=body.step, actor=who.person, role=body.role,
                               reason=body.reason,
                               request_id=new_request_id() if body.signal else None)  # fmt: skip
    decision = signed(request.app.state.keys, status, body.decision, decision)
    return await actions.decide(
        client_of(request), incident_id, decision, approve=body.decision == "approve",
        by_signal=body.signal,
    )  # fmt: skip


@router.post("/incidents/{incident_id}/steps/{step}/{move}")
async def resolve_failed_step(
    incident_id: str,
    step: str,
    move: Literal["retry", "skip"],
    body: StepBody,
    request: Request,
    who: Caller,
) -> Any:
    authz.check(who, move)
    status = await _visible(request, who, incident_id, acting=True)
    decision = StepRequest(step_id=step, actor=who.person, role=_role(who, move, body.role),
                           reason=body.reason)  # fmt: skip
    decision = signed(request.app.state.keys, status, f"{move}_step", decision)
    return await actions.resolve_failed_step(
        client_of(request), incident_id, decision, retry=move == "retry"
    )


@router.post("/incidents/{incident_id}/events")
async def event(incident_id: str, body: EventBody, request: Request, who: Caller) -> Any:
    authz.check(who, "event")
    status = await _visible(request, who, incident_id, acting=True)
    role = _event_role(request, who, status.playbook, body)
    message = ExternalEvent(name=body.name, actor=who.person, data=body.data, role=role,
                            request_id=new_request_id())  # fmt: skip
    message = signed(request.app.state.keys, status, "event", message)
    return await actions.send_event(client_of(request), incident_id, message)


@router.post("/incidents/{incident_id}/reopen")
async def reopen(incident_id: str, body: ReopenBody, request: Request, who: Caller) -> Any:
    authz.check(who, "reopen")
    settings = request.app.state.settings
    playbook = await playbook_of(request, incident_id)
    if playbook is not None and not authz.may_see(who, playbook):
        raise NotVisible(f"no incident {incident_id}")
    result = await reopen_incident(
        client_of(request), incident_id,
        reopen=ReopenRequest(actor=who.person, role=_role(who, "reopen", None), reason=body.reason),
        task_queue=settings.task_queue,
    )  # fmt: skip
    return result.__dict__


@router.get("/authz")
async def role_matrix(who: Caller) -> list[dict[str, str]]:
    """Which roles may take which action (what the API enforces)."""
    return [{"action": action, "roles": roles} for action, roles in authz.table()]


@router.get("/healthz")
async def healthz() -> dict[str, object]:
    return {"ok": True, "at": datetime.now(UTC).isoformat()}
