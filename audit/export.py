"""Export an incident's history for auditors: every run, from the archive and from Temporal.

Archived runs come from the records database (written at close by ``records.archive_history``), so an
export still works once the namespace's retention has deleted the history; Temporal adds what it still
has, and the running tail of an open incident.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WorkflowHistory

from audit.bundle import audit_section
from audit.replay import EXPORT_FORMAT, Loaded
from records.archive import archived_runs, fetch_chain, fetch_run, history_of, run_manifest
from workflows.names import incident_id_of, workflow_id_for

CLOSED_QUERY = "WorkflowType = 'IncidentWorkflow' AND ExecutionStatus != 'Running'"


def _started(history: WorkflowHistory) -> datetime:
    return history.events[0].event_time.ToDatetime(tzinfo=UTC)


async def export_incident(incident_id: str, client: Client | None) -> dict[str, Any]:
    """The incident's history (every run) as SDK history JSON, a manifest, and its audit rows
    with the signed checkpoints covering them (``audit/bundle.py``: checked offline by replay).

    Archived runs come from the records database; Temporal adds what it still has (and the
    running tail of an open incident). Raises LookupError when neither knows the incident.
    """
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
        },
        "histories": [
            {"workflow_id": h.workflow_id, "run_id": h.run_id, "history": h.to_json_dict()}
            for h in ordered
        ],
        "audit": audit_section(incident_id),
    }


async def closed_items(client: Client | None) -> list[Loaded]:
    """Every archived run, plus closed incident runs Temporal still has that are not archived."""
    items = {
        (r.workflow_id, r.run_id): Loaded(r.incident_id, history_of(r), "archive")
        for r in archived_runs()
    }
    if client is not None:
        async for wf in client.list_workflows(CLOSED_QUERY):
            if (wf.id, wf.run_id) not in items:
                history = await fetch_run(client, wf.id, wf.run_id)
                if history is not None:
                    incident = incident_id_of(wf.id) or wf.id
                    items[(wf.id, wf.run_id)] = Loaded(incident, history, "temporal")
    return list(items.values())
