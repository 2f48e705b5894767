"""Notification activities: Slack, PagerDuty Events v2, email (SendGrid v3 or SMTP) and Twilio SMS.

PagerDuty deduplicates by itself, so every event carries a deterministic ``dedup_key`` (incident +
escalation policy): a retried trigger joins the open alert. Slack, Twilio and email have no
idempotency, so those sends go through the delivery ledger (``activities/ledger.py``), which also
documents what happens in the window between a send and its ledger write. Errors follow
shared/api-contracts.md: vendor-given delays become ``next_retry_delay``, 4xx are final, 429/5xx and
transport failures retry. Message text, numbers and addresses are never logged, and an error names
the vendor's code, never its text (which can echo the number or the address: ``vendor_http``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import ledger
from activities.email_send import send_email
from activities.heartbeat import heartbeats
from activities.log import activity_logger
from activities.salesforce import parse_args
from activities.vendor_http import (
    described,
    is_ambiguous,
    permanent,
    retry_after,
    retryable,
    send,
)
from playbooks.operations import EmailArgs, PagerDutyArgs, SlackArgs, SmsArgs
from settings import Settings, get_settings
from workflows.models import ActionRequest, ActionResult

Sender = Callable[[], Awaitable[str]]
Reconciler = Callable[[datetime], Awaitable[str | None]]
SLACK_RETRYABLE = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
# The fields of an Events v2 event: a 400 names which one is wrong in free text (kept: the name).
PAGERDUTY_FIELDS = ("routing_key", "event_action", "dedup_key", "payload", "summary", "source",
                    "severity", "component", "group", "custom_details")  # fmt: skip
RECONCILE_SKEW = timedelta(minutes=2)


def delivery_marker(idempotency_key: str) -> str:
    """Opaque, stable id of one delivery, sent as vendor metadata so a retry can find it."""
    return "cr-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


async def deliver(
    req: ActionRequest, channel: str, recipient: str, sender: Sender, reconcile: Reconciler | None
) -> ActionResult:
    """Send once per (incident, idempotency key, channel, recipient), via the delivery ledger."""
    log = activity_logger(step_id=req.step_id, channel=channel)
    claim = await ledger.claim(req.incident_id, req.idempotency_key, channel, recipient)
    if claim.state == "sent":
        log.info("notify.deduplicated")
        return _delivered(channel, claim.vendor_ref, deduplicated=True)
    if claim.state == "pending":
        found = await reconcile(claim.claimed_at) if reconcile else None
        if found:
            await ledger.mark_sent(claim, found)
            log.info("notify.reconciled")
            return _delivered(channel, found, deduplicated=True)
        log.warning("notify.resending_after_ambiguous_attempt", reconcilable=reconcile is not None)
    try:
        ref = await sender()
    except BaseException as exc:
        # Keep the claim only when the vendor may have processed the request.
        if isinstance(exc, ApplicationError) and not is_ambiguous(exc):
            await ledger.release(claim)
        raise
    await ledger.mark_sent(claim, ref)
    log.info("notify.sent")
    return _delivered(channel, ref, deduplicated=False)


def _delivered(channel: str, ref: str, *, deduplicated: bool) -> ActionResult:
    detail = f"{channel}: {'already delivered' if deduplicated else 'delivered'}"
    return ActionResult(detail=detail, data={"ref": ref, "deduplicated": str(deduplicated).lower()})


def _timeout() -> float:
    return get_settings().http_timeout_seconds


# --- Slack ---------------------------------------------------------------------------------------


@activity.defn(name="notify.slack")
@heartbeats
async def slack(req: ActionRequest) -> ActionResult:
    """Post to Slack: chat.postMessage when a bot token is configured, else the incoming webhook."""
    args = parse_args(SlackArgs, req)
    settings = get_settings()
    if settings.slack_bot_token is None:
        # App webhooks cannot override the channel: the URL names it.
        return await deliver(
            req, "slack", "webhook", lambda: _slack_webhook(settings, args.text), None
        )
    channel = args.channel or settings.default_slack_channel
    marker = delivery_marker(req.idempotency_key)

    async def post() -> str:
        return await _slack_post(settings, channel, args.text, marker)

    async def find(since: datetime) -> str | None:
        return await _slack_find(settings, channel, marker, since)

    return await deliver(req, "slack", channel, post, find)


def _slack_http_error(response: httpx.Response, api: str) -> ApplicationError:
    status = response.status_code
    if status == 429:  # not processed: Slack asks us to wait Retry-After seconds
        return retryable(
            f"Slack {api}: rate limited", "SlackRateLimited", retry_after(response) or 1.0
        )
    if status >= 500:
        return retryable(f"Slack {api}: HTTP {status}", "VendorServerError")
    # An incoming webhook answers a plain-text code (channel_not_found); kept only if it is one.
    return permanent(
        described("SlackError", status, where=api, code=response.text[:64]), "SlackError"
    )


async def _slack_webhook(settings: Settings, text: str) -> str:
    url = settings.effective_slack_webhook_url
    response = await send("POST", url, vendor="slack", json={"text": text}, timeout=_timeout())
    if response.status_code != 200:
        raise _slack_http_error(response, "webhook")
    return "webhook:ok"


def _slack_headers(settings: Settings) -> dict[str, str]:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    return {"Authorization": f"Bearer {token}"}


async def _slack_post(settings: Settings, channel: str, text: str, marker: str) -> str:
    body = {
        "channel": channel,
        "text": text,
        "metadata": {"event_type": "critical_response_notification",
                     "event_payload": {"delivery": marker}},
    }  # fmt: skip
    url = f"{settings.effective_slack_api_url}/chat.postMessage"
    response = await send(
        "POST", url, vendor="slack", json=body, headers=_slack_headers(settings), timeout=_timeout()
    )
    if response.status_code != 200:
        raise _slack_http_error(response, "chat.postMessage")
    reply = response.json()
    if reply.get("ok"):
        return str(reply["ts"])
    error = str(reply.get("error", "unknown_error"))
    api = "chat.postMessage"
    if error in {"ratelimited", "rate_limited"}:
        delay = retry_after(response) or 1.0
        raise retryable(described("SlackRateLimited", 200, where=api, code=error),
                        "SlackRateLimited", delay)  # fmt: skip
    if error in SLACK_RETRYABLE:  # Slack may still have posted it: ambiguous
        raise retryable(described("VendorServerError", 200, where=api, code=error),
                        "VendorServerError")  # fmt: skip
    raise permanent(described("SlackError", 200, where=api, code=error), "SlackError")


async def _slack_find(settings: Settings, channel: str, marker: str, since: datetime) -> str | None:
    """The ts of our earlier post, found by its metadata; None if absent or not checkable."""
    params = {
        "channel": channel,
        "oldest": f"{(since - RECONCILE_SKEW).timestamp():.6f}",
        "include_all_metadata": "true",
        "limit": "200",
    }
    url = f"{settings.effective_slack_api_url}/conversations.history"
    response = await send(
        "GET", url, vendor="slack", params=params, headers=_slack_headers(settings),
        timeout=_timeout(),
    )  # fmt: skip
    if response.status_code != 200:
        raise _slack_http_error(response, "conversations.history")
    reply = response.json()
    if not reply.get("ok"):  # e.g. a channel name instead of an id, or no history scope
        return None
    for message in reply.get("messages", []):
        payload = (message.get("metadata") or {}).get("event_payload") or {}
        if payload.get("delivery") == marker:
            return str(message["ts"])
    return None


# --- PagerDuty -----------------------------------------------------------------------------------


def pagerduty_dedup_key(incident_id: str, policy: str) -> str:
    """One alert per (incident, escalation policy); PagerDuty caps keys at 255 characters."""
    key = f"{incident_id}:{policy}"
    if len(key) <= 255:
        return key
    return f"{key[:200]}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"


@activity.defn(name="notify.pagerduty")
@heartbeats
async def pagerduty(req: ActionRequest) -> ActionResult:
    """Trigger, acknowledge or resolve the incident's alert for one escalation policy."""
    args = parse_args(PagerDutyArgs, req)
    settings = get_settings()
    policy = args.escalation_policy or "default"
    configured = settings.pagerduty_routing_keys.get(policy) or settings.pagerduty_routing_key
    routing_key = configured.get_secret_value()
    dedup_key = pagerduty_dedup_key(req.incident_id, policy)
    event: dict[str, object] = {
        "routing_key": routing_key,
        "event_action": args.action,
        "dedup_key": dedup_key,
        "client": "critical-response",
    }
    if args.action == "trigger":
        summary = args.summary or f"[{req.severity}] incident {req.incident_id} ({req.playbook})"
        details = {"incident_id": req.incident_id, "step_id": req.step_id, "severity": req.severity}
        if args.on_call:  # the role's holder, as the incident asked the roster (recorded there)
            details["on_call"] = args.on_call
        event["payload"] = {
            "summary": summary[:1024],
            "source": "critical-response",
            "severity": args.severity,
            "component": req.playbook or None,
            "group": policy,
            "custom_details": details,
        }
    url = settings.effective_pagerduty_url
    response = await send("POST", url, vendor="pagerduty", json=event, timeout=_timeout())
    _raise_for_pagerduty(response, settings)
    activity_logger(step_id=req.step_id).info(
        "notify.pagerduty_sent", action=args.action, policy=policy
    )
    return ActionResult(detail=f"pagerduty: {args.action} accepted",
                        data={"dedup_key": dedup_key, "action": args.action})  # fmt: skip


