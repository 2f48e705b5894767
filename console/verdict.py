"""A console action's answer is the API's answer: the same exception, handled by the API's own
handler (``api/errors.py``: the status, the one-line message, the ``_access`` audit entry for a
refusal), then shown to the person as one line instead of JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request


@dataclass(frozen=True)
class Verdict:
    """What the server said: ``ok``, the HTTP status and one line for the person."""

    ok: bool
    status: int
    message: str
    error: str = ""


def done(message: str) -> Verdict:
    return Verdict(True, 200, message)


async def refused(request: Request, err: Exception) -> Verdict:
    """The API's answer to ``err``: its handler's status and message (re-raised if none)."""
    handlers: dict[Any, Any] = request.app.exception_handlers
    handler = next((handlers[k] for k in type(err).__mro__ if k in handlers), None)
    if handler is None:
        raise err
    response = await handler(request, err)
    body = json.loads(bytes(response.body))
    return Verdict(False, response.status_code, str(body.get("message", "")),
                   str(body.get("error", "")))  # fmt: skip
