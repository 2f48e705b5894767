"""The console's actions: each a plain form POST (no JavaScript needed) that calls the API's own
endpoint function with the signed-in person, so a console action is exactly an API action: the
same role matrix, visibility rule, signature and front door (``api/routes.py``). The answer is the
server's verdict, and the page is rendered again from the server's state, never guessed.

Every form carries the session's CSRF token; one without it is refused (403) before anything else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api import routes
from api.bodies import ActionBody, DecisionBody, EventBody, ReopenBody, StepBody
from console import session
from console.incident_view import describe
from console.pages import approvals_response, incident_response
from console.session import Viewer
from console.verdict import Verdict, done, refused
from console.web import page
from incidents.service import InvalidRequest

router = APIRouter(prefix="/console")


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return str(value).strip() if value is not None else ""


def _data(text: str) -> dict[str, str]:
    """An event's data typed as ``field=value`` lines."""
    data = {}
    for line in text.splitlines():
        if line.strip():
            key, sep, value = line.partition("=")
            if not sep:
                raise InvalidRequest(f"data: write each line as field=value, not {line!r}")
            data[key.strip()] = value.strip()
    return data


async def _form(request: Request) -> tuple[Viewer, Any] | Response:
    who = session.viewer(request)
    form = await request.form()
    try:
        session.check_csrf(who.csrf, form)
    except session.CsrfRefused as err:
        verdict = Verdict(False, 403, str(err), "csrf")
        return page(request, "refused.html", who, 403, verdict=verdict)
    return who, form


async def _run(request: Request, call: Any) -> Verdict:
    try:
        return done(describe(await call()))
    except Exception as err:  # noqa: BLE001 - the API's handler decides the status and words
        return await refused(request, err)


Call = Callable[[Viewer, Any], Awaitable[Any]]


async def _on_incident(request: Request, incident_id: str, call: Call) -> Response:
    """The form checked (CSRF), ``call(who, form)`` run as the signed-in person (its request
    body is built inside, so a malformed field is the API's refusal too), and the incident page
    rendered again with the server's verdict."""
    got = await _form(request)
    if isinstance(got, Response):
        return got
    who, form = got
    verdict = await _run(request, lambda: call(who, form))
    return await incident_response(request, who, incident_id, verdict)


@router.post("/incidents/{incident_id}/act/{action}", response_class=HTMLResponse,
             include_in_schema=False)  # fmt: skip
async def act(request: Request, incident_id: str,
              action: Literal["ack", "assign", "escalate", "note", "close"]) -> Response:  # fmt: skip
    def call(who: Viewer, form: Any) -> Awaitable[Any]:
        body = ActionBody(to=_text(form, "to") or None, severity=_text(form, "severity") or None,
                          reason=_text(form, "reason"))  # fmt: skip
        return routes.act(incident_id, action, body, request, who)

    return await _on_incident(request, incident_id, call)


@router.post("/incidents/{incident_id}/event", response_class=HTMLResponse,
             include_in_schema=False)  # fmt: skip
async def event(request: Request, incident_id: str) -> Response:
    def call(who: Viewer, form: Any) -> Awaitable[Any]:
        body = EventBody(name=_text(form, "name"), data=_data(_text(form, "data")))
        return routes.event(incident_id, body, request, who)

    return await _on_incident(request, incident_id, call)


@router.post("/incidents/{incident_id}/reopen", response_class=HTMLResponse,
             include_in_schema=False)  # fmt: skip
async def reopen(request: Request, incident_id: str) -> Response:
    def call(who: Viewer, form: Any) -> Awaitable[Any]:
        return routes.reopen(incident_id, ReopenBody(reason=_text(form, "reason")), request, who)

    return await _on_incident(request, incident_id, call)


@router.post("/incidents/{incident_id}/steps/{step}/{move}", response_class=HTMLResponse,
             include_in_schema=False)  # fmt: skip
async def resolve_step(request: Request, incident_id: str, step: str,
                       move: Literal["retry", "skip"]) -> Response:  # fmt: skip
    def call(who: Viewer, form: Any) -> Awaitable[Any]:
        body = StepBody(reason=_text(form, "reason"))
        return routes.resolve_failed_step(incident_id, step, move, body, request, who)

    return await _on_incident(request, incident_id, call)


@router.post("/incidents/{incident_id}/decide", response_class=HTMLResponse,
             include_in_schema=False)  # fmt: skip
async def decide(request: Request, incident_id: str) -> Response:
    """Approve or reject a pending step; the reason is required (the API refuses an empty one)."""
    got = await _form(request)
    if isinstance(got, Response):
        return got
    who, form = got

    async def call() -> Any:
        body = DecisionBody(step=_text(form, "step"), decision=_text(form, "decision"),  # type: ignore[arg-type]
                            role=_text(form, "role"), reason=_text(form, "reason"))  # fmt: skip
        return await routes.decide(incident_id, body, request, who)

    verdict = await _run(request, call)
    if _text(form, "back") == "approvals":
        return await approvals_response(request, who, verdict)
    return await incident_response(request, who, incident_id, verdict)
