"""The people of a chaos run (``bench/chaos.py``): commanders and Legal driving each incident to
close as the CLI would, and someone with raw access to Temporal sending malformed messages.

``drive`` opens an incident through the front door (``incidents.service``), acknowledges it, decides
each pending approval with the role it asks for (a second person for a second approval; some
rejected), sends each awaited event, and closes once only long legal timers remain; every call is
retried through worker kills and server restarts, and Updates carry stable ids so a retry after a
lost answer is the same Update. ``malformed_stream`` sends the payloads of issue 8 item 1 with a raw
client (``CASES``).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution
from temporalio.api.enums.v1 import UpdateWorkflowExecutionLifecycleStage as Stage
from temporalio.api.update.v1 import Input, Meta, Request, WaitPolicy
from temporalio.api.workflowservice.v1 import (
    SignalWorkflowExecutionRequest,
    UpdateWorkflowExecutionRequest,
)
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError, RPCStatusCode

from bench.chaos_report import Incident
from connection import DATA_CONVERTER
from incidents.service import open_incident
from playbooks.schema import Playbook, WaitForStep
from settings import Settings
from workflows.incident import IncidentWorkflow
from workflows.models import ApprovalRequest, CommanderRequest, ExternalEvent
from workflows.names import SIGNAL_APPROVE, SIGNAL_EVENT, workflow_id_for

COMMANDER = "chaos.ic"
T = TypeVar("T")
_TRANSIENT = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED}


# --- Commanders and Legal -------------------------------------------------------------------


async def retrying(
    inc: Incident, what: str, call: Callable[[], Awaitable[T]], deadline: float
) -> T:
    """Retry through worker kills and server restarts; refusals (Update failures) pass through."""
    while True:
        try:
            async with asyncio.timeout(12):
                return await call()
        except WorkflowUpdateFailedError:
            raise
        except (RPCError, TemporalError, TimeoutError, RuntimeError) as err:
            inc.error = f"{what}: {type(err).__name__}: {err}".splitlines()[0][:300]
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def fields_for(pb: Playbook, iid: str, n: int, rng: random.Random) -> dict[str, str]:
    out = {}
    for name, spec in pb.fields.items():
        kind = str(getattr(spec, "type", "text"))
        if not spec.required and rng.random() < 0.3:
            continue
        if spec.choices:
            out[name] = rng.choice(spec.choices)
        elif kind == "email" or "email" in name:
            out[name] = f"{iid.lower()}@example.gov"
        elif kind == "phone" or "phone" in name:
            out[name] = f"+1555{n:07d}"
        elif kind == "datetime" or "date" in name or "expiry" in name:
            out[name] = "2031-01-15"
        else:
            out[name] = f"{name}-{n}"
    return out


async def drive(
    client: Client, settings: Settings, inc: Incident, rng: random.Random, timeout: float
) -> None:
    """Open, acknowledge, decide, send events, close: as people would, retrying through chaos."""
    await asyncio.sleep(inc.start_at)
    deadline = time.monotonic() + timeout
    handle = client.get_workflow_handle(workflow_id_for(inc.iid))
    steps = {s.id: s for s in inc.playbook.iter_steps()}
    rpc = timedelta(seconds=8)

    async def update(name: str, arg: Any, uid: str) -> None:
        try:  # a stable id: a retry after a lost answer is the same Update, never a second one
            await retrying(inc, name, lambda: handle.execute_update(name, arg, id=uid, rpc_timeout=rpc),
                           deadline)  # fmt: skip
        except WorkflowUpdateFailedError as err:  # refused (stale, already decided): move on
            inc.error = f"{name} refused: {err.cause}"

    await retrying(inc, "open", lambda: open_incident(
        client, playbook=inc.playbook.name, severity=None, summary=f"Chaos {inc.iid}",
        fields=inc.fields, incident_id=inc.iid, opened_by=COMMANDER, settings=settings),
        deadline)  # fmt: skip
    inc.phase, opened_at = "driving", time.monotonic()
    await update("acknowledge", CommanderRequest(actor=COMMANDER), "chaos-ack")
    sent: set[str] = set()
    idle = 0
    while True:
        await asyncio.sleep(rng.uniform(0.3, 1.2))
        st = await retrying(inc, "status", lambda: handle.query(IncidentWorkflow.status, rpc_timeout=rpc),
                            deadline)  # fmt: skip
        if st.status in ("playbook_complete", "closed"):
            break
        for p in st.pending_approvals:
            roles = (p.second_roles if p.decisions else p.roles) or ["legal"]
            verb = "reject" if rng.random() < 0.15 else "approve"
            actor = f"chaos.{roles[0]}" + (".2" if p.decisions else "")
            request = ApprovalRequest(step_id=p.step_id, actor=actor, role=roles[0],
                                      reason=f"chaos: {roles[0]} reviewed")  # fmt: skip
            await update(verb, request, f"chaos-{p.step_id}-{len(p.decisions)}")
        for a in st.active_steps:
            step = steps.get(a.step_id)
            if isinstance(step, WaitForStep) and a.step_id not in sent:
                event = ExternalEvent(name=step.event, actor=f"chaos.{step.owner or 'cr'}")
                await retrying(inc, f"event {step.event}", lambda e=event: handle.signal(  # type: ignore[misc]
                    SIGNAL_EVENT, e, rpc_timeout=rpc), deadline)  # fmt: skip
                sent.add(a.step_id)
        timers_only = all(a.kind in ("timer", "parallel", "branch") for a in st.active_steps)
        idle = idle + 1 if timers_only and not st.pending_approvals else 0
        if idle >= 2:  # only long legal timers left (or nothing a person can do): close
            break
        if time.monotonic() > deadline:
            waiting = ", ".join(f"{a.step_id} ({a.kind})" for a in st.active_steps)
            inc.error = f"not done {timeout:.0f} s after opening; still running: {waiting}"
            raise TimeoutError(inc.error)
    inc.phase = "closing"
    # Confirmed: an emergency disclosure's linked preservation incident stays open on its own
    # (a close without confirm is refused while it is, which the engine tests cover).
    close = CommanderRequest(actor=COMMANDER, reason="chaos: done", confirm=True)
    await update("close", close, "chaos-close")
    await retrying(inc, "result", lambda: handle.result(rpc_timeout=rpc), deadline)
    inc.phase, inc.error, inc.took = "closed", "", time.monotonic() - opened_at


# --- Malformed messages ---------------------------------------------------------------------

_J = DATA_CONVERTER.payload_converter.to_payloads
_EVENT = {"name": "chaos_event", "actor": "chaos.x"}
_APPROVAL = {"step_id": "x", "actor": "chaos.x", "role": "legal", "reason": "x"}
_BINARY = [Payload(metadata={"encoding": b"binary/plain"}, data=b"\x00\xffnot json")]
CASES: list[tuple[str, str, str, Callable[[], list[Payload]]]] = [
    ("signal", SIGNAL_EVENT, "two arguments", lambda: _J([_EVENT, _EVENT])),
    ("signal", SIGNAL_EVENT, "no argument", lambda: []),
    ("signal", SIGNAL_EVENT, "null", lambda: _J([None])),
    ("signal", SIGNAL_EVENT, "wrong type", lambda: _J(["not an event"])),
    ("signal", SIGNAL_EVENT, "binary/plain", lambda: _BINARY),
    ("signal", SIGNAL_APPROVE, "two arguments", lambda: _J([_APPROVAL, _APPROVAL])),
    ("signal", "no_such_signal", "unknown name", lambda: _J([_EVENT])),
    ("signal", SIGNAL_EVENT, "1.5 MB", lambda: _J([{**_EVENT, "data": {"blob": "x" * 1_500_000}}])),
    ("update", "note", "two arguments", lambda: _J([{"actor": "a"}, {"actor": "b"}])),
    ("update", "note", "no argument", lambda: []),
    ("update", "approve", "null", lambda: _J([None])),
    ("update", "close", "wrong type", lambda: _J(["close it"])),
    ("update", "acknowledge", "binary/plain", lambda: _BINARY),
    ("update", "no_such_update", "unknown name", lambda: _J([{"actor": "a"}])),
]


async def send_malformed(client: Client, inc: Incident, case: tuple[str, str, str, Any]) -> str:
    """Send one malformed message; what the server answered (an Update must be refused)."""
    kind, name, _, payloads = case
    execution = WorkflowExecution(workflow_id=workflow_id_for(inc.iid))
    svc, ns, began = client.workflow_service, client.namespace, time.monotonic()
    args = Payloads(payloads=payloads())
    # One request id (signal) or Update id for every retry: the server delivers it once.
    signal = SignalWorkflowExecutionRequest(namespace=ns, workflow_execution=execution,
        signal_name=name, identity="chaos", input=args, request_id=str(uuid.uuid4()))  # fmt: skip
    update = UpdateWorkflowExecutionRequest(namespace=ns, workflow_execution=execution,
        wait_policy=WaitPolicy(lifecycle_stage=Stage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_COMPLETED),
        request=Request(meta=Meta(update_id=str(uuid.uuid4()), identity="chaos"),
                        input=Input(name=name, args=args)))  # fmt: skip
    while True:  # through transient transport errors (a restarting server), for up to 15 s
        try:
            if kind == "signal":
                await svc.signal_workflow_execution(
                    signal, retry=True, timeout=timedelta(seconds=10)
                )
                inc.malformed_signals += 1
                return "delivered"
            # The server may answer before the Update completes (only ACCEPTED): ask again.
            reply = await svc.update_workflow_execution(
                update, retry=True, timeout=timedelta(seconds=10)
            )
            if reply.outcome.HasField("failure"):
                return "refused"
            if reply.outcome.HasField("success"):
                return "ACCEPTED (a malformed Update succeeded)"
        except RPCError as err:
            if "completed" in err.message or "not found" in err.message.lower():
                return "target closed"
            if err.status not in _TRANSIENT or time.monotonic() - began > 15:
                return f"rpc error {err.status.name}: {err.message[:120]}"
        if time.monotonic() - began > 15:
            return "no answer in 15 s"
        await asyncio.sleep(0.5)


async def malformed_stream(
    client: Client,
    incidents: list[Incident],
    log: list[tuple[str, str, str]],
    limit: int,
    rng: random.Random,
) -> None:
    """Up to ``limit`` malformed messages, every kind in turn (the 1.5 MB one once), each to a
    random incident being driven; ``log`` gets (incident, message, what the server answered)."""
    sent, big = 0, False
    while sent < limit and any(i.phase in ("new", "driving") for i in incidents):
        await asyncio.sleep(rng.uniform(0.2, 0.8))
        targets = [i for i in incidents if i.phase == "driving"]
        case = CASES[sent % len(CASES)]
        sent += 1
        if not targets or (case[2] == "1.5 MB" and big):
            continue
        big = big or case[2] == "1.5 MB"
        inc = rng.choice(targets)
        verdict = await send_malformed(client, inc, case)
        log.append((inc.iid, f"{case[0]} {case[1]} ({case[2]})", verdict))