def _raise_for_pagerduty(response: httpx.Response, settings: Settings) -> None:
    status = response.status_code
    if status == 202:
        return
    if status == 429:  # PagerDuty documents ~30 s between retries, and no Retry-After
        delay = retry_after(response) or settings.pagerduty_retry_delay_seconds
        raise retryable("PagerDuty: rate limited", "PagerDutyRateLimited", delay)
    if status >= 500:
        raise retryable(f"PagerDuty: HTTP {status}", "VendorServerError")
    try:
        body = response.json()
        said = " ".join(map(str, body.get("errors") or [])) if isinstance(body, dict) else ""
    except ValueError:
        said = ""
    fields = [f for f in PAGERDUTY_FIELDS if f in said]
    raise permanent(described("PagerDutyError", status, fields=fields), "PagerDutyError")


# --- Email ---------------------------------------------------------------------------------------


@activity.defn(name="notify.email")
@heartbeats
async def email(req: ActionRequest) -> ActionResult:
    """Send one email per step and recipient (SendGrid v3, or SMTP when configured)."""
    args = parse_args(EmailArgs, req)
    settings = get_settings()
    marker = delivery_marker(req.idempotency_key)

    async def sender() -> str:
        return await send_email(settings, args.to, args.subject, args.body, marker)

    return await deliver(req, "email", args.to, sender, None)


