"""The sandbox ASGI app: vendor routes plus the ``/_sandbox`` control surface.

Control routes are how tests and the bench drive the emulators over HTTP: read what was received,
reset it, inject faults, and turn the Salesforce org's knobs (daily limit, JWT certificate).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import openai, salesforce, vendors
from sandbox.faults import json_body, state_of
from sandbox.state import FaultRequest, SandboxConfig, SandboxState
from settings import Settings, get_settings

Dropper = Callable[[tuple[str, int]], bool]


async def get_state(request: Request) -> Response:
    return JSONResponse(state_of(request).snapshot())


async def reset(request: Request) -> Response:
    state_of(request).reset(request.app.state.settings.sandbox_salesforce_daily_limit)
    state_of(request).commit()
    return JSONResponse({"ok": True})


async def faults(request: Request) -> Response:
    if request.method == "DELETE":
        state_of(request).apply_faults(FaultRequest(replace=True))
        return JSONResponse({"ok": True})
    try:
        spec = FaultRequest.model_validate(await json_body(request))
    except ValidationError as exc:
        return JSONResponse({"error": "invalid_faults", "detail": exc.errors()}, 400)
    state_of(request).apply_faults(spec)
    if spec.expire_tokens:
        state_of(request).commit()
    return JSONResponse({"ok": True, "rules": len(state_of(request).rules)})


async def config(request: Request) -> Response:
    try:
        cfg = SandboxConfig.model_validate(await json_body(request))
    except ValidationError as exc:
        return JSONResponse({"error": "invalid_config", "detail": exc.errors()}, 400)
    state_of(request).apply_config(cfg)
    state_of(request).commit()
    return JSONResponse({"ok": True})


def create_app(settings: Settings | None = None, dropper: Dropper | None = None) -> Starlette:
    """The emulator app; ``dropper`` aborts a client's connection (see ``SandboxServer``).

    Its state is loaded from and kept in ``settings.effective_sandbox_state_file`` (locked until
    ``app.state.sandbox.close()``), or in memory only when that is None.
    """
    settings = settings or get_settings()
    control = [
        Route("/_sandbox/state", get_state, methods=["GET"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/faults", faults, methods=["POST", "DELETE"]),
        Route("/_sandbox/config", config, methods=["POST"]),
    ]
    app = Starlette(routes=[*control, *salesforce.ROUTES, *vendors.ROUTES, *openai.ROUTES])
    app.state.settings = settings
    app.state.sandbox = SandboxState.open(
        settings.effective_sandbox_state_file, settings.sandbox_salesforce_daily_limit
    )
    app.state.drop_connection = dropper
    return app
