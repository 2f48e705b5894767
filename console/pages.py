"""The console's reading pages: sign in and out, the incidents list (filters in the URL), one
incident, the approvals inbox; each checked with the API's role matrix before anything is read.

Lists come from the records (``console/board.py``); the incident page through the API's own reads
(``console/incident_view.py``). Fragments (``.../rows``, ``.../panel``) re-render a part of a
page for the live stream and the polling fallback, from the server's state.
"""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api import authz
from console import board, session
from console.incident_view import IncidentPage, gather
from console.session import Viewer
from console.verdict import Verdict, refused
from console.web import page
from roster import passwords

router = APIRouter(prefix="/console")
Flag = Annotated[bool, Query()]
# The actions the incident page offers a form for (each shown to those whose roles may take it).
COMMANDS = frozenset({"ack", "assign", "escalate", "note", "event", "close", "reopen"})


def _safe_next(value: str | None) -> str:
    """Only a console path is a place to go back to after signing in (no open redirect)."""
    if value and value.startswith("/console/") and "//" not in value and "\\" not in value:
        return value
    return "/console/incidents"


@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
async def home() -> RedirectResponse:
    return RedirectResponse("/console/incidents", 303)


@router.get("/signin", response_class=HTMLResponse, include_in_schema=False)
async def signin_form(
    request: Request, next: str | None = None, why: str | None = None
) -> Response:
    pre = session.pre_session(request)
    response = page(request, "signin.html", None, next=_safe_next(next), csrf=pre["c"],
                    why=why, error=None)  # fmt: skip
    session.keep_pre_session(request, response, pre)
    return response


@router.post("/signin", response_class=HTMLResponse, include_in_schema=False)
async def signin(request: Request) -> Response:
    form = await request.form()
    pre = session.pre_session(request)
    target = _safe_next(str(form.get("next") or ""))
    try:
        session.check_csrf(pre["c"], form)
    except session.CsrfRefused as err:
        return page(request, "signin.html", None, 403, next=target, csrf=pre["c"], why=None,
                    error=str(err))  # fmt: skip
    handle = str(form.get("handle") or "").strip()
    secret = str(form.get("password") or "")
    url = request.app.state.settings.effective_database_url
    ok = bool(handle) and await asyncio.to_thread(passwords.check_password, handle, secret, url=url)
    if not ok:
        refused_page = page(request, "signin.html", None, 401, next=target, csrf=pre["c"], why=None,
                        error="handle or password: not a match for an active person with a "
                        "console password")  # fmt: skip
        session.keep_pre_session(request, refused_page, pre)
        return refused_page
    response = RedirectResponse(target, 303)
    session.start(request, response, handle)
    return response


@router.post("/signout", include_in_schema=False)
async def signout(request: Request) -> Response:
    who = session.viewer(request)
    session.check_csrf(who.csrf, await request.form())
    response = RedirectResponse("/console/signin", 303)
    session.end(response)
    return response


def _filters(status: str, severity: str, playbook: str, breached: bool, attention: bool,
             owner: str, must_act: str) -> board.Filters:  # fmt: skip
    return board.Filters(status=status or "active", severity=severity, playbook=playbook,
                         breached=breached, attention=attention, owner=owner.strip(),
                         must_act=must_act.strip())  # fmt: skip


async def _rows(request: Request, who: Viewer, f: board.Filters) -> list[board.Row]:
    authz.check(who, "list")
    url = request.app.state.settings.effective_database_url
    return await asyncio.to_thread(board.incidents, url, f, who)


async def _playbooks(request: Request, who: Viewer) -> list[str]:
    settings = request.app.state.settings
    return await asyncio.to_thread(board.known_playbooks, settings.playbooks_dir,
                                   settings.effective_database_url, who)  # fmt: skip


