"""Record Temporal histories of every shipped playbook, down every branch, into tests/histories/.

    .venv/bin/python scripts/record_histories.py [--only NAME ...] [--out tests/histories]
                                                 [--tag TAG] [--local-calls]

Runs the real IncidentWorkflow on the time-skipping test server (a 365-day timer passes in
milliseconds) with stand-ins for Salesforce and notifications, the real records and on-call
activities on a throw-away SQLite file (its roster: the approver on call for every role a playbook
asks or pages), and the real ArchiveIncidentWorkflow. A driver acknowledges, approves or
rejects as each scenario requires (second approvers included), sends every awaited outside event,
skips time to the next timer, and closes. Each incident is exported with ``audit export``'s own
code (archive + Temporal, every continue-as-new run) to ``<playbook>--<scenario>.json`` (with
``--tag``, ``<playbook>--<tag>-<scenario>.json``, beside the older recordings). The first
scenario of each playbook continues-as-new every 60 events so multi-run chains are covered too.
Prints branch coverage per playbook and exits 1 if a reachable branch case was never taken.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The recordings are fixtures committed to the repository: they must replay anywhere, with no key,
# so they are recorded unsealed (the codec lets unsealed payloads through; tests/test_codec.py
# shows sealed histories replay as well where their keys are).
os.environ["CR_PAYLOAD_ENCRYPTION"] = "false"

from temporalio import activity  # noqa: E402
from temporalio.client import WorkflowHandle  # noqa: E402
from temporalio.common import RawValue  # noqa: E402
from temporalio.service import RPCError, RPCStatusCode  # noqa: E402
from temporalio.testing import TimeSkippingConfig, WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from connection import DATA_CONVERTER, exit_process  # noqa: E402
from playbooks.loader import LoadedPlaybook, list_playbooks  # noqa: E402
from playbooks.operations import salesforce_queue  # noqa: E402
from scripts import history_scenarios as plans  # noqa: E402
from settings import get_settings  # noqa: E402
from workflows.models import (  # noqa: E402
    ActionResult,
    ApprovalRequest,
    CommanderRequest,
    ExternalEvent,
    IncidentInput,
    IncidentStatus,
)
from workflows.names import SIGNAL_EVENT  # noqa: E402

IC, APPROVER, SECOND = "ic-alice", "approver-lena", "approver-sam"
MAX_ROUNDS = 400
CONTINUE_AS_NEW_AFTER = 60


@activity.defn(dynamic=True)
async def stand_in(args: Sequence[RawValue]) -> ActionResult:
    """Every integration succeeds at once: the histories are about the interpreter's decisions."""
    return ActionResult(detail=f"{activity.info().activity_type} ok (recording stand-in)")


async def _decide(handle: WorkflowHandle[Any, Any], approval: Any, want: str) -> None:
    from workflows.incident import IncidentWorkflow

    first = ApprovalRequest(
        step_id=approval.step_id,
        actor=APPROVER,
        role=approval.roles[0],
        reason=f"{want} (recorded)",
    )
    if want == "rejected":
        await handle.execute_update(IncidentWorkflow.reject, first)
        return
    result = await handle.execute_update(IncidentWorkflow.approve, first)
    if result.outcome == "awaiting_second_approver":
        second = first.model_copy(update={"actor": SECOND, "role": approval.second_roles[0]})
        await handle.execute_update(IncidentWorkflow.approve, second)


async def _status(handle: WorkflowHandle[Any, Any]) -> IncidentStatus:
    """The status query; a run just continued-as-new answers once its first task has run."""
    from workflows.incident import IncidentWorkflow

    for _ in range(100):
        try:
            return await handle.query(IncidentWorkflow.status)
        except RPCError as err:
            if err.status != RPCStatusCode.FAILED_PRECONDITION:
                raise
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{handle.id}: no workflow task ran within 5 s")


def _next_wake(status: IncidentStatus) -> timedelta:
    """Until the earliest timer, else half an hour (SLA warnings, breaches, wait timeouts)."""
    fires = [s.timer_fires_at for s in status.active_steps if s.timer_fires_at is not None]
    if fires:
        return max(timedelta(seconds=1), min(fires) - status.as_of + timedelta(seconds=1))
    return timedelta(minutes=30)


