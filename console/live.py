"""The live stream: server-sent events saying which incidents changed, so open pages refresh the
part that shows them (htmx's SSE extension; the pages also poll every 10 s as a fallback, and
refresh themselves without JavaScript).

One watcher per process looks at the records' projection (``incident_records.updated_at``,
written with every batch the workflow flushes) every ``CR_CONSOLE_POLL_SECONDS``: one indexed
query however many pages are open, and none when no page is. It hands each change to every open
stream, which sends it only if its person may see the incident: ``changed`` (the lists) and
``changed-<id>`` (that incident's page). A stream lasts at most ``MAX_SECONDS`` (the browser
reconnects) and sends a comment every 15 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from api import authz
from console import board, session

router = APIRouter(prefix="/console")
MAX_SECONDS = 600
KEEPALIVE_SECONDS = 15
Change = list[tuple[str, str]]  # (incident id, playbook)


class Watcher:
    """The process's one look at the records, shared by every open stream."""

    def __init__(self, url: str, every: float) -> None:
        self.url, self.every = url, every
        self.streams: set[asyncio.Queue[Change]] = set()
        self.task: asyncio.Task[None] | None = None

    def subscribe(self) -> asyncio.Queue[Change]:
        queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=100)
        self.streams.add(queue)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._watch())
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Change]) -> None:
        self.streams.discard(queue)

    async def _watch(self) -> None:
        since: datetime = await asyncio.to_thread(board.latest_change, self.url)
        while self.streams:
            await asyncio.sleep(self.every)
            since, changed = await asyncio.to_thread(board.changed_since, self.url, since)
            for queue in list(self.streams) if changed else []:
                with contextlib.suppress(asyncio.QueueFull):  # a stuck page misses nothing
                    queue.put_nowait(changed)  # it cannot read: its 10 s poll still runs


def watcher(request: Request) -> Watcher:
    found: Watcher | None = getattr(request.app.state, "console_watcher", None)
    if found is None:
        settings = request.app.state.settings
        found = Watcher(settings.effective_database_url, settings.console_poll_seconds)
        request.app.state.console_watcher = found
    return found


def frame(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


async def _stream(request: Request, who: authz.Caller) -> AsyncIterator[str]:
    shared = watcher(request)
    queue = shared.subscribe()
    started = time.monotonic()
    try:
        yield "retry: 2000\n\n"
        while time.monotonic() - started < MAX_SECONDS:
            if await request.is_disconnected():
                return
            try:
                changed = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            ids = [i for i, playbook in changed if authz.may_see(who, playbook)]
            if ids:
                yield frame("changed", " ".join(ids))
                for incident_id in ids:
                    yield frame(f"changed-{incident_id}", incident_id)
    finally:
        shared.unsubscribe(queue)


@router.get("/events", include_in_schema=False)
async def events(request: Request) -> StreamingResponse:
    who = session.viewer(request)
    return StreamingResponse(
        _stream(request, who), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )  # fmt: skip
