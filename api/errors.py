"""Every failure as JSON with the right status and one clear message.

401 no, unknown, expired or revoked token; 403 with the role that would be needed; 404 for an
incident the caller may not see (or that does not exist: the two look the same); 409 for a state
conflict (closed, already decided, not waiting); 422 naming the field.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.authz import Forbidden
from incidents.actions import SignalRefused
from incidents.service import IncidentClosed, InvalidRequest
from workflows.rules import AUTHORIZATION_REFUSALS


class NotVisible(Exception):
    """404: no such incident, or one the caller may not see."""


class Unauthenticated(Exception):
    """401, with the reason code (missing, unknown, expired, revoked, inactive)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _json(status: int, error: str, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status_code=status)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(_: Request, err: Unauthenticated) -> JSONResponse:
        return _json(401, err.code, str(err))

    @app.exception_handler(Forbidden)
    async def _forbidden(_: Request, err: Forbidden) -> JSONResponse:
        return _json(403, "forbidden", str(err), needed_roles=sorted(err.needed))

    @app.exception_handler(NotVisible)
    async def _not_visible(_: Request, err: NotVisible) -> JSONResponse:
        return _json(404, "not_found", str(err))

    @app.exception_handler(IncidentClosed)
    async def _closed(_: Request, err: IncidentClosed) -> JSONResponse:
        return _json(409, "incident_closed", str(err))

    @app.exception_handler(SignalRefused)
    async def _signal_refused(_: Request, err: SignalRefused) -> JSONResponse:
        code = err.entry.data.get("code", "refused")
        return _json(403 if code in AUTHORIZATION_REFUSALS else 409, code, str(err))

    @app.exception_handler(InvalidRequest)
    async def _invalid(_: Request, err: InvalidRequest) -> JSONResponse:
        return _json(422, "invalid_request", str(err))

    @app.exception_handler(ValidationError)
    async def _model_invalid(_: Request, err: ValidationError) -> JSONResponse:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        return _json(422, "invalid_request", f"{field}: {first['msg']}", field=field)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"] if p != "body")
        return _json(422, "invalid_request", f"{field}: {first['msg']}", field=field)

    @app.exception_handler(WorkflowUpdateFailedError)
    async def _update_failed(_: Request, err: WorkflowUpdateFailedError) -> JSONResponse:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            code = cause.type or "refused"
            return _json(403 if code in AUTHORIZATION_REFUSALS else 409, code, cause.message)
        return _json(409, "refused", str(cause or err))

    @app.exception_handler(RPCError)
    async def _rpc(_: Request, err: RPCError) -> JSONResponse:
        if err.status == RPCStatusCode.NOT_FOUND:
            if "already completed" in err.message:
                return _json(409, "incident_closed", "the incident is closed")
            return _json(404, "not_found", err.message)
        return _json(503, "temporal_unavailable", err.message)
