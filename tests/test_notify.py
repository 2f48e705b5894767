"""Notification activities against the emulator over real HTTP: delivery ledger, PagerDuty dedup,
Retry-After and every error class."""

from __future__ import annotations

import socketserver
import threading
from datetime import timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities import ledger, notify
from tests.integration_support import (
    inject,
    integration_env,
    refresh_settings,
    request,
    run_activity,
    sandbox_server,
    state,
)

__all__ = ["integration_env", "sandbox_server"]  # fixtures used by name

PHONE = "+15551230001"


async def failure(coro) -> ApplicationError:  # type: ignore[no-untyped-def]
    with pytest.raises(ApplicationError) as info:
        await coro
    return info.value


def slack_req(text: str = "SEV0 opened", key: str = "inc-1:notify", channel: str | None = None):  # type: ignore[no-untyped-def]
    args = {"text": text} | ({"channel": channel} if channel else {})
    return request("notify.slack", args, key=key)


def messages(server):  # type: ignore[no-untyped-def]
    return state(server)["slack"]["messages"]


@pytest.fixture
def bot(integration_env, monkeypatch):  # type: ignore[no-untyped-def]
    return refresh_settings(monkeypatch, slack_bot_token="xoxb-test")


# --- Slack webhook ---------------------------------------------------------------------------


async def test_webhook_sends_once_per_key(integration_env, sandbox_server):
    first = await run_activity(notify.slack, slack_req())
    again = await run_activity(notify.slack, slack_req())
    assert first.data["deduplicated"] == "false" and again.data["deduplicated"] == "true"
    sent = messages(sandbox_server)
    assert len(sent) == 1 and sent[0]["via"] == "webhook" and sent[0]["text"] == "SEV0 opened"
    rows = ledger.deliveries("inc-1")
    assert [(r.channel, r.state) for r in rows] == [("slack", "sent")]
    assert "webhook" not in rows[0].recipient_hash  # recipients are stored hashed


async def test_webhook_429_honours_retry_after(integration_env, sandbox_server):
    inject(sandbox_server, route="slack.webhook", kind="throttle", retry_after=0.25, times=1)
    err = await failure(run_activity(notify.slack, slack_req()))
    assert not err.non_retryable and err.type == "SlackRateLimited"
    assert err.next_retry_delay == timedelta(seconds=0.25)
    assert ledger.deliveries("inc-1") == []  # not processed: claim released
    await run_activity(notify.slack, slack_req())
    assert len(messages(sandbox_server)) == 1


async def test_webhook_4xx_is_final(integration_env, sandbox_server):
    inject(sandbox_server, route="slack.webhook", status=404, error_code="channel_not_found")
    err = await failure(run_activity(notify.slack, slack_req()))
    assert err.non_retryable and err.type == "SlackError" and "channel_not_found" in err.message


async def test_webhook_5xx_retries_and_sends_once(integration_env, sandbox_server):
    inject(sandbox_server, route="slack.webhook", status=500, error_code="rollup_error", times=1)
    err = await failure(run_activity(notify.slack, slack_req()))
    assert not err.non_retryable and err.type == "VendorServerError"
    assert [r.state for r in ledger.deliveries("inc-1")] == ["pending"]  # ambiguous: kept
    await run_activity(notify.slack, slack_req())
    assert len(messages(sandbox_server)) == 1


async def test_webhook_crash_before_ledger_write_resends(
    integration_env, sandbox_server, monkeypatch
):
    """The documented trade-off: with no way to ask the webhook, an ambiguous attempt resends."""
    real = ledger.mark_sent

    async def crash(*args):  # type: ignore[no-untyped-def]
        raise RuntimeError("worker died after sending")

    monkeypatch.setattr(ledger, "mark_sent", crash)
    err = await failure(run_activity(notify.slack, slack_req()))
    assert err.type == "RuntimeError" and not err.non_retryable  # retried, as before
    assert "worker died" not in err.message  # an unexpected error's text stays in the log
    monkeypatch.setattr(ledger, "mark_sent", real)
    await run_activity(notify.slack, slack_req())
    assert len(messages(sandbox_server)) == 2


# --- Slack chat.postMessage ------------------------------------------------------------------


