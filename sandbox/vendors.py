"""Emulated PagerDuty Events v2, Slack (webhook, chat.postMessage, conversations.history), Twilio
Messages.json and SendGrid mail send, per shared/api-contracts.md sections 2 to 5.

PagerDuty keeps alert state per (routing_key, dedup_key) and answers 202 even for an event it
drops, as the real service does; Slack's Web API reports errors as HTTP 200 with ``ok:false``;
Twilio takes form bodies with HTTP Basic auth and answers 201. Everything received is recorded
for ``GET /_sandbox/state``.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sandbox.faults import emulated, form_body, json_body, state_of

ACCOUNT_SID_RE = re.compile(r"^AC[0-9a-fA-F]{32}$")
E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")
PD_SEVERITIES = {"critical", "error", "warning", "info"}


def _pd_invalid(*errors: str) -> Response:
    body = {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)}
    return JSONResponse(body, 400)


def _pd_problems(event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["Event object is not valid JSON"]
    problems = []
    if len(str(event.get("routing_key", ""))) != 32:
        problems.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in {"trigger", "acknowledge", "resolve"}:
        problems.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
    if action in {"acknowledge", "resolve"} and not event.get("dedup_key"):
        problems.append("'dedup_key' is required for acknowledge and resolve")
    if len(str(event.get("dedup_key") or "")) > 255:
        problems.append("'dedup_key' is too long (max 255 characters)")
    if action == "trigger":
        payload = event.get("payload") or {}
        for key in ("summary", "source", "severity"):
            if not payload.get(key):
                problems.append(f"'payload.{key}' is missing or blank")
        if payload.get("severity") and payload["severity"] not in PD_SEVERITIES:
            problems.append("'payload.severity' is invalid")
    return problems


@emulated("pagerduty.enqueue")
async def pagerduty_enqueue(request: Request) -> Response:
    event = await json_body(request)
    problems = _pd_problems(event)
    if problems:
        return _pd_invalid(*problems)
    state = state_of(request)
    dedup = event.get("dedup_key") or str(uuid.uuid4())
    key = f"{event['routing_key']}/{dedup}"
    with state.lock:
        state.pagerduty_events.append({**event, "dedup_key": dedup})
        alert = state.pagerduty_alerts.get(key)
        _apply_event(state.pagerduty_alerts, key, alert, event, dedup)
    return JSONResponse(
        {"status": "success", "message": "Event processed", "dedup_key": dedup}, 202
    )


def _apply_event(
    alerts: dict[str, dict[str, Any]],
    key: str,
    alert: dict[str, Any] | None,
    event: dict[str, Any],
    dedup: str,
) -> None:
    """Trigger opens (or joins) an alert; ack/resolve move an open one; anything else is dropped."""
    action = event["event_action"]
    is_open = alert is not None and alert["status"] != "resolved"
    if action == "trigger":
        if is_open:
            alert["events"] += 1  # type: ignore[index]
            return
        alerts[key] = {
            "routing_key": event["routing_key"],
            "dedup_key": dedup,
            "status": "triggered",
            "summary": event["payload"]["summary"],
            "severity": event["payload"]["severity"],
            "events": 1,
            "opened": (alert or {}).get("opened", 0) + 1,
        }
        return
    if is_open:
        alert["status"] = "acknowledged" if action == "acknowledge" else "resolved"  # type: ignore[index]
        alert["events"] += 1  # type: ignore[index]


def _slack_record(request: Request, via: str, body: dict[str, Any], channel: str) -> str:
    state = state_of(request)
    ts = f"{time.time():.6f}"
    with state.lock:
        # Distinct, increasing ts even within one microsecond, as Slack guarantees per channel.
        while any(m["ts"] == ts for m in state.slack_messages):
            ts = f"{float(ts) + 0.000001:.6f}"
        state.slack_messages.append({"via": via, "channel": channel, "ts": ts, **body})
    return ts


@emulated("slack.webhook")
async def slack_webhook(request: Request) -> Response:
    body = await json_body(request)
    if not isinstance(body, dict):
        return PlainTextResponse("invalid_payload", 400)
    if not body.get("text") and not body.get("blocks"):
        return PlainTextResponse("no_text", 400)
    channel = f"webhook:{request.path_params['hook']}"
    _slack_record(request, "webhook", body, channel)
    return PlainTextResponse("ok")


def _slack_auth(request: Request) -> str | None:
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    return None if token.startswith("xox") else "not_authed" if not token else "invalid_auth"


@emulated("slack.post_message")
async def slack_post_message(request: Request) -> Response:
    if problem := _slack_auth(request):
        return JSONResponse({"ok": False, "error": problem})
    body = await json_body(request)
    if not isinstance(body, dict):
        return JSONResponse({"ok": False, "error": "invalid_json"})
    channel = str(body.get("channel") or "")
    if not channel:
        return JSONResponse({"ok": False, "error": "channel_not_found"})
    if channel.lstrip("#").startswith("archived"):
        return JSONResponse({"ok": False, "error": "is_archived"})
    if not body.get("text") and not body.get("blocks"):
        return JSONResponse({"ok": False, "error": "no_text"})
    ts = _slack_record(request, "api", body, channel)
    message = {"type": "message", "text": body.get("text", ""), "ts": ts}
    return JSONResponse({"ok": True, "channel": channel, "ts": ts, "message": message})


@emulated("slack.history")
async def slack_history(request: Request) -> Response:
    if problem := _slack_auth(request):
        return JSONResponse({"ok": False, "error": problem})
    channel = request.query_params.get("channel", "")
    oldest = float(request.query_params.get("oldest") or 0)
    with state_of(request).lock:
        found = [
            m for m in state_of(request).slack_messages
            if m["channel"] == channel and m["via"] == "api" and float(m["ts"]) >= oldest
        ]  # fmt: skip
    messages = [
        {"type": "message", "ts": m["ts"], "text": m.get("text", ""),
         **({"metadata": m["metadata"]} if m.get("metadata") else {})}
        for m in reversed(found)
    ]  # fmt: skip
    return JSONResponse({"ok": True, "messages": messages, "has_more": False})


def _twilio_error(status: int, code: int, message: str) -> Response:
    more = f"https://www.twilio.com/docs/errors/{code}"
    return JSONResponse({"code": code, "message": message, "more_info": more, "status": status},
                        status)  # fmt: skip


def _twilio_auth(request: Request, sid: str) -> Response | None:
    cfg = request.app.state.settings
    expected = f"{cfg.twilio_account_sid}:{cfg.twilio_auth_token.get_secret_value()}"
    header = request.headers.get("authorization", "")
    try:
        given = base64.b64decode(header.removeprefix("Basic ")).decode()
    except ValueError:
        given = ""
    if given != expected:
        return _twilio_error(401, 20003, "Authenticate")
    if not ACCOUNT_SID_RE.match(sid) or sid != cfg.twilio_account_sid:
        return _twilio_error(404, 20404, f"The requested resource {request.url.path} was not found")
    return None


@emulated("twilio.create")
async def twilio_create(request: Request) -> Response:
    sid = request.path_params["sid"]
    if problem := _twilio_auth(request, sid):
        return problem
    form = await form_body(request)
    to, sender, body = (str(form.get(k, "")) for k in ("To", "From", "Body"))
    if not E164_RE.match(to):
        return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if not sender and not form.get("MessagingServiceSid"):
        return _twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
    if not body or len(body) > 1600:
        return _twilio_error(400, 21602, "Message body is required and at most 1600 characters")
    now = format_datetime(datetime.now(UTC))
    msg_sid = "SM" + secrets.token_hex(16)
    message = {
        "sid": msg_sid, "account_sid": sid, "from": sender, "to": to, "body": body,
        "status": "queued", "num_segments": "1", "direction": "outbound-api",
        "error_code": None, "error_message": None, "messaging_service_sid": None,
        "date_created": now, "date_updated": now, "date_sent": None,
        "uri": f"/2010-04-01/Accounts/{sid}/Messages/{msg_sid}.json", "subresource_uris": {},
    }  # fmt: skip
    state = state_of(request)
    with state.lock:
        state.sms.append(message)
    return JSONResponse(message, 201)


@emulated("twilio.list")
async def twilio_list(request: Request) -> Response:
    sid = request.path_params["sid"]
    if problem := _twilio_auth(request, sid):
        return problem
    to = request.query_params.get("To")
    with state_of(request).lock:
        found = [m for m in state_of(request).sms if to is None or m["to"] == to]
    size = int(request.query_params.get("PageSize", 50))
    return JSONResponse({"messages": list(reversed(found))[:size], "page": 0, "page_size": size,
                         "next_page_uri": None})  # fmt: skip


@emulated("sendgrid.send")
async def sendgrid_send(request: Request) -> Response:
    if not request.headers.get("authorization", "").startswith("Bearer SG."):
        msg = "The provided authorization grant is invalid, expired, or revoked"
        return JSONResponse({"errors": [{"message": msg, "field": None, "help": None}]}, 401)
    body = await json_body(request)
    problems = _sendgrid_problems(body)
    if problems:
        return JSONResponse({"errors": problems}, 400)
    message_id = secrets.token_urlsafe(16)
    state = state_of(request)
    with state.lock:
        state.emails.append({"message_id": message_id, **body})
    return Response(status_code=202, headers={"X-Message-Id": message_id})


def _sendgrid_problems(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        return [{"message": "Bad Request", "field": None, "help": None}]
    problems = []
    if not body.get("personalizations"):
        problems.append({"message": "The personalizations field is required.",
                         "field": "personalizations", "help": None})  # fmt: skip
    if not (body.get("from") or {}).get("email"):
        problems.append({"message": "The from object must be provided for every email send.",
                         "field": "from", "help": None})  # fmt: skip
    return problems


_TWILIO = "/twilio/2010-04-01/Accounts/{sid}/Messages.json"
ROUTES = [
    Route("/pagerduty/v2/enqueue", pagerduty_enqueue, methods=["POST"]),
    Route("/slack/services/{hook:path}", slack_webhook, methods=["POST"]),
    Route("/slack/api/chat.postMessage", slack_post_message, methods=["POST"]),
    Route("/slack/api/conversations.history", slack_history, methods=["GET", "POST"]),
    Route(_TWILIO, twilio_create, methods=["POST"]),
    Route(_TWILIO, twilio_list, methods=["GET"]),
    Route("/sendgrid/v3/mail/send", sendgrid_send, methods=["POST"]),
]
