"""`incident doctor`: incidents whose workflow task keeps failing (frozen: Updates and queries
answer "Workflow Task in failed state", SLA escalations cannot fire), and their repair: a reset to
the last completed workflow task (without the signals after it when a signal preceded the failure),
noted in the incident's timeline with who repaired what, and why.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import (
    EventType,
    ResetReapplyExcludeType,
    TimeoutType,
    WorkflowTaskFailedCause,
)
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError as NoUpdateAnswer
from temporalio.service import RPCError, RPCStatusCode

from connection import failure_message
from incidents import actions
from settings import get_settings
from terminal import ActorOpt, CliError, JsonOpt, default_actor, emit, out, run_with_client
from workflows.incident import IncidentWorkflow
from workflows.models import CommanderRequest
from workflows.names import incident_id_of, workflow_id_for

WORKFLOW_TYPE = IncidentWorkflow.__name__  # @workflow.defn without a name: the class name
SIGNALS = ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL
CONCURRENT_DESCRIBES = 8
LISTED_SIGNALS = 10  # the confirmation prompt names at most this many of the excluded signals

_TASK_FAILURES = (
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
)
_ACTIVITY_RESULTS = (
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
)


class RepairRefused(CliError):
    """The incident cannot be repaired as asked (not found, closed, not frozen ...)."""


@dataclass(frozen=True)
class Signal:
    event_id: int
    name: str


@dataclass(frozen=True)
class Frozen:
    """An open incident whose current workflow task keeps failing, and what the history says."""

    incident_id: str
    workflow_id: str
    run_id: str
    attempts: int
    since: datetime | None
    cause: str  # e.g. "workflow_worker_unhandled_failure", "non_deterministic_error", "timed_out"
    reason: str  # first line of the failure message
    failed_event_id: int | None  # the last WorkflowTaskFailed (or TimedOut) event
    last_good_event_id: int | None  # the last WorkflowTaskCompleted before it
    signals_after: list[Signal] = field(default_factory=list)  # signals after the last good task
    activity_results_after: int = 0  # activity results a reset discards (they run again)

    @property
    def failure_followed_signal(self) -> bool:
        """A signal arrived between the last good task and the failure (the usual suspect)."""
        last = self.failed_event_id or 0
        return any(s.event_id < last for s in self.signals_after)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self) | {"failure_followed_signal": self.failure_followed_signal}
        return data | {"since": _when(self.since) if self.since else None}


@dataclass(frozen=True)
class RepairPlan:
    frozen: Frozen
    exclude_signals: bool

    @property
    def reset_to(self) -> int:
        assert self.frozen.last_good_event_id is not None
        return self.frozen.last_good_event_id

    def note(self, reason: str) -> str:
        """The timeline note that records the repair (what auditors read)."""
        count = len(self.frozen.signals_after)
        signals = f"{count} signal{'' if count == 1 else 's'}"
        how = f"excluding {signals}" if self.exclude_signals else f"replaying {signals}"
        return f"doctor: reset to event {self.reset_to}, {how}: {reason}"

    def explain(self) -> list[str]:
        """What the repair will do, for the confirmation prompt."""
        f = self.frozen
        lines = [
            f"incident {f.incident_id} (run {f.run_id}) is frozen: workflow task attempt "
            f"{f.attempts}, failing since {_when(f.since)}",
            f"  reason: {f.cause}: {f.reason}",
            f"repair: reset to event {self.reset_to} (the last completed workflow task); "
            "this run is terminated and a new run continues the incident from there",
        ]
        if f.signals_after:
            names = ", ".join(
                f"{s.name} (event {s.event_id})" for s in f.signals_after[:LISTED_SIGNALS]
            )
            more = len(f.signals_after) - LISTED_SIGNALS
            names += f" and {more} more" if more > 0 else ""
            verb = "dropped (not replayed)" if self.exclude_signals else "replayed into the new run"
            lines.append(f"  {len(f.signals_after)} signal(s) after it are {verb}: {names}")
        if f.activity_results_after:
            lines.append(
                f"  {f.activity_results_after} activity result(s) after it are discarded: "
                "those activities run again (they are idempotent)"
            )
        if f.cause == "non_deterministic_error":
            lines.append(
                "  a nondeterminism error comes from code: if today's code cannot replay the "
                "history up to the reset point either, the new run fails the same way"
            )
        return lines


# ----------------------------------------------------------------------------------- diagnosis


async def diagnose(client: Client, incident_id: str) -> Frozen | None:
    """The incident's failing workflow task, or None if healthy (refuses: not found, closed)."""
    workflow_id = workflow_id_for(incident_id)
    try:
        desc = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise RepairRefused(f"incident {incident_id} not found") from None
        raise
    if desc.workflow_type != WORKFLOW_TYPE:
        raise RepairRefused(f"{workflow_id} is a {desc.workflow_type}, not an incident")
    if desc.status != WorkflowExecutionStatus.RUNNING:
        state = desc.status.name.lower() if desc.status else "closed"
        raise RepairRefused(f"incident {incident_id} is closed ({state}): nothing to repair")
    raw = desc.raw_description
    if not raw.HasField("pending_workflow_task") or raw.pending_workflow_task.attempt <= 1:
        return None
    pending = raw.pending_workflow_task
    handle = client.get_workflow_handle(workflow_id, run_id=desc.run_id)
    events = [event async for event in handle.fetch_history_events()]
    # The last good task, and the failures after it (later attempts are not in history).
    last_good: HistoryEvent | None = None
    failures: list[HistoryEvent] = []
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            last_good, failures = event, []
        elif event.event_type in _TASK_FAILURES:
            failures.append(event)
    failure = failures[-1] if failures else None
    later = [e for e in events if e.event_id > (last_good.event_id if last_good else 0)]
    cause, reason = _failure_reason(failure, pending.attempt)
    since = failures[0].event_time if failures else pending.original_scheduled_time
    return Frozen(
        incident_id=incident_id,
        workflow_id=workflow_id,
        run_id=desc.run_id,
        attempts=pending.attempt,
        since=since.ToDatetime(tzinfo=UTC) if since.seconds else None,
        cause=cause,
        reason=reason,
        failed_event_id=failure.event_id if failure else None,
        last_good_event_id=last_good.event_id if last_good else None,
        signals_after=[
            Signal(e.event_id, e.workflow_execution_signaled_event_attributes.signal_name)
            for e in later
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        ],
        activity_results_after=sum(1 for e in later if e.event_type in _ACTIVITY_RESULTS),
    )