async def test_post_message_sends_once(bot, sandbox_server):
    first = await run_activity(notify.slack, slack_req(channel="C0INCIDENT"))
    again = await run_activity(notify.slack, slack_req(channel="C0INCIDENT"))
    assert again.data == {"ref": first.data["ref"], "deduplicated": "true"}
    sent = messages(sandbox_server)
    assert len(sent) == 1 and sent[0]["via"] == "api" and sent[0]["channel"] == "C0INCIDENT"
    assert sent[0]["metadata"]["event_payload"]["delivery"].startswith("cr-")


async def test_post_message_default_channel(bot, sandbox_server):
    await run_activity(notify.slack, slack_req())
    assert messages(sandbox_server)[0]["channel"] == bot.default_slack_channel


async def test_post_message_dropped_after_commit_is_reconciled(bot, sandbox_server):
    inject(sandbox_server, route="slack.post_message", kind="drop_after_commit", times=1)
    err = await failure(run_activity(notify.slack, slack_req(channel="C1")))
    assert not err.non_retryable and err.type == "ConnectionLost"
    retry = await run_activity(notify.slack, slack_req(channel="C1"))
    assert retry.data["deduplicated"] == "true"
    assert len(messages(sandbox_server)) == 1


async def test_post_message_crash_before_ledger_write_is_reconciled(
    bot, sandbox_server, monkeypatch
):
    real = ledger.mark_sent

    async def crash(*args):  # type: ignore[no-untyped-def]
        raise RuntimeError("worker died after sending")

    monkeypatch.setattr(ledger, "mark_sent", crash)
    assert (await failure(run_activity(notify.slack, slack_req(channel="C1")))).type == (
        "RuntimeError"
    )
    monkeypatch.setattr(ledger, "mark_sent", real)
    assert (await run_activity(notify.slack, slack_req(channel="C1"))).data[
        "deduplicated"
    ] == "true"
    assert len(messages(sandbox_server)) == 1


async def test_post_message_ok_false_is_final(bot, sandbox_server):
    err = await failure(run_activity(notify.slack, slack_req(channel="archived-ops")))
    assert err.non_retryable and err.type == "SlackError" and "is_archived" in err.message


async def test_post_message_bad_token_is_final(integration_env, monkeypatch):
    refresh_settings(monkeypatch, slack_bot_token="not-a-token")
    err = await failure(run_activity(notify.slack, slack_req(channel="C1")))
    assert err.non_retryable and "invalid_auth" in err.message


@pytest.mark.parametrize(
    ("rule", "error_type", "delay"),
    [
        ({"kind": "throttle", "retry_after": 0.5}, "SlackRateLimited", 0.5),
        ({"status": 200, "error_code": "ratelimited"}, "SlackRateLimited", 1.0),
        ({"status": 200, "error_code": "internal_error"}, "VendorServerError", None),
        ({"status": 503}, "VendorServerError", None),
    ],
)
async def test_post_message_retryable(bot, sandbox_server, rule, error_type, delay):
    inject(sandbox_server, route="slack.post_message", times=1, **rule)
    err = await failure(run_activity(notify.slack, slack_req(channel="C1")))
    assert not err.non_retryable and err.type == error_type
    assert err.next_retry_delay == (timedelta(seconds=delay) if delay is not None else None)
    await run_activity(notify.slack, slack_req(channel="C1"))
    assert len(messages(sandbox_server)) == 1


# --- PagerDuty -------------------------------------------------------------------------------


def page(action: str = "trigger", policy: str | None = "tier1", step: str = "page"):  # type: ignore[no-untyped-def]
    args = {"action": action, "summary": "SEV0 emergency disclosure"}
    args |= {"escalation_policy": policy} if policy else {}
    return request("notify.pagerduty", args, step=step, key=f"inc-1:{step}:{action}")


def alerts(server):  # type: ignore[no-untyped-def]
    return state(server)["pagerduty"]["alerts"]


async def test_pagerduty_lifecycle_with_deterministic_dedup_key(integration_env, sandbox_server):
    first = await run_activity(notify.pagerduty, page())
    await run_activity(notify.pagerduty, page())  # a retried trigger joins the open alert
    assert first.data["dedup_key"] == "inc-1:tier1"
    (alert,) = alerts(sandbox_server)
    assert alert["status"] == "triggered" and alert["events"] == 2 and alert["opened"] == 1
    await run_activity(notify.pagerduty, page("acknowledge"))
    assert alerts(sandbox_server)[0]["status"] == "acknowledged"
    await run_activity(notify.pagerduty, page("resolve"))
    assert alerts(sandbox_server)[0]["status"] == "resolved"
    event = state(sandbox_server)["pagerduty"]["events"][0]
    assert event["payload"]["severity"] == "critical" and event["payload"]["source"]


