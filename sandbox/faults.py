"""Fault injection around every emulated route: latency, vendor-shaped errors, throttling, and
"commit then drop the connection".

Each vendor fails in its own shape (Salesforce sends a JSON array and never 429, Slack's webhook
answers plain text, Twilio sends ``code``/``more_info``), so the engine's error classification is
exercised against the same bodies it meets in production. A dropped connection is a real TCP abort
after the handler has committed its write: the client sees a transport error and cannot know
whether the write landed, which is exactly the case idempotency has to survive.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from sandbox.state import FaultRule, SandboxState

Handler = Callable[[Request], Awaitable[Response]]


def state_of(request: Request) -> SandboxState:
    return request.app.state.sandbox  # type: ignore[no-any-return]


def emulated(route: str) -> Callable[[Handler], Handler]:
    """Count the request, apply latency, and inject the fault the rules draw for ``route``."""
    vendor = route.split(".", 1)[0]

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            state = state_of(request)
            state.count(route)
            rule, latency_ms = state.draw_fault(route)
            if latency_ms:
                await asyncio.sleep(latency_ms / 1000)
            if rule is None:
                response = await handler(request)
                _keep(request, state)
                return response
            if rule.kind == "drop_after_commit":
                await handler(request)
                _keep(request, state)
                return await drop_connection(request)
            return fault_response(vendor, rule)

        return run

    return wrap


def _keep(request: Request, state: SandboxState) -> None:
    """Save the state after a request that may have changed it (reads only count API usage,
    which the next write or the server's stop saves)."""
    if request.method != "GET":
        state.commit()


async def drop_connection(request: Request) -> Response:
    """Abort the client's TCP connection so no response is ever delivered."""
    dropper = getattr(request.app.state, "drop_connection", None)
    client = request.scope.get("client")
    if dropper is not None and client is not None and dropper(tuple(client)):
        # Let uvicorn see the disconnect so it does not try to answer on a dead socket.
        for _ in range(3):
            await asyncio.sleep(0)
        return Response(status_code=500)
    # Not served by our uvicorn wrapper: promise a body that never comes (client sees EOF).
    return _TruncatedResponse()


class _TruncatedResponse(Response):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"1024"), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{", "more_body": False})


def fault_response(vendor: str, rule: FaultRule) -> Response:
    if rule.kind == "throttle":
        return _throttle(vendor, rule.retry_after)
    return _error(vendor, rule.status, rule.error_code)


def _retry_after(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _throttle(vendor: str, retry_after: float) -> Response:
    headers = {"Retry-After": _retry_after(retry_after)}
    if vendor == "salesforce":
        # Salesforce never sends 429: concurrency limits arrive as 403 REQUEST_LIMIT_EXCEEDED.
        body = [
            {
                "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                "errorCode": "REQUEST_LIMIT_EXCEEDED",
            }
        ]
        return JSONResponse(body, status_code=403)
    if vendor == "slack":
        return JSONResponse({"ok": False, "error": "ratelimited"}, 429, headers=headers)
    if vendor == "twilio":
        return JSONResponse(_twilio_error(429, 20429, "Too Many Requests"), 429, headers=headers)
    if vendor == "sendgrid":
        return JSONResponse(
            {"errors": [{"field": None, "message": "too many requests"}]},
            429,
            headers={"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", **headers},
        )
    return JSONResponse(
        {"status": "throttled", "message": "Request Limit Exceeded"}, 429, headers=headers
    )


def _error(vendor: str, status: int, code: str | None) -> Response:
    if vendor == "salesforce":
        code = code or ("SERVER_UNAVAILABLE" if status >= 500 else "INVALID_FIELD")
        return JSONResponse([{"message": f"injected {code}", "errorCode": code}], status)
    if vendor == "slack":
        return _slack_error(status, code)
    if vendor == "twilio":
        return JSONResponse(_twilio_error(status, int(code or 20500), "injected error"), status)
    if vendor == "sendgrid":
        return JSONResponse(
            {"errors": [{"message": code or "injected error", "field": None}]}, status
        )
    body = {"status": "error", "message": code or "injected error", "errors": ["injected"]}
    return JSONResponse(body, status)


def _slack_error(status: int, code: str | None) -> Response:
    # chat.postMessage reports errors as HTTP 200 + ok:false; the webhook as plain text.
    if status == 200:
        return JSONResponse({"ok": False, "error": code or "internal_error"})
    return PlainTextResponse(code or "rollup_error", status)


def _twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


async def json_body(request: Request) -> Any:
    """The parsed JSON body, or None when it is not JSON (callers answer in the vendor's shape)."""
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        return None


async def form_body(request: Request) -> dict[str, str]:
    """A form-encoded body (Salesforce token, Twilio) without needing python-multipart."""
    return dict(parse_qsl((await request.body()).decode(errors="replace"), keep_blank_values=True))
