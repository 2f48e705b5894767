"""An emulated OpenAI-compatible chat endpoint (``POST /openai/v1/chat/completions``), for the
chat triage provider and the summary rewrite (``assist/chat.py``) in tests and figures.

Deterministic: it reads the last user message and answers in JSON mode from keyword rules of its
own (not the project's model, so comparing the two means something): a triage case gets a
playbook among those the system message lists and a severity; a list of handover sentences gets
them joined back as one paragraph. It wants ``Authorization: Bearer <key>`` (any non-empty key)
and a ``model``, and answers errors as OpenAI does (``{"error": {"message", "type", "code"}}``).
Every request is kept for ``GET /_sandbox/state`` (``openai.requests``), so tests can read what
left the process.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.faults import emulated, json_body, state_of

# First match wins; each rule: playbook, words (regular expressions, case-insensitive).
RULES: list[tuple[str, str]] = [
    ("child-safety", r"csam|child sexual|minor|grooming|enticement|trafficking|13-year-old"),
    ("product-recall", r"recall|fda|upc|salmonella|listeria"),
    ("preservation", r"preserv|2703\(f\)"),
    ("legal-process", r"subpoena|warrant|court order|2703\(d\)|return date"),
    ("emergency-disclosure", r"emergency|exigent|kidnapping|hostage|missing child"),
    ("threat-self-harm", r"suicide|kill|shoot|bomb|self-harm|end their life|threat of violence"),
    ("account-takeover", r"takeover|hijack|logged into|compromised|password|impersonat"),
    ("physical-safety", r"assault|injury|harassment|knife|delivery"),
]
DEFAULT_SEVERITY = {"emergency-disclosure": "sev0", "threat-self-harm": "sev0",
                    "child-safety": "sev1", "account-takeover": "sev1", "physical-safety": "sev1",
                    "product-recall": "sev1", "preservation": "sev2", "legal-process": "sev2"}  # fmt: skip
SEVERITY_RULES = [("sev0", r"in progress|happening now|right now|active threat|in danger|tonight"),
                  ("sev3", r"class iii|grand jury subpoena"),
                  ("sev2", r"class ii\b|harassment")]  # fmt: skip


def _error(status: int, message: str, code: str) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return JSONResponse(body, status)


def triage(case: str, allowed: list[str]) -> dict[str, Any]:
    """The emulator's answer for a case: the first rule that matches, else the first playbook."""
    lowered = case.lower()
    playbook, words = (allowed[0] if allowed else "unknown"), []
    for name, pattern in RULES:
        found = re.findall(pattern, lowered)
        if found and (not allowed or name in allowed):
            playbook, words = name, sorted(set(found))[:5]
            break
    severity = DEFAULT_SEVERITY.get(playbook, "sev2")
    for level, pattern in SEVERITY_RULES:
        if re.search(pattern, lowered):
            severity = level
            break
    return {"playbook": playbook, "severity": severity, "playbook_confidence": 0.8 if words else 0.3,
            "severity_confidence": 0.6, "words": words}  # fmt: skip


def _answer(messages: list[dict[str, Any]]) -> dict[str, Any]:
    system = next((str(m.get("content", "")) for m in messages if m.get("role") == "system"), "")
    user = next((str(m.get("content", "")) for m in reversed(messages)
                 if m.get("role") == "user"), "")  # fmt: skip
    if "handover" in system.lower():
        try:
            sentences = json.loads(user)
        except ValueError:
            sentences = [user]
        return {"text": " ".join(str(s) for s in sentences)}
    allowed = re.findall(r"^- ([a-z0-9-]+):", user, re.MULTILINE)
    case = user.split("Case:", 1)[-1]
    return triage(case, allowed)


@emulated("openai.chat")
async def chat_completions(request: Request) -> Response:
    if not request.headers.get("authorization", "").removeprefix("Bearer ").strip():
        return _error(401, "You didn't provide an API key.", "invalid_api_key")
    body = await json_body(request)
    if not isinstance(body, dict) or not body.get("model"):
        return _error(400, "you must provide a model parameter", "missing_model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "'messages' must be a non-empty array", "invalid_messages")
    state = state_of(request)
    with state.lock:
        state.chat_requests.append(body)
    content = json.dumps(_answer(messages))
    return JSONResponse({
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
        "created": int(time.time()), "model": body["model"],
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    })  # fmt: skip


ROUTES = [Route("/openai/v1/chat/completions", chat_completions, methods=["POST"])]