def _failure_reason(failure: HistoryEvent | None, attempts: int) -> tuple[str, str]:
    if failure is None:
        return "unknown", f"workflow task retried {attempts} times; no failure in the history"
    if failure.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
        kind = TimeoutType.Name(
            failure.workflow_task_timed_out_event_attributes.timeout_type
        ).removeprefix("TIMEOUT_TYPE_")
        return "timed_out", f"workflow task timed out ({kind.lower()}): no worker finished it"
    attrs = failure.workflow_task_failed_event_attributes
    cause = WorkflowTaskFailedCause.Name(attrs.cause).removeprefix("WORKFLOW_TASK_FAILED_CAUSE_")
    message = _first_line(failure_message(attrs.failure)) or "(no message)"
    kind = attrs.failure.application_failure_info.type
    if kind and not message.startswith(kind):
        message = f"{kind}: {message}"
    return cause.lower(), message


def _first_line(text: str) -> str:
    return next(iter(text.strip().splitlines()), "").strip()


async def list_frozen(client: Client) -> list[Frozen]:
    """Every running incident whose current workflow task keeps failing, oldest failure first."""
    query = f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus = 'Running'"
    ids = [incident_id_of(wf.id) async for wf in client.list_workflows(query)]
    gate = asyncio.Semaphore(CONCURRENT_DESCRIBES)

    async def one(incident_id: str) -> Frozen | None:
        async with gate:
            try:
                return await diagnose(client, incident_id)
            except RepairRefused:  # closed (or gone) since the listing
                return None

    found = await asyncio.gather(*(one(i) for i in dict.fromkeys(ids) if i))
    frozen = [f for f in found if f is not None]
    return sorted(frozen, key=lambda f: (_when(f.since), f.incident_id))  # "?" sorts last


# -------------------------------------------------------------------------------------- repair


async def plan_repair(
    client: Client, incident_id: str, exclude_signals: bool | None = None
) -> RepairPlan:
    """What the repair of ``incident_id`` would do; refuses an incident it cannot help."""
    frozen = await diagnose(client, incident_id)
    if frozen is None:
        raise RepairRefused(
            f"incident {incident_id} is not frozen (its workflow task is not failing): "
            "nothing to repair"
        )
    if frozen.cause == "timed_out":
        raise RepairRefused(
            f"incident {incident_id}'s workflow task times out rather than fails: no worker "
            "finishes it (is `incident worker` running?); a reset cannot help"
        )
    if frozen.last_good_event_id is None:
        raise RepairRefused(
            f"incident {incident_id} never completed a workflow task "
            f"({frozen.cause}: {frozen.reason}): there is no good task to reset to"
        )
    if exclude_signals is None:
        exclude_signals = frozen.failure_followed_signal
    return RepairPlan(frozen, exclude_signals)


