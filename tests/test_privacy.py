"""No personal data in logs, activity failures or the timeline (issue 10): a vendor answer that
carries a canary phone number, email address and free text reaches none of them; secrets are
masked in every log line, ours and the libraries'.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import smtplib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import structlog
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import logs
from activities import notify, salesforce, vendor_http
from activities.safe_errors import masked, private_failures
from settings import Settings
from tests.engine_support import engine_harness, incident_input, one, playbook, wait_for_timeline
from tests.integration_support import (
    integration_env,
    refresh_settings,
    request,
    run_activity,
    sandbox_server,
)

__all__ = ["integration_env", "sandbox_server"]  # fixtures used by name

PHONE = "+14155550142"
EMAIL = "canary.person@example.org"
TEXT = "CANARY-free-text-7731"
CANARIES = (PHONE, "4155550142", EMAIL, TEXT)
ECHO = f"The 'To' number {PHONE} ({EMAIL}) is not a valid phone number. {TEXT}"


def clean(text: str) -> bool:
    return not any(c in text for c in CANARIES)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log line of the test, structlog's and the standard library's, as a process has them."""
    buffer = io.StringIO()
    saved, root_level = structlog.get_config(), logging.getLogger().level
    logs.configure("DEBUG", stream=buffer, cache=False)
    try:
        yield buffer
    finally:
        logs.unconfigure_stdlib()
        logging.getLogger().setLevel(root_level)
        structlog.configure(**saved)


@contextlib.asynccontextmanager
async def vendor_answers(handler: Callable[[httpx.Request], httpx.Response]) -> AsyncIterator[None]:
    """Every vendor call of this event loop is answered by ``handler`` (activities and workers
    share the loop's pooled client, ``vendor_http.http_client``)."""
    loop = asyncio.get_running_loop()
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    before = vendor_http._clients.get(loop)
    vendor_http._clients[loop] = client
    try:
        yield
    finally:
        if before is not None:
            vendor_http._clients[loop] = before
        else:
            vendor_http._clients.pop(loop, None)
        await client.aclose()


# --- the processor --------------------------------------------------------------------------


def test_keys_with_personal_data_or_secrets_are_masked_and_ids_kept():
    event = logs.redact(None, "info", {
        "event": f"sent to {PHONE}", "incident_id": "sf-001", "case_id": "5003000000D8cuI",
        "summary": "Shopper reports assault", "fields": {"jurisdiction": "us"}, "to": PHONE,
        "Response-Body": TEXT, "token": "crt_abcdefgh", "token_id": "tok-1", "attempt": 2,
        "extra": {"email": EMAIL, "step_id": "s1", "nested": [f"call {PHONE}", EMAIL]},
        "note": "whsec_c2VjcmV0c2VjcmV0", "header": "Bearer abc.def.ghi",
        "at": "2024-05-01T10:11:12+00:00",
    })  # fmt: skip
    assert event["event"] == "sent to [phone]"
    assert (event["incident_id"], event["case_id"], event["token_id"], event["attempt"]) == (
        "sf-001", "5003000000D8cuI", "tok-1", 2)  # fmt: skip
    for key in ("summary", "fields", "to", "Response-Body", "note"):
        assert event[key] == logs.REDACTED, key
    assert event["token"] == logs.SECRET and event["header"] == logs.SECRET
    assert event["extra"] == {"email": logs.REDACTED, "step_id": "s1",
                              "nested": ["call [phone]", "[email]"]}  # fmt: skip
    assert event["at"] == "2024-05-01T10:11:12+00:00"  # times are not phone numbers


@pytest.mark.parametrize(
    "text",
    [PHONE, "+1 (415) 555-0142", "415-555-0142", "(415) 555-0142", "555-0142", "%2B14155550142",
     EMAIL, "first.last+tag@sub.example.co.uk"],
)  # fmt: skip
def test_phone_numbers_and_emails_in_text_are_masked(text):
    assert logs.redact_text(f"x {text} y") in ("x [phone] y", "x [email] y")


