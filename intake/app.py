"""Case intake: the HTTP endpoint where a Salesforce case or safety alert becomes an incident.

A request is verified by the Standard Webhooks scheme (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``; timestamps more than five minutes off are rejected) using the
``standardwebhooks`` package, mapped to a playbook and severity by routing rules (first match wins;
a YAML/JSON file named by ``CR_INTAKE_RULES_FILE``, else ``DEFAULT_RULES``), and opened through
``incidents.service.open_incident`` with an incident id derived from the source record, so the same
case delivered twice opens one incident. Anything unsigned or malformed gets a 4xx JSON error and
opens nothing. Run it with ``python -m intake.app`` (``CR_INTAKE_HOST``/``CR_INTAKE_PORT``).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import uvicorn
from pydantic import ValidationError
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connection import connect
from incidents.service import open_incident
from intake.routing import (
    IntakeEvent,
    RoutingRule,
    incident_fields,
    incident_id_for,
    load_rules,
    route,
    severity_for,
)
from settings import Settings, get_settings

Opener = Callable[..., Awaitable[Any]]
MAX_BODY_BYTES = 1_000_000
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Only when no real vendor is configured (laptop + sandbox); production must set the secret.
DEV_SECRET = "whsec_" + base64.b64encode(b"critical-response-sandbox-intake").decode()
log = structlog.get_logger("intake")


def _error(status: int, error: str, detail: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status)


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
        event = IntakeEvent.model_validate(raw)
        incident_id = incident_id_for(event)
    except json.JSONDecodeError as exc:
        return _error(400, "malformed_body", f"not JSON: {exc.msg}")
    except (ValidationError, ValueError) as exc:
        detail = exc.errors(include_url=False) if isinstance(exc, ValidationError) else str(exc)
        return _error(422, "invalid_payload", detail)
    if not ID_RE.match(incident_id):
        return _error(422, "invalid_payload", "record id has unsupported characters")
    rule = route(raw, app.rules)
    if rule is None:
        return _error(422, "no_route", f"no routing rule matches event type {event.type!r}")
    return await _open(request, event, rule, incident_id)


async def _open(
    request: Request, event: IntakeEvent, rule: RoutingRule, incident_id: str
) -> Response:
    summary = str(event.data.get("subject") or event.data.get("summary") or event.type)
    severity = severity_for(event, rule)
    try:
        result = await request.app.state.opener(
            playbook=rule.playbook, severity=severity, summary=summary[:500],
            fields=incident_fields(event), incident_id=incident_id, opened_by=f"intake:{event.type}",
        )  # fmt: skip
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
    return JSONResponse(body, 201 if result.created else 200)


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


def webhook_secret(settings: Settings) -> str:
    if settings.intake_webhook_secret is not None:
        return settings.intake_webhook_secret.get_secret_value()
    if settings.salesforce_base_url is None:
        return DEV_SECRET
    raise RuntimeError("CR_INTAKE_WEBHOOK_SECRET must be set when real endpoints are configured")


def _temporal_opener(settings: Settings) -> Opener:
    """Open through the lead's incident service with one lazily connected Temporal client."""
    client: list[Any] = []

    async def opener(**kwargs: Any) -> Any:
        if not client:
            client.append(await connect(settings))
        return await open_incident(client[0], **kwargs)

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
    return app


def build_server(settings: Settings | None = None, opener: Opener | None = None) -> uvicorn.Server:
    """A uvicorn server for the intake app on ``CR_INTAKE_HOST``:``CR_INTAKE_PORT``."""
    settings = settings or get_settings()
    config = uvicorn.Config(
        create_app(settings, opener), host=settings.intake_host, port=settings.intake_port,
        log_level="warning", access_log=False, lifespan="off",
    )  # fmt: skip
    return uvicorn.Server(config)


def main() -> None:
    import logs

    logs.configure()
    settings = get_settings()
    print(f"intake on http://{settings.intake_host}:{settings.intake_port}/webhooks/intake",
          flush=True)  # fmt: skip
    build_server(settings).run()


if __name__ == "__main__":
    main()