async def repair(
    client: Client, plan: RepairPlan, *, actor: str, reason: str, note_timeout: float = 15.0
) -> dict[str, Any]:
    """Reset to the plan's last good workflow task, then record the repair in the timeline (a
    new run that fails again cannot take the note: that is an error that says the reset ran)."""
    frozen = plan.frozen
    now = await diagnose(client, frozen.incident_id)
    if now is None or (now.run_id, now.last_good_event_id) != (frozen.run_id, plan.reset_to):
        raise RepairRefused(
            f"incident {frozen.incident_id} changed since it was diagnosed: run `incident doctor` "
            "again"
        )
    plan = replace(plan, frozen=now)  # signals that arrived meanwhile are counted too
    request = ResetWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=now.workflow_id, run_id=now.run_id),
        reason=f"incident doctor ({actor}): {reason}",
        workflow_task_finish_event_id=plan.reset_to,
        request_id=str(uuid.uuid4()),
        identity=f"incident doctor ({actor})",
        reset_reapply_exclude_types=[SIGNALS] if plan.exclude_signals else [],
    )
    response = await client.workflow_service.reset_workflow_execution(request)
    note = CommanderRequest(actor=actor, role="ic", reason=plan.note(reason))
    try:
        async with asyncio.timeout(note_timeout):
            await actions.task_completed_after(
                client, now.workflow_id, response.run_id, plan.reset_to
            )
            entry = await actions.act(client, now.incident_id, "note", note)
    except (WorkflowUpdateFailedError, NoUpdateAnswer, RPCError, TimeoutError) as err:
        why = _first_line(str(err.cause if isinstance(err, WorkflowUpdateFailedError) else err))
        raise CliError(
            f"incident {now.incident_id} was reset to event {plan.reset_to} (new run "
            f"{response.run_id}), but the repair note was not recorded "
            f"({why or f'no answer within {note_timeout:.0f}s'}):"
            " run `incident doctor` to see whether it is still frozen"
        ) from None
    return {
        "incident_id": now.incident_id,
        "reset_to_event": plan.reset_to,
        "excluded_signals": len(now.signals_after) if plan.exclude_signals else 0,
        "old_run_id": now.run_id,
        "new_run_id": response.run_id,
        "note_seq": entry.seq,
    }


# ------------------------------------------------------------------------------------ commands

doctor_app = typer.Typer(
    name="doctor",
    help="Frozen incidents (workflow task failing) and their repair.",
    invoke_without_command=True,
)


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "?"


@doctor_app.callback(invoke_without_command=True)
def doctor(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List open incidents whose workflow task keeps failing, with the reason (exit 1 if any)."""
    if ctx.invoked_subcommand is not None:
        return
    frozen = run_with_client(list_frozen)
    emit(as_json, [f.to_json() for f in frozen], lambda: _print_frozen(frozen))
    if frozen:
        raise typer.Exit(1)


def _print_frozen(frozen: list[Frozen]) -> None:
    """One line per incident (never wrapped, so it greps): id, attempts, since, reason."""
    if not frozen:
        out.print("no frozen incidents")
        return
    rows = [("incident", "attempts", "since", "last good", "reason")] + [
        (f.incident_id, str(f.attempts), _when(f.since), f"event {f.last_good_event_id or '-'}",
         f"{f.cause}: {f.reason}")
        for f in frozen
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        line = [v.ljust(w) for v, w in zip(row[:4], widths, strict=True)]
        out.print("  ".join([*line, row[4]]), markup=False)
    out.print("repair one with: incident doctor repair ID --reason TEXT", markup=False)


def _confirm(lines: list[str]) -> bool:
    """Ask on stderr (stdout stays machine-readable); anything but y/yes, or no input, is no."""
    print("\n".join(lines), end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    if not sys.stdin.isatty():
        print(file=sys.stderr)  # the answer was not echoed: end the prompt's line
    return answer.strip().lower() in ("y", "yes")


@doctor_app.command("repair")
def repair_command(
    incident_id: str,
    reason: Annotated[str, typer.Option(help="Why (recorded in the timeline).")],
    exclude_signals: Annotated[
        bool | None,
        typer.Option(
            "--exclude-signals/--keep-signals",
            help="Drop the signals after the last good task (default: when a signal preceded "
            "the failure).",
            show_default=False,
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    actor: ActorOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Reset a frozen incident to its last good workflow task and note it in the timeline."""
    if not reason.strip():
        raise CliError("--reason is required: say why the incident is repaired")
    who = actor or default_actor()
    plan = run_with_client(lambda c: plan_repair(c, incident_id, exclude_signals))
    if not yes and not _confirm(
        [*plan.explain(), f"note: {plan.note(reason)}", "reset now? [y/N] "]
    ):
        raise CliError("not confirmed: nothing changed (--yes skips the prompt)")
    wait = get_settings().cli_timeout_seconds / 2  # the note's share of the command's deadline
    result = run_with_client(lambda c: repair(c, plan, actor=who, reason=reason, note_timeout=wait))
    emit(
        as_json,
        result,
        lambda: out.print(
            f"repaired: {incident_id} reset to event {result['reset_to_event']} "
            f"({result['excluded_signals']} signal(s) excluded), new run {result['new_run_id']}; "
            f"noted in the timeline (#{result['note_seq']})",
            markup=False,
        ),
    )
