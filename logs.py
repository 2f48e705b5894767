"""structlog configuration: JSON lines carrying incident id, workflow/run id and step, and the
redaction every line passes through, ours and the libraries' alike (issue 10).

Activities bind ids through ``activities/log.py`` and log ids and outcomes only. ``redact`` is the
net under that rule, the last processor before the renderer of every line, structlog's and the
standard library's (Temporal's SDK, uvicorn), which ``configure`` routes through the same chain:

- a value under a key that carries personal data (``summary``, ``fields``, ``data``, ``phone``,
  ``email``, ``to``, ``body``, ``text``, ``detail``, a response body ...) becomes ``[redacted]``;
- a value under a key that names a secret (``token``, ``secret``, ``password``, ``authorization``
  ...) becomes ``[secret]``;
- in every other string, the event and the rendered traceback included (``format_exc_info`` runs
  first), email addresses, phone numbers and known secret shapes (``whsec_...``, ``crt_...``,
  ``Bearer ...``) are masked. A vendor's HTTP response object is never rendered.

Masking by pattern is the second line: vendor error bodies never reach a log line because the
activities never put them into an error or a log call (``activities/vendor_http.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"
SECRET = "[secret]"
# Keys whose values are personal data or free text that can hold it (normalised: lower case, "-"
# and " " as "_"). Ids (incident_id, case_id ...), outcomes and counts are what a line keeps.
PERSONAL_KEYS = frozenset((
    "summary", "fields", "field_values", "data", "phone", "phone_number", "mobile", "email",
    "email_address", "to", "cc", "bcc", "from_number", "recipient", "recipients", "body", "text",
    "detail", "details", "description", "subject", "note", "notes", "reason", "resolution",
    "comment", "comments", "content", "payload", "args", "arguments", "form", "params", "query",
    "headers", "response", "response_body", "response_text", "body_text", "error_body",
    "request_body", "raw", "display_name", "postal_address",
))  # fmt: skip
# A key containing one of these names a secret (unless it is an id: token_id, key_id).
SECRET_WORDS = (
    "secret", "password", "passwd", "token", "authorization", "api_key", "apikey", "private_key",
    "routing_key", "cookie", "credential", "signature",
)  # fmt: skip
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE_RE = re.compile(
    r"(?:(?<![\w+])\+|%2B)\d[\d ().-]{5,18}\d(?!\d)"  # E.164 (+1 555 010 0199), URL-encoded too
    r"|(?<![\w.-])(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-])"  # (555) 010-0199
    r"|(?<![\w.:-])\d{3}-\d{4}(?![\w-])"  # 555-0199
)
SECRET_RE = re.compile(
    r"\b(?:whsec_|crt_|xox[abprs]-|SG\.)[A-Za-z0-9+/=_.-]{6,}"
    r"|\b(?:[Bb]earer|[Bb]asic)\s+[A-Za-z0-9+/=._~-]{6,}"
)
HANDLER_NAME = "critical-response"


def redact_text(text: str) -> str:
    """``text`` with email addresses, phone numbers and secrets masked."""
    text = SECRET_RE.sub(SECRET, text)
    text = EMAIL_RE.sub("[email]", text)
    return PHONE_RE.sub("[phone]", text)


def _key_kind(key: object) -> str | None:
    name = str(key).lower().replace("-", "_").replace(" ", "_")
    if name in PERSONAL_KEYS:
        return REDACTED
    if not name.endswith("_id") and any(word in name for word in SECRET_WORDS):
        return SECRET
    return None


def redact_value(value: Any, depth: int = 0) -> Any:
    """``value`` with personal data and secrets masked, recursively (mappings by their keys)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if depth > 8:
        return REDACTED
    if isinstance(value, Mapping):
        return {k: _key_kind(k) or redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray) or type(value).__name__ == "Response":
        return REDACTED  # raw bodies, httpx/starlette responses: never rendered
    if hasattr(value, "model_dump"):  # pydantic models: their fields are keys like any other
        return redact_value(value.model_dump(mode="json"), depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return redact_value(dataclasses.asdict(value), depth + 1)
    return redact_text(str(value))


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask personal data and secrets in every key and value."""
    out: EventDict = {}
    for key, value in event_dict.items():
        if key in ("_record", "_from_structlog"):  # ProcessorFormatter's bookkeeping
            out[key] = value
            continue
        out[key] = _key_kind(key) or redact_value(value)
    return out


def configure(
    level: str = "INFO", *, json: bool = True, stream: TextIO | None = None, cache: bool = True
) -> None:
    """Set up logging once per process (worker, intake, API, stack): structlog's lines from
    ``level`` and the standard library's (Temporal's SDK, uvicorn) from WARNING both render
    through ``redact`` to ``stream`` (stderr)."""
    out = stream or sys.stderr
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    tail: list[Processor] = [structlog.processors.format_exc_info, redact, renderer]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            *tail,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(out)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.stdlib.ExtraAdder(),
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    unconfigure_stdlib()
    root = logging.getLogger()
    root.addHandler(handler)
    # A server configured with uvicorn's own log config (any one in the process) gives its loggers
    # handlers that print unredacted and stop propagation: every line comes here instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
    # The libraries' lines from WARNING up, as before they came through here: httpx's INFO line
    # per request (a URL with a query) and the SDK's chatter stay out.
    root.setLevel(max(logging.WARNING, logging.getLevelName(level)))


def unconfigure_stdlib() -> None:
    """Remove the handler ``configure`` put on the root logger (a second configure, tests)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