async def drive(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], lp: LoadedPlaybook,
                wanted: dict[str, str]) -> None:  # fmt: skip
    """Play the incident's people until the playbook completes or halts, then close it."""
    from workflows.incident import IncidentWorkflow

    steps = {s.id: s for s in lp.playbook.iter_steps()}
    await handle.execute_update(
        IncidentWorkflow.acknowledge, CommanderRequest(actor=IC, role="ic", reason="on it")
    )
    signalled: set[str] = set()
    for _ in range(MAX_ROUNDS):
        status = await _status(handle)
        if status.status == "playbook_complete" or not (
            status.active_steps or status.pending_approvals
        ):
            break
        acted = False
        for approval in status.pending_approvals:
            await _decide(handle, approval, wanted.get(approval.step_id, "approved"))
            acted = True
        for st in status.active_steps:
            step = steps[st.step_id]
            if step.kind == "wait_for" and st.step_id not in signalled:
                await handle.signal(SIGNAL_EVENT, ExternalEvent(name=step.event))
                signalled.add(st.step_id)
                acted = True
        if not acted:
            try:  # the server's time skipping is experimental: never wait on it for long
                await asyncio.wait_for(env.fast_forward(handle, _next_wake(status)), 20)
            except TimeoutError:
                print(f"  {handle.id}: fast-forward still pending after 20 s", flush=True)
    else:
        raise RuntimeError(f"{handle.id}: no end after {MAX_ROUNDS} rounds")
    # confirm: a linked incident the playbook opened (a stand-in here) may still be open
    close = CommanderRequest(actor=IC, role="ic", reason="resolved (recorded)", confirm=True)
    await handle.execute_update(IncidentWorkflow.close, close)
    await handle.result()


LOCAL_CALLS = [False]  # --local-calls: the incidents' own calls as local activities (issue 11)


async def record(env: WorkflowEnvironment, queue: str, lp: LoadedPlaybook,
                 scenario: plans.Scenario, attempt: int = 1) -> dict[str, Any]:  # fmt: skip
    """Run one scenario to close, wait for its archive, and export it like ``audit export``."""
    from audit.export import export_incident
    from workflows.incident import IncidentWorkflow
    from workflows.names import archive_workflow_id, workflow_id_for

    pb = lp.playbook
    severity = scenario.facts.get("severity", pb.default_severity)
    incident_id = f"rec-{pb.name}-{scenario.name}" + (f"-a{attempt}" if attempt > 1 else "")
    inp = IncidentInput(
        incident_id=incident_id,
        playbook=pb,
        playbook_hash=lp.content_hash,
        severity=severity if severity in ("sev0", "sev1", "sev2", "sev3") else pb.default_severity,
        summary=f"recorded scenario {scenario.name} of {pb.name}",
        fields=plans.concrete_fields(pb, scenario.facts, datetime.now(UTC)),
        opened_by=IC,
        continue_as_new_after_events=scenario.continue_as_new_after,
        # As the front door opens it on a cached worker (the recording worker keeps the SDK's
        # cache), with the local-calls switch of --local-calls.
        **(get_settings().incident_options() | {"local_calls": LOCAL_CALLS[0]}),
    )
    handle = await env.client.start_workflow(
        IncidentWorkflow.run, inp, id=workflow_id_for(incident_id), task_queue=queue
    )
    await drive(env, handle, lp, plans.decisions(scenario.facts))
    last_run = (await handle.describe()).run_id
    archive = env.client.get_workflow_handle(archive_workflow_id(handle.id, last_run))
    await archive.result()
    document = await export_incident(incident_id, env.client)
    # The fixtures are histories only: the audit section is signed by this throwaway recording's
    # audit key, which no other installation holds, so it would read as tampered anywhere else.
    document.pop("audit", None)
    return document


async def record_with_retries(env: WorkflowEnvironment, queue: str, lp: LoadedPlaybook,
                              scenario: plans.Scenario) -> dict[str, Any]:  # fmt: skip
    """The dev server's time skipping is experimental and now and then stalls a workflow: give
    each scenario two minutes, then record it again under a fresh incident id."""
    for attempt in range(1, 4):
        try:
            return await asyncio.wait_for(record(env, queue, lp, scenario, attempt), 120)
        except TimeoutError:
            print(f"  {lp.playbook.name} {scenario.name}: stalled, recording again", flush=True)
    raise RuntimeError(f"{lp.playbook.name} {scenario.name}: stalled three times")


def covered_by(document: dict[str, Any]) -> set[plans.Target]:
    """The branch cases this recorded incident took, read from its own history."""
    from audit.replay import load_document, rebuild

    items = load_document(document, "recording")
    case = rebuild(items[0].incident_id, [i.history for i in items])
    return {
        (e.step or "", plans.case_of(e.detail)) for e in case.timeline if e.kind == "branch_taken"
    }


