"""Helpers for engine tests: build a playbook and an incident input from plain dicts."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import WorkflowHandle

from playbooks.schema import Playbook
from workflows.incident import IncidentWorkflow, workflow_id_for
from workflows.models import ApprovalRequest, CommanderRequest, IncidentInput


def playbook(steps: list[dict[str, Any]], **extra: Any) -> Playbook:
    return Playbook.model_validate(
        {"name": "test-playbook", "version": 1, "title": "Test", "steps": steps, **extra}
    )


def incident_input(pb: Playbook, **extra: Any) -> IncidentInput:
    values: dict[str, Any] = {
        "incident_id": uuid.uuid4().hex[:10],
        "playbook": pb,
        "playbook_hash": "sha256:test",
        "severity": "sev1",
        "summary": "test incident",
        "opened_by": "alice",
    }
    values.update(extra)
    return IncidentInput(**values)


async def start(client: Any, task_queue: str, inp: IncidentInput) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        IncidentWorkflow.run, inp, id=workflow_id_for(inp.incident_id), task_queue=task_queue
    )


def approval(
    step: str, actor: str = "lena", role: str = "legal", reason: str = "ok"
) -> ApprovalRequest:
    return ApprovalRequest(step_id=step, actor=actor, role=role, reason=reason)


def commander(actor: str = "alice", **extra: Any) -> CommanderRequest:
    return CommanderRequest(actor=actor, **extra)


def kinds(timeline: list[Any]) -> list[str]:
    return [e.kind for e in timeline]


async def wait_for_status(
    handle: WorkflowHandle[Any, Any], predicate: Any, timeout: float = 20
) -> Any:
    """Poll the status query until ``predicate(status)`` holds (a condition, never a fixed sleep)."""
    import asyncio

    async def poll() -> Any:
        while True:
            status = await handle.query(IncidentWorkflow.status)
            if predicate(status):
                return status
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), timeout)


def awaiting(step: str) -> Any:
    return lambda s: any(a.step_id == step for a in s.pending_approvals)
