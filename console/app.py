"""The web console, served by the API's own application under ``/console``: the same process,
Temporal connection, signing keys, role matrix and error handlers, so a console page reads what
the API reads and a console action is an API action (``console/act.py``).

``create_app`` is the API's ``create_app`` plus the console; ``incident up`` (``make run``) serves
it on ``CR_API_HOST``:``CR_API_PORT`` and prints ``http://.../console``. Nothing else imports
the console. Every asset is in ``console/static`` (htmx and its SSE extension vendored): the
console needs no internet, no CDN and no web font.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.app import Authenticate
from api.app import create_app as create_api
from console import act, audit_pages, case, lead, live, oidc, pages, session
from console.verdict import Verdict
from console.web import HERE, page
from settings import Settings, get_settings

# Every console response: its own scripts only (no inline script, nothing from elsewhere), never
# framed (clickjacking a form), no MIME sniffing, no address leaked to another site.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class ConsoleHeaders:
    """Adds ``SECURITY_HEADERS`` to every ``/console`` response (plain ASGI: the API's routes and
    the live stream pass through untouched)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/console"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def install(app: FastAPI) -> FastAPI:
    """Add the console's pages, actions, stream and static files to the API's ``app``."""
    settings: Settings = app.state.settings
    app.state.console_key = session.session_key(settings)
    for router in (pages.router, act.router, live.router, audit_pages.router, lead.router,
                   oidc.router, case.router):  # fmt: skip
        app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=str(HERE / "static")), name="console-static")

    app.add_middleware(ConsoleHeaders)

    @app.exception_handler(session.SignInRequired)
    async def _sign_in(request: Request, err: session.SignInRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        where = f"/console/signin?next={quote(target)}"
        if request.headers.get("hx-request"):  # a fragment: send the whole page to sign in
            return Response(status_code=401, headers={"HX-Redirect": where})
        return RedirectResponse(where, 303)

    @app.exception_handler(session.CsrfRefused)
    async def _csrf(request: Request, err: session.CsrfRefused) -> Response:
        return page(request, "refused.html", None, 403, verdict=Verdict(False, 403, str(err)))

    return app


def create_app(
    settings: Settings | None = None,
    *,
    authenticate: Authenticate | None = None,
    client: object | None = None,
) -> FastAPI:
    """The API with the console under ``/console`` (arguments as ``api.app.create_app``)."""
    return install(create_api(settings, authenticate=authenticate, client=client))


def build_server(settings: Settings | None = None) -> uvicorn.Server:
    """A uvicorn server for the API and the console on ``CR_API_HOST``:``CR_API_PORT``; open
    live streams do not hold a shutdown for more than two seconds."""
    settings = settings or get_settings()
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.api_host, port=settings.api_port, log_level="warning",
        access_log=False, log_config=None, timeout_graceful_shutdown=2,
    )  # fmt: skip
    return uvicorn.Server(config)