async def record_playbook(env: WorkflowEnvironment, queue: str, lp: LoadedPlaybook,
                          out: Path, tag: str = "") -> bool:  # fmt: skip
    """Rounds of planned scenarios until every reachable case is taken or a round adds nothing.

    Packing is optimistic (a rejection or ``goto`` can end a path early), so cases missed in one
    round are planned again, on their own terms, in the next.
    """
    reachable = {t for t, need in plans.targets(lp.playbook).items() if need is not None}
    covered: set[plans.Target] = set()
    number = 0
    for _ in range(4):
        scenarios = plans.plan(lp.playbook, covered) or ([] if number else [plans.Scenario("s")])
        before = len(covered)
        for scenario in scenarios:
            number += 1
            scenario.name = f"{tag}-s{number}" if tag else f"s{number}"
            if number == 1:
                scenario.continue_as_new_after = CONTINUE_AS_NEW_AFTER
            document = await record_with_retries(env, queue, lp, scenario)
            path = out / f"{lp.playbook.name}--{scenario.name}.json"
            path.write_text(json.dumps(document, separators=(",", ":")) + "\n")
            taken = covered_by(document)
            covered |= taken
            print(f"  {path.name}: {len(document['histories'])} run(s), "
                  f"cases {sorted(taken)}", flush=True)  # fmt: skip
        if not scenarios or len(covered) == before:
            break
    missing = sorted(reachable - covered)
    print(f"{lp.playbook.name}: {len(reachable & covered)}/{len(reachable)} branch cases taken"
          + (f"; never taken: {missing}" if missing else ""), flush=True)  # fmt: skip
    return not missing


def seed_roster(playbooks: Sequence[LoadedPlaybook]) -> None:
    """Every role the playbooks ask to decide or page (``<role>-oncall``) rotates between the two
    approvers, the first on call for ten years: recorded requests and pages name a person."""
    from playbooks.schema import ApprovalStep
    from roster import service
    from workflows.on_call import paged_role

    roles: set[str] = set()
    for lp in playbooks:
        pb = lp.playbook
        slas = [pb.sla.acknowledge, pb.sla.resolve, *(s.sla for s in pb.iter_steps())]
        policies = [pb.escalation_policy, *(e.page for sla in slas if sla for e in sla.on_breach)]
        roles.update(r for p in policies if p and (r := paged_role(p)) is not None)
        roles.update(r for s in pb.iter_steps() if isinstance(s, ApprovalStep) for r in s.roles)
    for handle in (APPROVER, SECOND):
        service.add_person(handle, display_name=handle, roles=sorted(roles), actor="recorder")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for role in sorted(roles):
        service.add_rotation(role, name="recorded", people=[APPROVER, SECOND],
                             shift=timedelta(days=3650), start=start, actor="recorder")  # fmt: skip


async def main(only: list[str], out: Path, tag: str) -> int:
    from activities import on_call, records
    from stack.devserver import search_attribute_keys, temporal_binary
    from workflows.archive import ArchiveIncidentWorkflow
    from workflows.incident import IncidentWorkflow

    out.mkdir(parents=True, exist_ok=True)
    env = await WorkflowEnvironment.start_time_skipping_v2(
        ts_config=TimeSkippingConfig(enabled=False),
        dev_server_existing_path=str(temporal_binary()),
        data_converter=DATA_CONVERTER,
        search_attributes=search_attribute_keys(),
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
        ],
    )
    queue, ok = "record-histories", True
    async with (
        Worker(env.client, task_queue=queue, workflows=[IncidentWorkflow, ArchiveIncidentWorkflow],
               activities=[*records.ACTIVITIES, *on_call.ACTIVITIES, stand_in]),  # type: ignore[list-item]
        Worker(env.client, task_queue=salesforce_queue(queue), activities=[stand_in]),
    ):  # fmt: skip
        chosen = [lp for lp in list_playbooks() if not only or lp.playbook.name in only]
        seed_roster(chosen)
        for lp in chosen:
            ok = await record_playbook(env, queue, lp, out, tag) and ok
    await env.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=[], help="playbook names (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "histories")
    parser.add_argument("--tag", default="", help="names new files <playbook>--<tag>-sN.json")
    parser.add_argument("--local-calls", action="store_true",
                        help="incidents make their own calls as local activities")  # fmt: skip
    args = parser.parse_args()
    LOCAL_CALLS[0] = args.local_calls
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CR_DATABASE_URL"] = f"sqlite:///{tmp}/records.db"
        os.environ["CR_DATA_DIR"] = tmp  # its audit key and checkpoints too
        get_settings.cache_clear()  # read at import (the data converter): read these instead
        code = asyncio.run(main(args.only, args.out, args.tag))
    exit_process(code)