def test_tracebacks_and_library_lines_are_redacted(captured):
    log = structlog.get_logger()
    try:
        raise ValueError(f"vendor said: {ECHO}")
    except ValueError:
        log.exception("notify.failed", summary=TEXT, incident_id="sf-7")
        logging.getLogger("temporalio.activity").warning("Completing activity as failed",
                                                         exc_info=True)  # fmt: skip
    logging.getLogger("uvicorn.error").error("request from %s with %s", EMAIL, "whsec_AAAAAAAAAAAA")
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [
        "notify.failed",
        "Completing activity as failed",
        "request from [email] with [secret]",
    ]
    assert "ValueError: vendor said: The 'To' number [phone] ([email])" in lines[0]["exception"]
    assert "[phone]" in lines[1]["exception"] and lines[1]["logger"] == "temporalio.activity"
    assert lines[0]["incident_id"] == "sf-7" and lines[0]["summary"] == logs.REDACTED
    assert PHONE not in captured.getvalue() and EMAIL not in captured.getvalue()


# --- vendor errors: the code, never the text ---------------------------------------------------


def _json(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


def _salesforce(req: httpx.Request) -> httpx.Response:
    if req.url.path.endswith("/oauth2/token"):
        return _json(200, {"access_token": "00D!x", "instance_url": "http://sf.test"})
    return _json(400, [{"message": f"Email: invalid email address: {EMAIL} {PHONE} {TEXT}",
                        "errorCode": "INVALID_EMAIL_ADDRESS", "fields": ["Email__c"]}])  # fmt: skip


VENDORS: list[tuple[str, Any, dict[str, Any], Callable[[httpx.Request], httpx.Response], str]] = [
    ("sms", notify.sms, {"to": "+15550001111", "body": "SEV0"},
     lambda r: _json(400, {"code": 21211, "message": ECHO, "status": 400}),
     "TwilioError 400 (code 21211)"),
    ("email", notify.email, {"to": "legal@example.com", "subject": "SEV0", "body": "review"},
     lambda r: _json(400, {"errors": [{"message": ECHO, "field": "personalizations.0.to.0.email"},
                                      {"message": TEXT, "field": EMAIL}]}),
     "SendGridError 400 (fields personalizations.0.to.0.email)"),
    ("pagerduty", notify.pagerduty, {"action": "trigger", "summary": "SEV0"},
     lambda r: _json(400, {"status": "invalid event", "message": ECHO,
                           "errors": [f"'routing_key' {ECHO}"]}),
     "PagerDutyError 400 (fields routing_key)"),
    ("slack", notify.slack, {"text": "SEV0"},
     lambda r: httpx.Response(400, text=ECHO), "SlackError 400 webhook"),
    ("salesforce", salesforce.upsert_case, {"subject": "SEV0"}, _salesforce,
     "SalesforceValidationError 400 (code INVALID_EMAIL_ADDRESS; fields Email__c)"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "fn", "args", "answer", "expected"), VENDORS,
                         ids=[v[0] for v in VENDORS])  # fmt: skip
async def test_a_vendor_error_body_reaches_neither_the_error_nor_the_log(
    integration_env, captured, name, fn, args, answer, expected
):
    async with vendor_answers(answer):
        with pytest.raises(ApplicationError) as info:
            await run_activity(fn, request(f"x.{name}", args, key=f"inc-1:{name}"))
    err = info.value
    assert err.message == expected and err.non_retryable
    assert err.__cause__ is None or clean(str(err.__cause__))
    assert clean(captured.getvalue())


async def test_slack_api_error_keeps_only_a_code(integration_env, monkeypatch):
    refresh_settings(monkeypatch, slack_bot_token="xoxb-test")
    answers = iter([_json(200, {"ok": False, "error": ECHO}),
                    _json(200, {"ok": False, "error": "is_archived"})])  # fmt: skip
    async with vendor_answers(lambda r: next(answers)):
        for expected in ("SlackError 200 chat.postMessage",
                         "SlackError 200 chat.postMessage (code is_archived)"):  # fmt: skip
            with pytest.raises(ApplicationError) as info:
                await run_activity(notify.slack, request("notify.slack", {"text": "x"}))
            assert info.value.message == expected


async def test_an_smtp_refusal_keeps_its_status_not_the_address(integration_env, monkeypatch):
    class Refusing:
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...
        def __enter__(self) -> Refusing:
            return self

        def __exit__(self, *exc: object) -> None: ...
        def send_message(self, message: Any) -> None:
            raise smtplib.SMTPDataError(550, f"5.1.1 <{EMAIL}>: {TEXT}".encode())

    refresh_settings(monkeypatch, email_transport="smtp")
    monkeypatch.setattr(smtplib, "SMTP", Refusing)
    with pytest.raises(ApplicationError) as info:
        await run_activity(notify.email, request("notify.email", {"to": EMAIL, "subject": "s",
                                                                  "body": "b"}))  # fmt: skip
    assert info.value.message == "SmtpError 550 (code 5.1.1)" and info.value.__cause__ is None


# --- anything else an activity raises ----------------------------------------------------------


async def test_an_unexpected_exception_keeps_its_type_and_leaves_its_text_in_the_log(captured):
    @private_failures
    async def broken() -> None:
        raise KeyError(f"{TEXT} {EMAIL}")

    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(broken)
    err = info.value
    assert (err.type, err.non_retryable, err.__cause__) == ("KeyError", False, None)
    assert err.message == "KeyError: unexpected error (details in the worker log)"
    line = json.loads(captured.getvalue().splitlines()[-1])
    assert line["event"] == "activity.unexpected_error" and "KeyError" in line["exception"]
    assert EMAIL not in captured.getvalue()  # the text is in the log, masked


def test_a_message_of_ours_with_a_number_is_masked_keeping_type_and_retry():
    err = ApplicationError(f"refused {PHONE}", type="X", non_retryable=True,
                           next_retry_delay=timedelta(seconds=3))  # fmt: skip
    safe = masked(err)
    assert safe is not None and safe.message == "refused [phone]"
    assert (safe.type, safe.non_retryable) == ("X", True)
    assert safe.next_retry_delay == timedelta(seconds=3)
    assert masked(ApplicationError("TwilioError 400 (code 21211)")) is None


# --- the timeline ------------------------------------------------------------------------------


async def test_the_timeline_records_the_error_class_not_the_vendor_text(
    dev_env, integration_env, captured
):
    """notify.sms (the real activity) fails on a Twilio answer echoing the canaries: the step's
    timeline entry, the records batches, the history and the worker's log hold none of them."""
    pb = playbook([
        {"id": "text-guardian", "kind": "action", "activity": "notify.sms",
         "args": {"to": "+15550001111", "body": "SEV0"}, "retry": {"max_attempts": 1},
         "on_failure": "continue"},
        {"id": "after", "kind": "action", "activity": "case.note"},
    ])  # fmt: skip
    twilio = lambda r: _json(400, {"code": 21211, "message": ECHO, "status": 400})  # noqa: E731
    async with vendor_answers(twilio), engine_harness(dev_env, [notify.sms]) as h:
        handle = await h.open(incident_input(pb))
        timeline = await wait_for_timeline(
            handle, lambda tl: any(e.kind == "step_completed" and e.step == "after" for e in tl)
        )
        failed = one(timeline, "step_failed", "text-guardian")
        assert failed.detail == (
            "notify.sms failed: TwilioError 400 (code 21211) (the playbook continues)"
        )
        assert clean(json.dumps([e.model_dump(mode="json") for e in timeline]))
        assert clean(json.dumps(h.stand_ins.named("records.append")))
        history = await handle.fetch_history()
        assert clean(history.to_json())
        await h.close(handle)
    assert "Completing activity as failed" in captured.getvalue()  # the SDK's line, redacted
    assert clean(captured.getvalue())


# --- secrets in settings -----------------------------------------------------------------------


def test_credentials_in_settings_never_show_in_a_repr_or_a_dump():
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url="postgresql://cr:db-password-1@db.internal/cr",
        slack_webhook_url="https://hooks.slack.com/services/T0/B0/webhook-token-2",
        pagerduty_routing_keys={"tier1": "routing-key-3" + "0" * 19},
        intake_webhook_secret="whsec_aW50YWtlLXNlY3JldC00",
    )
    shown = repr(settings) + settings.model_dump_json()
    for secret in ("db-password-1", "webhook-token-2", "routing-key-3", "aW50YWtlLXNlY3JldC00"):
        assert secret not in shown and secret not in logs.redact_text(shown)
    assert settings.effective_database_url.endswith("db-password-1@db.internal/cr")
    assert settings.effective_slack_webhook_url.endswith("/webhook-token-2")
    assert settings.pagerduty_routing_keys["tier1"].get_secret_value().startswith("routing-key-3")
