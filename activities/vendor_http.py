"""HTTP plumbing shared by the integration activities: one pooled httpx client per event loop,
transport failures turned into retryable ``ApplicationError``s, and vendor delay hints.

Every vendor call goes through ``send`` so a timeout or a dropped connection is classified the same
way everywhere: retryable, and marked *ambiguous* when the request may already have reached the
vendor (the delivery ledger needs to know that; a refused connection is not ambiguous).

A vendor's error text never goes into an error: it can echo what was sent (Twilio's "The 'To'
number +1555... is not a valid phone number", a Salesforce field's value) and an activity's error
message ends up in the incident's timeline, Temporal's history and the worker's log. ``described``
builds the message from the error type, the HTTP status and the vendor's machine-readable code
(``TwilioError 400 (code 21211)``); the text stays at the vendor.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections.abc import Iterable
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

# ApplicationError types whose request may have been processed by the vendor.
AMBIGUOUS_TYPES = frozenset({"Timeout", "ConnectionLost", "VendorServerError"})
# A vendor's error code: an identifier (channel_not_found, INVALID_FIELD), a number (21211) or an
# SMTP enhanced status (5.1.1). Anything else is free text and is not kept.
_CODE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}|\d{1,6}|[245]\.\d{1,3}\.\d{1,3}")
_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}(?:(?:\.|\[)[A-Za-z0-9_]{1,64}\]?){0,6}")

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def http_client() -> httpx.AsyncClient:
    """The pooled client of the running event loop (a worker has one loop; tests may have more)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(follow_redirects=False)
        _clients[loop] = client
    return client


async def close_http_client() -> None:
    """Close this loop's client (worker shutdown, test teardown)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


async def send(
    method: str, url: str, *, vendor: str, timeout: float, **kwargs: Any
) -> httpx.Response:
    """One HTTP request; transport failures become retryable ApplicationErrors naming the vendor."""
    try:
        return await http_client().request(method, url, timeout=timeout, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise retryable(
            f"{vendor}: cannot connect ({type(exc).__name__})", "ConnectFailed"
        ) from exc
    except httpx.TimeoutException as exc:
        raise retryable(f"{vendor}: timed out ({type(exc).__name__})", "Timeout") from exc
    except httpx.TransportError as exc:
        raise retryable(
            f"{vendor}: connection lost ({type(exc).__name__})", "ConnectionLost"
        ) from exc


def retryable(message: str, type: str, delay: float | None = None) -> ApplicationError:
    """A failure Temporal should retry; ``delay`` overrides the backoff when the vendor gave one."""
    next_delay = timedelta(seconds=max(delay, 0.0)) if delay is not None else None
    return ApplicationError(message, type=type, next_retry_delay=next_delay)


def permanent(message: str, type: str) -> ApplicationError:
    """A failure no retry can fix (validation, missing record, configuration)."""
    return ApplicationError(message, type=type, non_retryable=True)


def safe_code(value: object) -> str | None:
    """``value`` when it is a vendor's machine-readable error code, else None (free text)."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text if _CODE_RE.fullmatch(text) else None


def safe_fields(values: Iterable[object]) -> list[str]:
    """The field names (``personalizations.0.to``, ``Status``) among ``values``, at most five."""
    names = [str(v) for v in values if v is not None and _FIELD_RE.fullmatch(str(v))]
    return list(dict.fromkeys(names))[:5]


def described(
    type: str,
    status: int | str,
    *,
    where: str | None = None,
    code: object = None,
    fields: Iterable[object] = (),
) -> str:
    """The message of a vendor failure: its type, status, the call and the vendor's code and
    field names, never the vendor's text: ``TwilioError 400 (code 21211)``."""
    extras = []
    if (safe := safe_code(code)) is not None:
        extras.append(f"code {safe}")
    if names := safe_fields(fields):
        extras.append("fields " + ", ".join(names))
    text = f"{type} {status}" + (f" {where}" if where else "")
    return text + (f" ({'; '.join(extras)})" if extras else "")


def is_ambiguous(exc: BaseException) -> bool:
    """True when a failed request may still have been processed (keep the ledger claim)."""
    return isinstance(exc, ApplicationError) and exc.type in AMBIGUOUS_TYPES


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from ``Retry-After`` (delta-seconds, fractional allowed, or an HTTP date)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None
