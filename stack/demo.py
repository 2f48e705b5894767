"""`make demo`: one critical incident end to end on a fresh embedded stack, then its timeline.

A fresh in-memory Temporal dev server, the sandbox emulators and the real workers start in this
process; an emergency-disclosure incident is opened, acknowledged, and driven by ``drive``: every
pending approval is decided by someone holding the right role, every awaited event is sent, and the
incident is closed once only long legal timers remain. Then the timeline and what the emulators
received (the Salesforce case and comments, pages, Slack messages) are printed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from connection import DATA_CONVERTER, exit_process
from incidents import actions
from incidents.render import print_timeline
from incidents.service import open_incident
from playbooks.loader import load_playbook
from playbooks.schema import Playbook, WaitForStep
from sandbox.server import SandboxServer, free_port
from settings import Settings, get_settings
from stack.devserver import search_attribute_keys, temporal_binary
from worker import run_workers
from workflows.incident import IncidentWorkflow
from workflows.models import ApprovalRequest, CommanderRequest, ExternalEvent, IncidentStatus
from workflows.names import SIGNAL_EVENT

DEMO_PLAYBOOK = "emergency-disclosure"
COMMANDER = "casey.ic"


async def drive(handle: WorkflowHandle[Any, Any], playbook: Playbook, timeout: float = 60) -> None:
    """Decide approvals as the right roles and send awaited events until only timers remain."""
    steps = {s.id: s for s in playbook.iter_steps()}
    sent: set[str] = set()
    async with asyncio.timeout(timeout):
        while True:
            st: IncidentStatus = await handle.query(IncidentWorkflow.status)
            if st.status in ("playbook_complete", "closed"):
                return
            for pending in st.pending_approvals:
                roles = pending.second_roles if pending.decisions else pending.roles
                role = (roles or ["legal"])[0]
                actor = f"demo.{role}" if not pending.decisions else f"demo.{role}.2"
                await handle.execute_update(
                    IncidentWorkflow.approve,
                    ApprovalRequest(
                        step_id=pending.step_id,
                        actor=actor,
                        role=role,
                        reason=f"demo: {role} reviewed {pending.step_id}",
                    ),
                )
            for active in st.active_steps:
                step = steps[active.step_id]
                if isinstance(step, WaitForStep) and active.step_id not in sent:
                    sent.add(active.step_id)
                    await handle.signal(
                        SIGNAL_EVENT, ExternalEvent(name=step.event, actor="demo.lers")
                    )
            waiting_only_on_timers = (
                st.active_steps
                and all(a.kind in ("timer", "parallel", "branch") for a in st.active_steps)
                and not st.pending_approvals
            )
            if waiting_only_on_timers:
                return
            await asyncio.sleep(0.1)


async def run_demo(workdir: Path) -> int:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=DATA_CONVERTER,
        search_attributes=search_attribute_keys(),
        dev_server_log_level="error",
    )
    # Activities read the process settings, so the demo's stack is configured through them.
    os.environ.update(
        CR_TASK_QUEUE="demo",
        CR_SANDBOX_PORT=str(free_port()),
        CR_DATA_DIR=str(workdir),
        CR_DATABASE_URL=f"sqlite:///{workdir / 'records.db'}",
    )
    get_settings.cache_clear()
    settings = get_settings()
    sandbox = SandboxServer(settings, settings.sandbox_host, settings.sandbox_port)
    sandbox.start_in_thread()
    stop = asyncio.Event()
    workers = asyncio.create_task(run_workers(settings, stop, env.client))
    try:
        loaded = load_playbook(DEMO_PLAYBOOK, settings.playbooks_dir)
        opened = await open_incident(
            env.client,
            playbook=DEMO_PLAYBOOK,
            severity="sev0",
            settings=settings,
            summary="Police report a credible threat against a shopper; location needed now",
            fields={
                "requester_agency": "Springfield PD, Det. Ruiz",
                "requester_email": "ruiz@springfield.gov",
                "account_id": "shopper-4411",
                "jurisdiction": "us",
            },
            incident_id="DEMO-0001",
            opened_by=COMMANDER,
        )
        print(f"opened {opened.incident_id} ({DEMO_PLAYBOOK} {opened.playbook_hash[:19]})")
        handle = actions.handle(env.client, opened.incident_id)
        await handle.execute_update(IncidentWorkflow.acknowledge, CommanderRequest(actor=COMMANDER))
        await drive(handle, loaded.playbook)
        await handle.execute_update(
            IncidentWorkflow.close,
            CommanderRequest(
                actor=COMMANDER,
                reason="Data produced under §2702(b)(8); user notice timer left to Legal",
                # Its linked preservation incident (DEMO-0001--open-preservation) stays open on
                # its own, holding the data: closing the disclosure with it open is confirmed.
                confirm=True,
            ),
        )
        outcome = await handle.result()
        print_timeline(await handle.query(IncidentWorkflow.timeline))
        print(
            f"outcome: {outcome.status}, SLA breached: {outcome.sla_breached}, "
            f"time to acknowledge: {outcome.time_to_acknowledge}"
        )
        _print_emulators(settings)
        return 0
    finally:
        stop.set()
        await asyncio.gather(workers, return_exceptions=True)
        sandbox.stop()
        await env.shutdown()


def _print_emulators(settings: Settings) -> None:
    state = httpx.get(f"{settings.sandbox_url}/_sandbox/state", timeout=10).json()
    records = state["salesforce"]["records"]
    for case in records.get("Case", {}).values():
        print(
            f"Salesforce Case {case.get('CaseNumber')}: {case.get('Subject')} "
            f"[{case.get('Status')}/{case.get('Priority')}] Incident_Id__c={case.get('Incident_Id__c')}"
        )
    for comment in records.get("CaseComment", {}).values():
        print(f"  comment: {str(comment.get('CommentBody', ''))[:90]}")
    for task in records.get("Task", {}).values():
        print(f"  task: {task.get('Subject')}")
    print(
        f"PagerDuty alerts: {len(state['pagerduty']['alerts'])}, "
        f"Slack messages: {len(state['slack']['messages'])}"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cr-demo-") as workdir:
        try:
            code = asyncio.run(run_demo(Path(workdir)))
        except Exception as err:  # noqa: BLE001 - the demo reports, never tracebacks
            print(f"demo failed: {err!r}", file=sys.stderr)
            code = 1
    exit_process(code)


if __name__ == "__main__":
    main()
