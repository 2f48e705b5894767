"""Email transports for ``notify.email``: SendGrid v3 over httpx (default) or plain SMTP.

Both return a reference for the delivery ledger (SendGrid's ``X-Message-Id``, or the Message-ID we
generate for SMTP) and raise classified ``ApplicationError``s: SendGrid's 429 waits until
``X-RateLimit-Reset``; 4xx (and SMTP 5xx replies) are final; 5xx, 4xx SMTP replies and broken
connections retry. An error keeps the status, the SMTP enhanced code and SendGrid's field names,
never the vendor's text (an SMTP refusal echoes the address).
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import time
from email.message import EmailMessage
from email.utils import make_msgid

import httpx
from temporalio.exceptions import ApplicationError

from activities.vendor_http import described, permanent, retry_after, retryable, send
from settings import Settings

ENHANCED_STATUS_RE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")  # RFC 3463: 5.1.1


async def send_email(settings: Settings, to: str, subject: str, body: str, marker: str) -> str:
    if settings.email_transport == "smtp":
        return await asyncio.to_thread(_smtp_send, settings, to, subject, body, marker)
    if settings.email_transport != "sendgrid":
        raise permanent(
            f"unknown CR_EMAIL_TRANSPORT {settings.email_transport!r}", "EmailConfigError"
        )
    return await _sendgrid_send(settings, to, subject, body, marker)


async def _sendgrid_send(settings: Settings, to: str, subject: str, body: str, marker: str) -> str:
    mail = {
        "personalizations": [{"to": [{"email": to}]}],
        "from": {"email": settings.email_from},
        "subject": subject,
        "content": [{"type": "text/plain", "value": body}],
        "custom_args": {"cr_delivery": marker},  # traceable in SendGrid's activity feed
    }
    headers = {"Authorization": f"Bearer {settings.sendgrid_api_key.get_secret_value()}"}
    response = await send(
        "POST", f"{settings.effective_sendgrid_url}/v3/mail/send", vendor="sendgrid", json=mail,
        headers=headers, timeout=settings.http_timeout_seconds,
    )  # fmt: skip
    if response.status_code in (200, 202):
        return response.headers.get("x-message-id") or marker
    raise _sendgrid_error(response)


def _sendgrid_error(response: httpx.Response) -> ApplicationError:
    status = response.status_code
    try:
        errors = response.json().get("errors") or []
        fields = [e.get("field") for e in errors if isinstance(e, dict)]
    except (ValueError, AttributeError):
        fields = []
    if status == 429:
        text = described("SendGridRateLimited", status)
        return retryable(text, "SendGridRateLimited", _reset_delay(response))
    if status >= 500:
        return retryable(described("VendorServerError", status), "VendorServerError")
    return permanent(described("SendGridError", status, fields=fields), "SendGridError")


def _reset_delay(response: httpx.Response) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (epoch seconds), else ``Retry-After``."""
    reset = response.headers.get("x-ratelimit-reset")
    if reset:
        try:
            return max(float(reset) - time.time(), 0.0)
        except ValueError:
            pass
    return retry_after(response)


def _smtp_send(settings: Settings, to: str, subject: str, body: str, marker: str) -> str:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = settings.email_from, to, subject
    message["Message-ID"] = make_msgid(idstring=marker)
    message.set_content(body)
    try:
        with smtplib.SMTP(
            settings.smtp_host, settings.smtp_port, timeout=settings.http_timeout_seconds
        ) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_username and settings.smtp_password:
                smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:
        reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
        enhanced = ENHANCED_STATUS_RE.match(reply)
        code = enhanced.group(0) if enhanced else None
        if 400 <= exc.smtp_code < 500:
            raise retryable(described("SmtpTransient", exc.smtp_code, code=code),
                            "SmtpTransient") from None  # fmt: skip
        raise permanent(described("SmtpError", exc.smtp_code, code=code), "SmtpError") from None
    except smtplib.SMTPRecipientsRefused:  # its args hold the address: not chained
        raise permanent("SmtpError: recipient refused", "SmtpError") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise retryable(f"SMTP: {type(exc).__name__}", "ConnectionLost") from exc
    return str(message["Message-ID"])
