"""Export an incident's history for auditors: every run, from the archive and from Temporal.

Archived runs come from the records database (written at close by ``records.archive_history``), so an
export still works once the namespace's retention has deleted the history; Temporal adds what it still
has, and the running tail of an open incident.

An export is sealed (``manifest.encryption``: ``sealed``): the histories' payloads as the codec sealed
them, the audit rows' personal columns as stored; ``replay`` opens them where the keys are, and
nowhere once the incident is purged. ``decrypt`` opens both for an authorised operator
(``decrypted``): each run's manifest then hashes the opened history and keeps the sealed one's hash
as ``sealed_history_sha256``. A purged incident is not exported (``IncidentPurged``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WorkflowHistory

from audit.bundle import audit_section
from audit.decrypt import open_history
from audit.replay import EXPORT_FORMAT, Loaded
from records.archive import (
    archived_runs,
    fetch_chain,
    fetch_run,
    history_of,
    history_sha256,
    run_manifest,
)
from records.purge import check_not_purged, purged_ids
from workflows.names import incident_id_of, workflow_id_for

CLOSED_QUERY = "WorkflowType = 'IncidentWorkflow' AND ExecutionStatus != 'Running'"


def _started(history: WorkflowHistory) -> datetime:
    return history.events[0].event_time.ToDatetime(tzinfo=UTC)


async def export_incident(
    incident_id: str, client: Client | None, *, decrypt: bool = False
) -> dict[str, Any]:
    """The incident's history (every run) as SDK history JSON, a manifest, and its audit rows
    with the signed checkpoints covering them (``audit/bundle.py``: checked offline by replay);
    sealed, or opened with ``decrypt``.

    Archived runs come from the records database; Temporal adds what it still has (and the
    running tail of an open incident). Raises LookupError when neither knows the incident, and
    ``IncidentPurged`` (a LookupError: when, by whom, why) for a purged one.
    """
    check_not_purged(incident_id)
    workflow_id = workflow_id_for(incident_id)
    runs: dict[str, WorkflowHistory] = {r.run_id: history_of(r) for r in archived_runs(incident_id)}
    sources, missing = (["archive"] if runs else []), []
    if client is not None:
        try:
            chain = await fetch_chain(client, workflow_id, None, known={})
        except LookupError:
            chain = None
        if chain is not None:
            runs.update({h.run_id: h for h in chain.histories})
            sources.append("temporal")
            missing = [run for run in chain.missing if run not in runs]
    if not runs:
        raise LookupError(f"no history of incident {incident_id} in Temporal or in the archive")
    ordered = sorted(runs.values(), key=_started)
    now = datetime.now(UTC)
    manifests = [run_manifest(incident_id, h, now) for h in ordered]
    if decrypt:
        for manifest in manifests:
            manifest["sealed_history_sha256"] = manifest["history_sha256"]
        ordered = [open_history(h) for h in ordered]
        for manifest, history in zip(manifests, ordered, strict=True):
            manifest["history_sha256"] = history_sha256(history)
    return {
        "manifest": {
            "format": EXPORT_FORMAT,
            "incident_id": incident_id,
            "workflow_id": workflow_id,
            "playbook": manifests[0]["playbook"],
            "playbook_version": manifests[0]["playbook_version"],
            "playbook_hash": manifests[0]["playbook_hash"],
            "exported_at": now.isoformat(),
            "source": "+".join(sources),
            "runs": manifests,
            "missing_runs": missing,
            "encryption": "decrypted" if decrypt else "sealed",
        },
        "histories": [
            {"workflow_id": h.workflow_id, "run_id": h.run_id, "history": h.to_json_dict()}
            for h in ordered
        ],
        "audit": audit_section(incident_id, decrypt=decrypt),
    }


async def closed_items(client: Client | None) -> list[Loaded]:
    """Every archived run, plus closed incident runs Temporal still has that are not archived;
    none of a purged incident (nothing of it can be read)."""
    gone = purged_ids()
    items = {
        (r.workflow_id, r.run_id): Loaded(r.incident_id, history_of(r), "archive")
        for r in archived_runs()
        if r.incident_id not in gone
    }
    if client is not None:
        async for wf in client.list_workflows(CLOSED_QUERY):
            if (incident_id_of(wf.id) or wf.id) in gone:
                continue
            if (wf.id, wf.run_id) not in items:
                history = await fetch_run(client, wf.id, wf.run_id)
                if history is not None:
                    incident = incident_id_of(wf.id) or wf.id
                    items[(wf.id, wf.run_id)] = Loaded(incident, history, "temporal")
    return list(items.values())
