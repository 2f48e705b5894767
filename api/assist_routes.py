"""The assisted-response endpoints (issue 14): a triage suggestion for a case's text, and the
handover summary of an incident from the records, both for the console and the `incident`
command. An incident opened with ``triage`` records the suggestion beside the person's choice
(``POST /incidents``, ``assist.recording.triage_note``)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api import authz
from api.bodies import SuggestBody, TriageBody
from api.errors import NotVisible
from api.routes import Caller, _role, _visible, client_of
from assist.chat import ChatError, ChatProvider
from assist.providers import installed_playbooks, provider_for
from assist.recording import SuggestionUnavailable, budget, suggest_within, triage_note
from assist.summary import Handover, UnknownIncident, checked_rewrite, handover
from identity.signing import signed
from incidents import actions
from records.tables import IncidentRecord, records_engine
from settings import Settings
from workflows.assisted import TriageRequest
from workflows.incident import IncidentWorkflow

router = APIRouter()


@router.post("/suggest")
async def suggest(body: SuggestBody, request: Request, who: Caller) -> Any:
    authz.check(who, "suggest")
    settings: Settings = request.app.state.settings
    if body.provider == "chat" and not settings.assist_chat_url:
        return JSONResponse({"error": "invalid_request", "field": "provider", "message":
                             "provider: chat needs CR_ASSIST_CHAT_URL; use local"}, 422)  # fmt: skip
    try:
        found = await suggest_within(provider_for(body.provider, settings), body.text,
                                     installed_playbooks(settings),
                                     budget(settings, body.provider))  # fmt: skip
    except SuggestionUnavailable as err:
        return JSONResponse({"error": "unavailable", "message": str(err)}, 503)
    return found.model_dump(mode="json")


def _recorded_playbook(incident_id: str, url: str) -> str | None:
    from sqlmodel import Session

    with Session(records_engine(url)) as s:
        record = s.get(IncidentRecord, incident_id)
    return record.playbook if record else None


@router.post("/incidents/{incident_id}/triage")
async def record_triage(incident_id: str, body: TriageBody, request: Request, who: Caller) -> Any:
    """A suggestion for the open incident's summary, recorded with the caller's choice (signed,
    like every commander action); the timeline entry it recorded."""
    authz.check(who, "triage")
    status = await _visible(request, who, incident_id)
    settings: Settings = request.app.state.settings
    if body.provider == "chat" and not settings.assist_chat_url:
        return JSONResponse({"error": "invalid_request", "field": "provider", "message":
                             "provider: chat needs CR_ASSIST_CHAT_URL; use local"}, 422)  # fmt: skip
    role = _role(who, "triage", body.role)
    note = await triage_note(settings, body.provider, status.summary, playbook=status.playbook,
                             severity=body.severity or status.severity, by=who.person)  # fmt: skip
    if note is None:
        return JSONResponse({"error": "unavailable", "message": f"{body.provider} gave no "
                             "suggestion in time; nothing was recorded"}, 503)  # fmt: skip
    message = signed(request.app.state.keys, status, "record_triage",
                     TriageRequest(actor=who.person, role=role, note=note))  # fmt: skip
    return await actions.handle(client_of(request), incident_id).execute_update(
        IncidentWorkflow.record_triage, message
    )


@router.get("/incidents/{incident_id}/summary")
async def summary(incident_id: str, request: Request, who: Caller, rewrite: bool = False) -> Any:
    authz.check(who, "read")
    url = request.app.state.settings.effective_database_url
    playbook = await asyncio.to_thread(_recorded_playbook, incident_id, url)
    if playbook is None:
        raise NotVisible(f"no incident {incident_id} in the records", hidden=False)
    if not authz.may_see(who, playbook):
        raise NotVisible(f"no incident {incident_id}")
    try:
        found = await asyncio.to_thread(handover, incident_id, url)
    except UnknownIncident:
        raise NotVisible(f"no incident {incident_id} in the records", hidden=False) from None
    if rewrite:
        found = await _rewritten(request.app.state.settings, found)
    return found.as_json()


async def _rewritten(settings: Settings, found: Handover) -> Handover:
    """The chat endpoint's wording, kept only if it states no fact the records do not hold;
    the records' own text when no endpoint is configured, it fails or it is slow."""
    if not settings.assist_chat_url:
        return found
    chat = ChatProvider.from_settings(settings)
    try:
        async with asyncio.timeout(settings.assist_chat_timeout_seconds):
            text = await asyncio.to_thread(chat.rewrite, [s.text for s in found.sentences])
    except (TimeoutError, ChatError):
        return found
    return checked_rewrite(found, text)
