"""Every failure as JSON with the right status and one clear message.

401 no, unknown, expired or revoked token; 403 with the role that would be needed; 404 for an
incident the caller may not see (or that does not exist: the two look the same); 409 for a state
conflict (closed, already decided, not waiting, a handle taken); 422 naming the field (a roster
change refused for its input says what and why).

A refusal the API decides itself (403, a hidden incident's 404, a revoked, expired or deactivated
person's token) is also written to the audit log's ``_access`` stream: who tried what, and why it
was refused. Refusals the workflow decides (wrong role for the step, self-approval) it records in
the incident's own timeline. A request with no token or an unknown one names nobody and is only
logged, so an anonymous flood cannot grow the audit log.
"""

from __future__ import annotations

import asyncio

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.authz import Forbidden
from incidents.actions import IncidentPurged, SignalRefused
from incidents.service import IncidentClosed, InvalidRequest
from playbooks.loader import PlaybookError
from records.purge import IncidentPurged as RecordsPurged
from records.purge import PurgeRefused
from roster import journal
from roster.service import RosterConflict, RosterError
from workflows.rules import AUTHORIZATION_REFUSALS


class NotVisible(Exception):
    """404: no such incident, or one the caller may not see; the two answer alike, and only a
    hidden one (``hidden``, the default) is recorded as a refusal."""

    def __init__(self, message: str, *, hidden: bool = True) -> None:
        super().__init__(message)
        self.hidden = hidden


class Unauthenticated(Exception):
    """401, with the reason code (missing, unknown, expired, revoked, inactive)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


log = structlog.get_logger("api")
NAMELESS = ("missing", "unknown")  # 401 codes whose token names nobody


def _json(status: int, error: str, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status_code=status)


async def _access_refused(request: Request, actor: str, code: str, message: str) -> None:
    """One ``access_refused`` entry in the audit log; a failure to write it is logged, and the
    refusal still goes out (the caller must never be let through because the log is down)."""
    detail = f"{request.method} {request.url.path}: {code}: {message}"
    url = request.app.state.settings.effective_database_url
    try:
        await asyncio.to_thread(
            journal.record, actor, detail, url, stream=journal.ACCESS_ID, kind=journal.ACCESS_KIND
        )
    except Exception as err:  # noqa: BLE001 - the refusal stands either way
        # The detail is the audit entry's (a person's message): the log line keeps ids only.
        log.warning("api.access_log_failed", error=type(err).__name__, actor=actor, code=code,
                    path=request.url.path)  # fmt: skip


def _who(request: Request) -> str:
    caller = getattr(request.state, "caller", None)
    return str(caller.person) if caller is not None else "unknown"


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(request: Request, err: Unauthenticated) -> JSONResponse:
        if err.code in NAMELESS:
            log.info("api.unauthenticated", code=err.code, path=request.url.path)
        else:
            await _access_refused(request, "token holder", err.code, str(err))
        return _json(401, err.code, str(err))

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, err: Forbidden) -> JSONResponse:
        await _access_refused(request, _who(request), "forbidden", str(err))
        return _json(403, "forbidden", str(err), needed_roles=sorted(err.needed))

    @app.exception_handler(NotVisible)
    async def _not_visible(request: Request, err: NotVisible) -> JSONResponse:
        if err.hidden:
            await _access_refused(request, _who(request), "not_visible", str(err))
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

    @app.exception_handler(RosterConflict)
    async def _roster_conflict(_: Request, err: RosterConflict) -> JSONResponse:
        return _json(409, "conflict", str(err))

    @app.exception_handler(RosterError)
    async def _roster_refused(_: Request, err: RosterError) -> JSONResponse:
        return _json(422, "invalid_request", str(err))

    @app.exception_handler(IncidentPurged)
    async def _purged(_: Request, err: IncidentPurged) -> JSONResponse:
        return _json(410, "purged", str(err))

    @app.exception_handler(RecordsPurged)
    async def _records_purged(_: Request, err: RecordsPurged) -> JSONResponse:
        return _json(410, "purged", str(err))

    @app.exception_handler(PurgeRefused)
    async def _purge_refused(_: Request, err: PurgeRefused) -> JSONResponse:
        return _json(409, "purge_refused", str(err))

    @app.exception_handler(PlaybookError)
    async def _playbook(_: Request, err: PlaybookError) -> JSONResponse:
        return _json(422, "invalid_request", f"playbook: {err}", field="playbook")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        """The last guard: one line for the caller, the whole story in the API's log."""
        log.exception("api.unexpected", path=request.url.path, error=type(err).__name__)
        return _json(500, "internal", f"unexpected {type(err).__name__}; see the API's log")

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
