"""Heartbeats: a killed worker's activity is retried within seconds, not after its timeout.

The workflows give every activity a short ``heartbeat_timeout`` (``workflows/outbound.py``,
``workflows/archive.py``). While an activity body runs, ``heartbeating`` calls
``activity.heartbeat()`` every ``INTERVAL_SECONDS`` from a background task, so the server knows the
attempt is alive however long it legitimately takes (a slow vendor, a retry-after wait, the archiver
waiting for its incident to close). When the worker dies (SIGKILL, OOM, a lost host) the heartbeats
stop: the server times the attempt out after ``heartbeat_timeout`` and retries it on a live worker,
instead of waiting out the 30 s start-to-close timeout (10 minutes for the archiver).

Heartbeats also carry cancellation: an activity whose step the workflow cancelled gets
``asyncio.CancelledError`` at its next ``await``. Outside an activity (a plain call in a test) both
helpers do nothing. The decorator also applies ``safe_errors.private_failures``: the activity
fails only with messages that hold no personal data. Use it under ``@activity.defn``::

    @activity.defn(name="notify.slack")
    @heartbeats
    async def slack(req: ActionRequest) -> ActionResult: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from temporalio import activity

from activities.safe_errors import private_failures

# The SDK sends at most one heartbeat per 0.8 x heartbeat_timeout, so beating every second keeps
# the server informed for any heartbeat_timeout of 2 s or more.
INTERVAL_SECONDS = 1.0

P = ParamSpec("P")
T = TypeVar("T")


@contextlib.asynccontextmanager
async def heartbeating(interval: float = INTERVAL_SECONDS) -> AsyncIterator[None]:
    """Heartbeat every ``interval`` seconds for as long as the block runs (no-op outside one,
    and in a local activity: the workflow task that runs it is what the server watches)."""
    if not activity.in_activity() or activity.info().is_local:
        yield
        return
    beat = asyncio.create_task(_beat(interval), name=f"heartbeat {activity.info().activity_type}")
    try:
        yield
    finally:
        # Suspended only in its sleep, so once cancelled it never beats again; not awaited, so a
        # cancellation of the activity itself is never swallowed here.
        beat.cancel()


async def _beat(interval: float) -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(interval)


def heartbeats(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Decorator: run the async activity ``fn`` inside ``heartbeating()``, its failures made
    private (``private_failures``). ``functools.wraps`` keeps its signature and type hints, which
    ``@activity.defn`` reads to decode arguments."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        async with heartbeating():
            return await fn(*args, **kwargs)

    return private_failures(run)
