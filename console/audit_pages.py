"""The auditor's pages (read-only): any incident they may see, open or closed, with its recorded
timeline, the audit chain's verdict, the replay verdict (today's code over its histories), and the
export bundle to take away. Everything comes from the records and the archive first, so an
incident past Temporal's retention is audited the same way.

The bundle is a zip: ``export.json`` (the API's export, exactly `incident audit export`'s, which
`incident audit replay` checks offline), ``timeline.csv`` (the human timeline, UTC),
``playbook.json`` (the pinned snapshot) with its content hash, ``chain.json`` (the chain's verdict)
and ``MANIFEST.json`` (each file's SHA-256).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import zipfile
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from temporalio.client import WorkflowHistory

from api import authz
from api.records_routes import export
from audit.bundle import tamper_failures
from audit.replay import load_document, replay
from audit.verify import verify
from console import board, session
from console.incident_view import EVERYTHING
from console.pages import refusal_page
from console.web import iso, page
from playbooks.loader import content_hash
from records.archive import decode_start
from records.timeline import entries_before
from workflows.models import TimelineEntry

router = APIRouter(prefix="/console")
CSV_COLUMNS = ("seq", "at_utc", "actor", "role", "kind", "step", "detail", "sla", "due_at_utc")


def timeline_csv(entries: list[TimelineEntry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        writer.writerow([e.seq, iso(e.at), e.actor, e.role or "", e.kind, e.step or "", e.detail,
                         e.sla or "", iso(e.due_at)])  # fmt: skip
    return out.getvalue()


def chain_verdict(incident_id: str, url: str) -> dict[str, Any]:
    try:
        v = verify(incident_id, url)
    except LookupError as err:
        return {"ok": False, "rows": 0, "broken": str(err)}
    return {"ok": v.ok, "rows": v.rows, "checkpoints": v.checkpoints, "head_hash": v.head_hash,
            "broken": v.broken.describe() if v.broken else None,
            "notes": list(v.notes)}  # fmt: skip


def snapshot_of(document: dict[str, Any]) -> dict[str, Any] | None:
    for item in document["histories"]:
        history = WorkflowHistory.from_json(item["workflow_id"], item["history"])
        start = decode_start(history.events[0])
        if start is not None:
            return {"playbook": start.playbook.model_dump(mode="json"),
                    "hash": content_hash(start.playbook), "pinned_hash": start.playbook_hash}  # fmt: skip
    return None


async def replay_verdict(document: dict[str, Any]) -> dict[str, Any]:
    """Today's code over the export's histories, and the export's audit section checked."""
    items = load_document(document, "console")
    try:
        failures = tamper_failures(items) + await replay(items)
    except Exception as err:  # noqa: BLE001 - said on the page, never a crash
        return {"ok": False, "runs": len(items), "failures": [f"{type(err).__name__}: {err}"]}
    return {"ok": not failures, "runs": len(items),
            "failures": [f"{f.kind}: {f.reason}" for f in failures]}  # fmt: skip


async def _export(request: Request, who: session.Viewer, incident_id: str) -> dict[str, Any]:
    response = await export(incident_id, request, who)
    return json.loads(bytes(response.body))  # type: ignore[no-any-return]


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
async def audit_home(request: Request, q: str = "") -> Response:
    who = session.viewer(request)
    try:
        authz.check(who, "export")
    except authz.Forbidden as err:
        return await refusal_page(request, who, err)
    url = request.app.state.settings.effective_database_url
    rows = await asyncio.to_thread(board.incidents, url, board.Filters(status="any"), who, 200)
    if q.strip():
        rows = [r for r in rows if q.strip().lower() in r.incident_id.lower()]
    return page(request, "audit.html", who, rows=rows, q=q)


@router.get("/audit/{incident_id}", response_class=HTMLResponse, include_in_schema=False)
async def audit_incident(request: Request, incident_id: str) -> Response:
    who = session.viewer(request)
    url = request.app.state.settings.effective_database_url
    try:
        document = await _export(request, who, incident_id)  # the role and visibility checks
    except Exception as err:  # noqa: BLE001 - the API's handler decides the status and words
        return await refusal_page(request, who, err)
    timeline = await asyncio.to_thread(entries_before, incident_id, EVERYTHING, url)
    chain = await asyncio.to_thread(chain_verdict, incident_id, url)
    verdict = await replay_verdict(document)
    snapshot = await asyncio.to_thread(snapshot_of, document)
    return page(request, "audit_incident.html", who, incident_id=incident_id, timeline=timeline,
                chain=chain, replay=verdict, manifest=document["manifest"],
                snapshot=snapshot)  # fmt: skip


@router.get("/audit/{incident_id}/bundle.zip", include_in_schema=False)
async def bundle(request: Request, incident_id: str) -> Response:
    who = session.viewer(request)
    url = request.app.state.settings.effective_database_url
    try:
        document = await _export(request, who, incident_id)
    except Exception as err:  # noqa: BLE001
        return await refusal_page(request, who, err)
    timeline = await asyncio.to_thread(entries_before, incident_id, EVERYTHING, url)
    files = {
        "export.json": json.dumps(document, indent=1),
        "timeline.csv": timeline_csv(timeline),
        "playbook.json": json.dumps(await asyncio.to_thread(snapshot_of, document), indent=1),
        "chain.json": json.dumps(await asyncio.to_thread(chain_verdict, incident_id, url)),
    }
    manifest = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("MANIFEST.json", json.dumps({"incident_id": incident_id, "sha256": manifest},
                                               indent=1))  # fmt: skip
    name = f"{incident_id}-audit-bundle.zip"
    return Response(buffer.getvalue(), media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip
