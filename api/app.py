"""The API application: one Temporal connection for every request, tokens checked on each.

``incident up`` serves it beside intake; `create_app` takes an ``authenticate`` function (token ->
the person, their roles and groups) so tests and other identity providers plug in the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from api import account, assist_routes, codec_routes, errors, records_routes
from api.authz import Caller
from api.routes import router
from connection import connect
from identity.keys import load_or_create
from settings import Settings, get_settings

Authenticate = Callable[[str], Caller]


def create_app(
    settings: Settings | None = None,
    *,
    authenticate: Authenticate | None = None,
    client: object | None = None,
) -> FastAPI:
    """The API; ``authenticate`` defaults to the roster's personal tokens."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.client = client or await connect(settings)
        yield

    app = FastAPI(
        title="critical-response",
        description="Trust & Safety incident playbooks: the one door for people and automation.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keys = load_or_create(settings.data_dir)
    app.state.codec_keys = codec_routes.codec_keys()
    if client is not None:
        app.state.client = client
    app.state.authenticate = authenticate or _roster_tokens()
    errors.install(app)
    app.include_router(router)
    app.include_router(account.router)
    app.include_router(codec_routes.router)
    app.include_router(records_routes.router)
    app.include_router(assist_routes.router)
    return app


def _roster_tokens() -> Authenticate:
    from api.errors import Unauthenticated
    from roster.tokens import AuthError, authenticate

    def check(secret: str) -> Caller:
        try:
            return authenticate(secret)
        except AuthError as err:
            raise Unauthenticated(err.code, str(err)) from None

    return check


def build_server(settings: Settings | None = None) -> uvicorn.Server:
    """A uvicorn server for the API on ``CR_API_HOST``:``CR_API_PORT``."""
    settings = settings or get_settings()
    config = uvicorn.Config(
        create_app(settings), host=settings.api_host, port=settings.api_port,
        log_level="warning", access_log=False, log_config=None,  # logs.configure's handler
    )  # fmt: skip
    return uvicorn.Server(config)