async def test_a_page_names_the_on_call_holder_it_was_given(integration_env, sandbox_server):
    """The workflow asks the roster and passes the holder in the args (so its history says whom
    it paged); the event carries it in ``custom_details``, and a page without one does not."""
    named = page(policy="ic-oncall", step="named")
    named.args["on_call"] = "lena (ic)"
    await run_activity(notify.pagerduty, named)
    await run_activity(notify.pagerduty, page(step="plain"))
    first, second = state(sandbox_server)["pagerduty"]["events"]
    assert first["payload"]["custom_details"]["on_call"] == "lena (ic)"
    assert first["payload"]["custom_details"]["step_id"] == "named"
    assert "on_call" not in second["payload"]["custom_details"]


async def test_pagerduty_one_alert_per_escalation_policy(integration_env, sandbox_server):
    await run_activity(notify.pagerduty, page(policy="tier1", step="p1"))
    await run_activity(notify.pagerduty, page(policy="tier2", step="p2"))
    await run_activity(notify.pagerduty, page(policy=None, step="p3"))
    keys = sorted(a["dedup_key"] for a in alerts(sandbox_server))
    assert keys == ["inc-1:default", "inc-1:tier1", "inc-1:tier2"]


async def test_pagerduty_400_is_final(integration_env, monkeypatch):
    refresh_settings(monkeypatch, pagerduty_routing_key="too-short")
    err = await failure(run_activity(notify.pagerduty, page()))
    assert err.non_retryable and err.type == "PagerDutyError" and "routing_key" in err.message


async def test_pagerduty_429_waits_configured_delay(integration_env, sandbox_server):
    inject(sandbox_server, route="pagerduty.enqueue", kind="throttle", retry_after=0, times=1)
    err = await failure(run_activity(notify.pagerduty, page()))
    assert not err.non_retryable and err.type == "PagerDutyRateLimited"
    assert err.next_retry_delay == timedelta(seconds=0.05)


async def test_pagerduty_5xx_and_drop_are_retryable_without_duplicates(
    integration_env, sandbox_server
):
    inject(sandbox_server, route="pagerduty.enqueue", status=502, times=1)
    err = await failure(run_activity(notify.pagerduty, page()))
    assert not err.non_retryable and err.type == "VendorServerError"
    inject(sandbox_server, route="pagerduty.enqueue", kind="drop_after_commit", times=1)
    err = await failure(run_activity(notify.pagerduty, page()))
    assert err.type == "ConnectionLost"
    await run_activity(notify.pagerduty, page())
    assert len(alerts(sandbox_server)) == 1


def test_long_dedup_key_is_capped():
    key = notify.pagerduty_dedup_key("i" * 300, "tier1")
    assert len(key) <= 255 and key == notify.pagerduty_dedup_key("i" * 300, "tier1")


# --- Email (SendGrid) ------------------------------------------------------------------------


def mail(key: str = "inc-1:mail", to: str = "legal@example.com"):  # type: ignore[no-untyped-def]
    args = {"to": to, "subject": "SEV0 opened", "body": "Please review."}
    return request("notify.email", args, key=key)


async def test_email_sends_once(integration_env, sandbox_server):
    first = await run_activity(notify.email, mail())
    again = await run_activity(notify.email, mail())
    assert again.data == {"ref": first.data["ref"], "deduplicated": "true"}
    (sent,) = state(sandbox_server)["sendgrid"]["mail"]
    assert sent["personalizations"][0]["to"][0]["email"] == "legal@example.com"
    assert sent["custom_args"]["cr_delivery"].startswith("cr-")
    await run_activity(notify.email, mail(to="dpo@example.com"))
    assert len(state(sandbox_server)["sendgrid"]["mail"]) == 2


async def test_email_429_waits_for_reset(integration_env, sandbox_server):
    inject(sandbox_server, route="sendgrid.send", kind="throttle", retry_after=1, times=1)
    err = await failure(run_activity(notify.email, mail()))
    assert not err.non_retryable and err.type == "SendGridRateLimited"
    assert err.next_retry_delay is not None and err.next_retry_delay <= timedelta(seconds=2)


async def test_email_errors(integration_env, sandbox_server, monkeypatch):
    inject(sandbox_server, route="sendgrid.send", status=500, times=1)
    assert not (await failure(run_activity(notify.email, mail()))).non_retryable
    refresh_settings(monkeypatch, sendgrid_api_key="bad")
    err = await failure(run_activity(notify.email, mail(key="other")))
    assert err.non_retryable and err.type == "SendGridError" and "401" in err.message