@router.get("/incidents", response_class=HTMLResponse, include_in_schema=False)
async def incidents(request: Request, status: str = "active", severity: str = "",
                    playbook: str = "", breached: Flag = False, attention: Flag = False,
                    owner: str = "", must_act: str = "") -> Response:  # fmt: skip
    who = session.viewer(request)
    f = _filters(status, severity, playbook, breached, attention, owner, must_act)
    try:
        rows = await _rows(request, who, f)
    except authz.Forbidden as err:
        return await refusal_page(request, who, err)
    return page(request, "incidents.html", who, rows=rows, f=f, query=urlencode(f.query()),
                playbooks=await _playbooks(request, who), statuses=board.STATUSES, limit=board.PAGE,
                severities=board.SEVERITIES)  # fmt: skip


@router.get("/incidents/rows", response_class=HTMLResponse, include_in_schema=False)
async def incident_rows(request: Request, status: str = "active", severity: str = "",
                        playbook: str = "", breached: Flag = False, attention: Flag = False,
                        owner: str = "", must_act: str = "") -> Response:  # fmt: skip
    who = session.viewer(request)
    f = _filters(status, severity, playbook, breached, attention, owner, must_act)
    try:
        rows = await _rows(request, who, f)
    except authz.Forbidden as err:
        return await refusal_page(request, who, err)
    return page(request, "_rows.html", who, rows=rows)


async def refusal_page(request: Request, who: Viewer, err: Exception) -> Response:
    """A page refused by the server: its status and its one line (as the API would answer)."""
    verdict = await refused(request, err)
    return page(request, "refused.html", who, verdict.status, verdict=verdict)


async def incident_response(request: Request, who: Viewer, incident_id: str,
                            verdict: Verdict | None = None, fragment: bool = False) -> Response:  # fmt: skip
    """The incident page (or its live panel) as the server has it now, with ``verdict`` (an
    action's answer) shown above it and its status as the response's."""
    try:
        view: IncidentPage = await gather(request, who, incident_id)
    except Exception as err:  # noqa: BLE001 - the API's handler decides the status and words
        refusal = await refused(request, err)
        if verdict is None or refusal.status in (403, 404):
            return page(request, "refused.html", who, refusal.status, verdict=refusal)
        return page(request, "refused.html", who, verdict.status, verdict=verdict)
    status = verdict.status if verdict is not None else 200
    name = "_panel.html" if fragment else "incident.html"
    can = {a for a in authz.ACTIONS if who.roles & authz.ACTIONS[a]}
    return page(request, name, who, status, v=view, verdict=verdict, can=can,
                acting=bool(can & COMMANDS), severities=board.SEVERITIES)  # fmt: skip


@router.get("/incidents/{incident_id}", response_class=HTMLResponse, include_in_schema=False)
async def incident(request: Request, incident_id: str) -> Response:
    who = session.viewer(request)
    return await incident_response(request, who, incident_id)


@router.get("/incidents/{incident_id}/panel", response_class=HTMLResponse,
            include_in_schema=False)  # fmt: skip
async def incident_panel(request: Request, incident_id: str) -> Response:
    who = session.viewer(request)
    return await incident_response(request, who, incident_id, fragment=True)


async def approvals_response(request: Request, who: Viewer, verdict: Verdict | None = None,
                             fragment: bool = False) -> Response:  # fmt: skip
    url = request.app.state.settings.effective_database_url
    try:
        authz.check(who, "list")
    except authz.Forbidden as err:
        return await refusal_page(request, who, err)
    pending = await asyncio.to_thread(board.inbox, url, who)
    status = verdict.status if verdict is not None else 200
    name = "_inbox.html" if fragment else "approvals.html"
    return page(request, name, who, status, pending=pending, verdict=verdict)


@router.get("/approvals", response_class=HTMLResponse, include_in_schema=False)
async def approvals(request: Request) -> Response:
    return await approvals_response(request, session.viewer(request))


@router.get("/approvals/items", response_class=HTMLResponse, include_in_schema=False)
async def approval_items(request: Request) -> Response:
    """The inbox's list alone, for the live stream and the 10 s poll."""
    return await approvals_response(request, session.viewer(request), fragment=True)
