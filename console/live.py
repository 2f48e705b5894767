"""The live stream: server-sent events saying which incidents changed, so open pages refresh the
part that shows them (htmx's SSE extension; the pages also poll every 10 s as a fallback, and
refresh themselves without JavaScript).

The server looks at the records' projection (``incident_records.updated_at``, written with every
batch the workflow flushes) every ``CR_CONSOLE_POLL_SECONDS``: one indexed query for all the
streams of a process, whatever the number of open pages. Each change is sent as ``changed`` (the
lists) and ``changed-<id>`` (that incident's page), only for incidents the person may see. A
stream lasts at most ``MAX_SECONDS`` (the browser reconnects) and sends a comment every 15 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from console import board, session

router = APIRouter(prefix="/console")
MAX_SECONDS = 600
KEEPALIVE_SECONDS = 15


def frame(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


async def _stream(request: Request, who: session.Viewer) -> AsyncIterator[str]:
    settings = request.app.state.settings
    url = settings.effective_database_url
    since: datetime = await asyncio.to_thread(board.latest_change, url)
    started = last_sent = time.monotonic()
    yield "retry: 2000\n\n"
    while time.monotonic() - started < MAX_SECONDS:
        if await request.is_disconnected() or getattr(request.app.state, "stopping", False):
            return
        newest, ids = await asyncio.to_thread(board.changed_since, url, since, who)
        if ids:
            since = newest
            yield frame("changed", " ".join(ids))
            for incident_id in ids:
                yield frame(f"changed-{incident_id}", incident_id)
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent > KEEPALIVE_SECONDS:
            yield ": keepalive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(settings.console_poll_seconds)


@router.get("/events", include_in_schema=False)
async def events(request: Request) -> StreamingResponse:
    who = session.viewer(request)
    return StreamingResponse(
        _stream(request, who), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )  # fmt: skip