# --- SMS (Twilio) ----------------------------------------------------------------------------


def text(key: str = "inc-1:sms", to: str = PHONE):  # type: ignore[no-untyped-def]
    return request("notify.sms", {"to": to, "body": "SEV0: check Slack"}, key=key)


def sms_sent(server):  # type: ignore[no-untyped-def]
    return state(server)["twilio"]["messages"]


async def test_sms_sends_once(integration_env, sandbox_server):
    first = await run_activity(notify.sms, text())
    again = await run_activity(notify.sms, text())
    assert first.data["ref"].startswith("SM") and again.data["deduplicated"] == "true"
    (sent,) = sms_sent(sandbox_server)
    assert (sent["to"], sent["from"], sent["status"]) == (PHONE, "+15005550006", "queued")


async def test_sms_dropped_after_commit_is_reconciled(integration_env, sandbox_server):
    inject(sandbox_server, route="twilio.create", kind="drop_after_commit", times=1)
    err = await failure(run_activity(notify.sms, text()))
    assert not err.non_retryable and err.type == "ConnectionLost"
    retry = await run_activity(notify.sms, text())
    assert retry.data["deduplicated"] == "true" and len(sms_sent(sandbox_server)) == 1


async def test_sms_errors(integration_env, sandbox_server, monkeypatch):
    err = await failure(run_activity(notify.sms, text(to="555-0100")))
    assert err.non_retryable and err.type == "TwilioError"
    assert err.message == "TwilioError 400 (code 21211)"  # Twilio's text echoes the number
    inject(sandbox_server, route="twilio.create", kind="throttle", retry_after=0.1, times=1)
    err = await failure(run_activity(notify.sms, text()))
    assert not err.non_retryable and err.type == "TwilioRateLimited"
    assert ledger.deliveries("inc-1") == []  # 20429 is never processed
    refresh_settings(monkeypatch, twilio_auth_token="wrong")
    err = await failure(run_activity(notify.sms, text()))
    assert err.non_retryable and "20003" in err.message


async def test_ledger_claim_states(integration_env):
    claims = [await ledger.claim("inc-9", "k", "sms", PHONE) for _ in range(3)]
    assert [c.state for c in claims] == ["new", "pending", "pending"]
    await ledger.mark_sent(claims[0], "SM1")
    assert (await ledger.claim("inc-9", "k", "sms", PHONE.lower())).state == "sent"
    assert ledger.deliveries("inc-9")[0].attempts == 3


# --- Email (SMTP) ----------------------------------------------------------------------------


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: refuses ``refused@`` recipients, 451s when told to."""

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        server: Any = self.server
        self.reply("220 test ESMTP")
        while line := self.rfile.readline().decode().strip():
            verb = line.split(" ", 1)[0].upper()
            if verb in {"EHLO", "HELO", "MAIL", "RSET", "NOOP"}:
                self.reply("250 ok")
            elif verb == "RCPT":
                self.reply("550 no such user" if "refused@" in line else "250 ok")
            elif verb == "DATA":
                self.reply("354 go ahead")
                data = b"".join(iter(lambda: self.rfile.readline(), b".\r\n"))
                if server.busy:
                    self.reply("451 try again later")
                else:
                    server.received.append(data.decode())
                    self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return


@pytest.fixture
def smtp(integration_env, monkeypatch):  # type: ignore[no-untyped-def]
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler)
    server.received, server.busy = [], False  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    refresh_settings(monkeypatch, email_transport="smtp", smtp_port=str(server.server_address[1]))
    yield server
    server.shutdown()
    server.server_close()


async def test_smtp_sends_once_and_classifies_errors(smtp):
    first = await run_activity(notify.email, mail())
    again = await run_activity(notify.email, mail())
    assert again.data == {"ref": first.data["ref"], "deduplicated": "true"}
    (message,) = smtp.received
    assert "Subject: SEV0 opened" in message and "Please review." in message
    err = await failure(run_activity(notify.email, mail(key="k2", to="refused@example.com")))
    assert err.non_retryable and err.type == "SmtpError"
    smtp.busy = True
    err = await failure(run_activity(notify.email, mail(key="k3")))
    assert not err.non_retryable and err.type == "SmtpTransient"
    smtp.busy = False
    await run_activity(notify.email, mail(key="k3"))
    assert len(smtp.received) == 2
