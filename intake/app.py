"""Case intake: the HTTP endpoint where a Salesforce case or safety alert becomes an incident.

A request is verified by the Standard Webhooks scheme (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``; timestamps more than five minutes off are rejected) using the
``standardwebhooks`` package, mapped to a playbook and severity by routing rules (first match wins;
a YAML/JSON file named by ``CR_INTAKE_RULES_FILE``, else ``DEFAULT_RULES``), and opened through
``incidents.service.open_incident`` with an incident id derived from the source record, so the same
case delivered twice opens one incident, and a case whose incident already closed opens nothing
(200, ``status: closed``). Anything unsigned or malformed gets a 4xx JSON error that names the field
and the expected body (``routing.EXPECTED_SHAPE``), and opens nothing. Run it with
``python -m intake.app`` (``CR_INTAKE_HOST``/``CR_INTAKE_PORT``). The secret is
``CR_INTAKE_WEBHOOK_SECRET``, else the one generated for this install (``intake/secret.py``).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import uvicorn
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from assist.providers import LocalProvider, installed_playbooks
from assist.recording import SuggestionUnavailable, note_for, suggest_within
from assist.store import load
from assist.suggestion import Suggestion
from connection import connect
from identity.keys import load_or_create
from identity.signing import trusting
from incidents.service import IncidentClosed, open_incident
from intake.routing import (
    EXAMPLES,
    EXPECTED_SHAPE,
    IntakeEvent,
    IntakeRefused,
    RoutingRule,
    incident_fields,
    incident_id_for,
    load_rules,
    parse_event,
    route,
    severity_for,
    summary_for,
)
from intake.secret import webhook_secret
from settings import Settings, get_settings
from workflows.models import IncidentInput

Opener = Callable[..., Awaitable[Any]]
MAX_BODY_BYTES = 1_000_000
# Known to anyone who reads this file: for tests that set it explicitly, never a fallback (an
# install without CR_INTAKE_WEBHOOK_SECRET generates its own: intake/secret.py).
DEV_SECRET = "whsec_" + base64.b64encode(b"critical-response-sandbox-intake").decode()
log = structlog.get_logger("intake")


def _error(status: int, error: str, detail: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status)


def _refused(status: int, error: str, field: str, detail: str) -> JSONResponse:
    """A body intake cannot use: which field, why (one line), and the body it expects."""
    body = {"error": error, "field": field, "detail": detail, "expected": EXPECTED_SHAPE,
            "examples": EXAMPLES}  # fmt: skip
    return JSONResponse(body, status)


def _verify(secret: str, body: bytes, request: Request) -> tuple[str, str] | None:
    """(error, detail) when the Standard Webhooks signature does not hold, else None."""
    headers = {k: v for k, v in request.headers.items() if k.startswith("webhook-")}
    if not all(h in headers for h in ("webhook-id", "webhook-timestamp", "webhook-signature")):
        return "missing_signature", "webhook-id, -timestamp and -signature required"
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except Exception as exc:  # the package raises several types for bad headers
        message = str(exc)
        if "too old" in message or "too new" in message:
            return "stale_timestamp", message
        return "bad_signature", message or "signature does not verify"
    return None


async def receive(request: Request) -> Response:
    """POST /webhooks/intake: verify, parse, route, open (idempotently)."""
    app = request.app.state
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _error(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
    if problem := _verify(app.secret, body, request):
        log.warning("intake.rejected", error=problem[0])
        return _error(401, *problem)
    try:
        raw = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        return _refused(400, "malformed_body", "body", f"body: not JSON ({reason})")
    try:
        event = parse_event(raw)
        incident_id = incident_id_for(event)
        fields = incident_fields(event)
    except IntakeRefused as exc:
        return _refused(422, "invalid_payload", exc.field, str(exc))
    rule = route(raw, app.rules)
    if rule is None:
        return _no_route(event, app.rules)
    return await _open(request, event, rule, incident_id, fields)


def _no_route(event: IntakeEvent, rules: list[RoutingRule]) -> JSONResponse:
    given = ", ".join(
        f"{path} {str(value)[:60]!r}"
        for path, value in (("type", event.type), ("data.category", event.data.get("category")),
                            ("data.kind", event.data.get("kind")))
        if value is not None
    )  # fmt: skip
    alert = "kind" in event.data or event.type.startswith("safety.alert")
    body = {
        "error": "no_route", "field": "data.kind" if alert else "data.category",
        "detail": f"no routing rule matches {given}: data.category (cases) or data.kind "
                  "(alerts) must name what to open",
        "expected": [{"match": r.match, "playbook": r.playbook} for r in rules],
    }  # fmt: skip
    return JSONResponse(body, 422)


async def _open(
    request: Request,
    event: IntakeEvent,
    rule: RoutingRule,
    incident_id: str,
    fields: dict[str, str],
) -> Response:
    severity = severity_for(event, rule)
    summary = summary_for(event)
    suggestion = await _suggestion(request, summary)
    try:
        result = await request.app.state.opener(
            playbook=rule.playbook, severity=severity, summary=summary,
            fields=fields, incident_id=incident_id, opened_by=f"intake:{event.type}",
            suggestion=suggestion,
        )  # fmt: skip
    except IncidentClosed as closed:
        return _closed(request, closed)
    except (ValueError, LookupError) as exc:
        return _error(422, "cannot_open", str(exc))
    except Exception as exc:  # Temporal unreachable etc.: let the sender retry later
        log.error("intake.open_failed", incident_id=incident_id, error=type(exc).__name__)
        return _error(503, "unavailable", "could not open the incident now; retry")
    log.info("intake.received", incident_id=incident_id, playbook=rule.playbook,
             created=result.created)  # fmt: skip
    body = {
        "incident_id": result.incident_id, "workflow_id": result.workflow_id,
        "run_id": result.run_id, "created": result.created, "playbook": rule.playbook,
        "severity": severity,
    }  # fmt: skip
    if getattr(result, "ignored_fields", ()):
        body["ignored_fields"] = list(result.ignored_fields)  # the playbook does not declare them
    return JSONResponse(body, 201 if result.created else 200)


async def _suggestion(request: Request, summary: str) -> Suggestion | None:
    """The local model's suggestion for the case, recorded with the incident beside what the
    routing rules chose; never more than ``CR_ASSIST_INTAKE_BUDGET_SECONDS`` of the webhook's
    time (past it, or on any failure, the rules alone open the incident, as before)."""
    settings: Settings = request.app.state.settings
    try:
        return await suggest_within(LocalProvider(data_dir=settings.data_dir), summary,
                                    installed_playbooks(settings),
                                    settings.assist_intake_budget_seconds)  # fmt: skip
    except (SuggestionUnavailable, ValueError, OSError) as err:
        log.info("intake.no_suggestion", error=type(err).__name__)
        return None


def _closed(request: Request, closed: IncidentClosed) -> Response:
    """A redelivered case whose incident already closed: nothing to open, and that is no error
    (a 4xx would make the sender retry or alert); ids only in the log."""
    log.info("intake.redelivered_closed", incident_id=closed.incident_id,
             webhook_id=request.headers.get("webhook-id", "")[:100])  # fmt: skip
    closed_at = closed.closed_at.isoformat() if closed.closed_at else None
    body = {"created": False, "status": "closed", "closed_at": closed_at,
            "incident_id": closed.incident_id}  # fmt: skip
    return JSONResponse(body, 200)


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


def _temporal_opener(settings: Settings) -> Opener:
    """Open through the lead's incident service with one lazily connected Temporal client. The
    incident trusts the API's keys, like one opened through the API: every later action on it must
    come signed through the API (a raw Temporal signal is refused and recorded)."""
    client: list[Any] = []
    ring = load_or_create(settings.data_dir)

    def trusted(inp: IncidentInput) -> IncidentInput:
        return trusting(inp, ring, settings.effective_database_url)

    async def opener(*, suggestion: Suggestion | None = None, **kwargs: Any) -> Any:
        def prepare(inp: IncidentInput) -> IncidentInput:
            inp = trusted(inp)
            if suggestion is None:
                return inp
            note = note_for(suggestion, playbook=inp.playbook.name, severity=inp.severity,
                            by=inp.opened_by)  # fmt: skip
            return inp.model_copy(update={"triage": note})

        if not client:
            client.append(await connect(settings))
        return await open_incident(client[0], drop_undeclared=True, prepare=prepare, **kwargs)

    return opener


def create_app(settings: Settings | None = None, opener: Opener | None = None) -> Starlette:
    """The intake app; tests inject ``opener`` (same keyword arguments as ``open_incident``)."""
    settings = settings or get_settings()
    app = Starlette(
        routes=[
            Route("/webhooks/intake", receive, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.secret = webhook_secret(settings)
    app.state.rules = load_rules(settings)
    app.state.opener = opener or _temporal_opener(settings)
    app.state.settings = settings
    # The triage model is trained (seed) or read once per process: not on the first case's time.
    threading.Thread(target=load, args=(settings.data_dir,), daemon=True).start()
    return app


def build_server(settings: Settings | None = None, opener: Opener | None = None) -> uvicorn.Server:
    """A uvicorn server for the intake app on ``CR_INTAKE_HOST``:``CR_INTAKE_PORT``."""
    settings = settings or get_settings()
    config = uvicorn.Config(
        create_app(settings, opener), host=settings.intake_host, port=settings.intake_port,
        log_level="warning", access_log=False, lifespan="off",
        log_config=None,  # uvicorn's lines go through logs.configure's redacting handler
    )  # fmt: skip
    return uvicorn.Server(config)


def main() -> None:
    import logs
    from datadir import private_umask

    private_umask()
    logs.configure()
    settings = get_settings()
    print(f"intake on http://{settings.intake_host}:{settings.intake_port}/webhooks/intake",
          flush=True)  # fmt: skip
    build_server(settings).run()


if __name__ == "__main__":
    main()