# --- SMS -----------------------------------------------------------------------------------------


@activity.defn(name="notify.sms")
@heartbeats
async def sms(req: ActionRequest) -> ActionResult:
    """Send one SMS per step and number through Twilio's Messages.json."""
    args = parse_args(SmsArgs, req)
    settings = get_settings()

    async def sender() -> str:
        return await _twilio_send(settings, args.to, args.body)

    async def find(since: datetime) -> str | None:
        return await _twilio_find(settings, args.to, args.body, since)

    return await deliver(req, "sms", args.to, sender, find)


def _twilio_url(settings: Settings) -> str:
    sid = settings.twilio_account_sid
    return f"{settings.effective_twilio_url}/2010-04-01/Accounts/{sid}/Messages.json"


def _twilio_auth(settings: Settings) -> tuple[str, str]:
    return (settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value())


async def _twilio_send(settings: Settings, to: str, body: str) -> str:
    form = {"To": to, "From": settings.twilio_from_number, "Body": body}
    response = await send(
        "POST", _twilio_url(settings), vendor="twilio", data=form, auth=_twilio_auth(settings),
        timeout=_timeout(),
    )  # fmt: skip
    if response.status_code == 201:
        return str(response.json()["sid"])
    raise _twilio_error(response)


def _twilio_error(response: httpx.Response) -> ApplicationError:
    status = response.status_code
    try:
        body = response.json()
        code = body.get("code") if isinstance(body, dict) else None
    except ValueError:
        code = None
    if status == 429:  # 20429: never processed, always safe to retry
        text = described("TwilioRateLimited", status, code=code)
        return retryable(text, "TwilioRateLimited", retry_after(response))
    if status >= 500:
        return retryable(described("VendorServerError", status, code=code), "VendorServerError")
    return permanent(described("TwilioError", status, code=code), "TwilioError")


async def _twilio_find(settings: Settings, to: str, body: str, since: datetime) -> str | None:
    """The sid of an earlier identical message to ``to`` sent since the first attempt, if any."""
    response = await send(
        "GET", _twilio_url(settings), vendor="twilio", params={"To": to, "PageSize": "50"},
        auth=_twilio_auth(settings), timeout=_timeout(),
    )  # fmt: skip
    if response.status_code != 200:
        raise _twilio_error(response)
    cutoff = since - RECONCILE_SKEW
    for message in response.json().get("messages", []):
        created = _parse_rfc2822(message.get("date_created"))
        same = message.get("body") == body and message.get("from") == settings.twilio_from_number
        if same and created is not None and created >= cutoff:
            return str(message["sid"])
    return None


def _parse_rfc2822(value: object) -> datetime | None:
    try:
        return parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None


ACTIVITIES = [slack, pagerduty, email, sms]
