"""HTTP plumbing shared by the integration activities: one pooled httpx client per event loop,
transport failures turned into retryable ``ApplicationError``s, and vendor delay hints.

Every vendor call goes through ``send`` so a timeout or a dropped connection is classified the same
way everywhere: retryable, and marked *ambiguous* when the request may already have reached the
vendor (the delivery ledger needs to know that; a refused connection is not ambiguous).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

# ApplicationError types whose request may have been processed by the vendor.
AMBIGUOUS_TYPES = frozenset({"Timeout", "ConnectionLost", "VendorServerError"})

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
