"""The commanders' and approvers' commands: open, ack, assign, escalate, note, close, event,
approve, reject, status, timeline, list.

Each command parses its options, calls the front door (``incidents/service.py``) and prints the
answer (``incidents/render.py``, or JSON with ``--json``). Mounted at the top level by ``starter.py``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from incidents import actions, listing, render
from incidents.service import build_input, new_incident_id, reopen_incident, start_incident
from playbooks.loader import scan_playbooks
from playbooks.schema import SEVERITIES
from settings import get_settings
from terminal import ActorOpt, JsonOpt, default_actor, emit, out, pairs, run_with_client
from workflows.models import (
    ApprovalRequest,
    CommanderRequest,
    ExternalEvent,
    ReopenRequest,
    StepRequest,
    TimelineEntry,
)

incidents_app = typer.Typer()


def _severity(value: str | None) -> str | None:
    if value is not None and value not in SEVERITIES:
        raise typer.BadParameter(f"must be one of {', '.join(SEVERITIES)}, not {value!r}")
    return value


def _known_playbook(value: str | None) -> str | None:
    known = {lp.playbook.name for lp in scan_playbooks(get_settings().playbooks_dir)[0]}
    if value is not None and value not in known:
        raise typer.BadParameter(f"unknown playbook {value!r}; known: {', '.join(sorted(known))}")
    return value


def _commander(incident_id: str, action: str, actor: str, as_json: bool, **request: Any) -> None:
    """Send one commander action and show the timeline entry it recorded."""
    req = CommanderRequest(actor=actor or default_actor(), **request)
    entry = run_with_client(lambda c: actions.act(c, incident_id, action, req))
    emit(as_json, entry, lambda: render.print_entry(entry))


# --------------------------------------------------------------------------- commander actions


@incidents_app.command("open")
def open_(
    playbook: Annotated[str, typer.Option(help="Playbook name (see `incident playbooks`).")],
    summary: Annotated[str, typer.Option(help="What happened, in one line.")],
    severity: Annotated[
        str | None, typer.Option(help="sev0..sev3; default: the playbook's.")
    ] = None,
    field: Annotated[list[str], typer.Option("--field", help="key=value, repeatable.")] = [],  # noqa: B006
    incident_id: Annotated[
        str | None, typer.Option("--id", help="Incident id (e.g. the case).")
    ] = None,
    actor: ActorOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Open an incident: snapshot the playbook and start its workflow (idempotent per --id)."""
    incident_id = incident_id or new_incident_id()
    fields = pairs(field, "--field")
    settings = get_settings()
    # Checked before connecting: a bad request is refused even when Temporal is down.
    inp = build_input(
        playbook=playbook,
        severity=severity,
        summary=summary,
        fields=fields,
        incident_id=incident_id,
        opened_by=actor or default_actor(),
        settings=settings,
    )
    result = run_with_client(lambda c: start_incident(c, inp, settings.task_queue))
    verb = "opened" if result.created else "already open"
    emit(
        as_json,
        result.__dict__,
        lambda: out.print(
            f"{verb}: {result.incident_id} ({playbook}, {result.playbook_hash[:19]}) "
            f"workflow {result.workflow_id}"
        ),
    )


@incidents_app.command("ack")
def ack(incident_id: str, actor: ActorOpt = "", as_json: JsonOpt = False) -> None:
    """Acknowledge the incident (stops the time-to-acknowledge clock; you become the owner)."""
    _commander(incident_id, "ack", actor, as_json)


@incidents_app.command("assign")
def assign(
    incident_id: str,
    to: Annotated[str, typer.Option(help="New owner.")],
    actor: ActorOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Hand the incident to another commander."""
    _commander(incident_id, "assign", actor, as_json, to=to)


@incidents_app.command("escalate")
def escalate(
    incident_id: str,
    severity: Annotated[str, typer.Option(help="sev0..sev3", callback=_severity)],
    reason: Annotated[str, typer.Option(help="Why.")],
    actor: ActorOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Raise the severity."""
    _commander(incident_id, "escalate", actor, as_json, severity=severity, reason=reason)


@incidents_app.command("note")
def note(incident_id: str, text: str, actor: ActorOpt = "", as_json: JsonOpt = False) -> None:
    """Add a note to the timeline."""
    _commander(incident_id, "note", actor, as_json, reason=text)


@incidents_app.command("close")
def close(
    incident_id: str,
    resolution: Annotated[str, typer.Option(help="How it ended.")],
    actor: ActorOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Close the incident; steps still running are cancelled and recorded."""
    _commander(incident_id, "close", actor, as_json, reason=resolution)


@incidents_app.command("retry")
def retry(
    incident_id: str,
    step: str,
    reason: Annotated[str, typer.Option(help="What was fixed.")] = "",
    actor: ActorOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Run a failed step again (after fixing what made it fail, e.g. a field by an event)."""
    request = StepRequest(step_id=step, actor=actor or default_actor(), reason=reason)
    entry = run_with_client(
        lambda c: actions.resolve_failed_step(c, incident_id, request, retry=True)
    )
    emit(as_json, entry, lambda: render.print_entry(entry))


@incidents_app.command("skip")
def skip(
    incident_id: str,
    step: str,
    reason: Annotated[str, typer.Option(help="Why the step can be left out.")],
    role: Annotated[str, typer.Option(help="Your role; legal for a statutory step.")] = "ic",
    actor: ActorOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Leave out a failed step and go on (a step with a statutory clock: Legal only)."""
    request = StepRequest(step_id=step, actor=actor or default_actor(), role=role, reason=reason)
    entry = run_with_client(
        lambda c: actions.resolve_failed_step(c, incident_id, request, retry=False)
    )
    emit(as_json, entry, lambda: render.print_entry(entry))


@incidents_app.command("reopen")
def reopen(
    incident_id: str,
    reason: Annotated[str, typer.Option(help="Why it is reopened.")],
    actor: ActorOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Continue a closed incident: same id, same timeline, a new run; who and why are recorded."""
    request = ReopenRequest(actor=actor or default_actor(), reason=reason)
    queue = get_settings().task_queue
    result = run_with_client(
        lambda c: reopen_incident(c, incident_id, reopen=request, task_queue=queue)
    )
    emit(
        as_json,
        result.__dict__,
        lambda: out.print(f"reopened: {result.incident_id} workflow {result.workflow_id}"),
    )


@incidents_app.command("event")
def event(
    incident_id: str,
    name: str,
    data: Annotated[list[str], typer.Option("--data", help="key=value, repeatable.")] = [],  # noqa: B006
    actor: ActorOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Record an outside event (e.g. law_enforcement_response); its data updates fields."""
    payload = ExternalEvent(name=name, actor=actor or default_actor(), data=pairs(data, "--data"))
    entry = run_with_client(lambda c: actions.send_event(c, incident_id, payload))
    emit(as_json, entry, lambda: render.print_entry(entry))


# ---------------------------------------------------------------------------------- decisions

RoleOpt = Annotated[str, typer.Option(help="Your role, e.g. legal.")]
ReasonOpt = Annotated[str, typer.Option(help="The basis for the decision.")]
SignalOpt = Annotated[bool, typer.Option("--signal", help="Send as a signal, not an Update.")]


def _decide(
    incident_id: str, step: str, actor: str, role: str, reason: str, approve: bool, by_signal: bool,
    as_json: bool,
) -> None:  # fmt: skip
    request = ApprovalRequest(
        step_id=step, actor=actor or default_actor(), role=role, reason=reason
    )
    result = run_with_client(
        lambda c: actions.decide(c, incident_id, request, approve=approve, by_signal=by_signal)
    )
    if isinstance(result, TimelineEntry):  # by signal: the entry the decision produced
        emit(as_json, result, lambda: out.print(f"{step}: {result.kind}", markup=False))
        return
    emit(as_json, result, lambda: out.print(f"{result.step_id}: {result.outcome}"))


def _decision_command(name: str, approve: bool, doc: str) -> None:
    """Register ``approve`` or ``reject``: the same options, the opposite decision."""

    def command(
        incident_id: str,
        step: str,
        role: RoleOpt,
        reason: ReasonOpt,
        actor: ActorOpt = "",
        signal: SignalOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        _decide(incident_id, step, actor, role, reason, approve, signal, as_json)

    command.__doc__ = doc
    incidents_app.command(name)(command)


_decision_command(
    "approve",
    True,
    "Approve a gated step (refused for a wrong role, your own request, or a decided step).",
)
_decision_command("reject", False, "Reject a gated step.")


# ------------------------------------------------------------------------------------ reading


@incidents_app.command("status")
def status(incident_id: str, as_json: JsonOpt = False) -> None:
    """Current steps, pending approvals and live SLA clocks."""
    st = run_with_client(lambda c: actions.status(c, incident_id))
    emit(as_json, st, lambda: render.print_status(st))


@incidents_app.command("timeline")
def timeline(incident_id: str, as_json: JsonOpt = False) -> None:
    """Who did what, when, against which SLA."""
    entries = run_with_client(lambda c: actions.timeline(c, incident_id))
    emit(as_json, entries, lambda: render.print_timeline(entries))


@incidents_app.command("list")
def list_(
    open_only: Annotated[bool, typer.Option("--open", help="Only incidents not closed.")] = False,
    severity: Annotated[
        str | None, typer.Option(help="Filter by severity.", callback=_severity)
    ] = None,
    playbook: Annotated[
        str | None, typer.Option(help="Filter by playbook.", callback=_known_playbook)
    ] = None,
    breached: Annotated[bool, typer.Option("--breached", help="Only SLA-breached.")] = False,
    attention: Annotated[
        bool, typer.Option("--attention", help="Only those needing a person (failed steps).")
    ] = False,
    limit: int = 100,
    as_json: JsonOpt = False,
) -> None:
    """Incidents by their search attributes (eventually consistent, like all visibility)."""
    query = listing.list_query(
        open_only=open_only,
        severity=severity,
        playbook=playbook,
        breached=breached,
        attention=attention,
    )
    rows = run_with_client(lambda c: listing.list_incidents(c, query, limit))
    emit(as_json, [r.as_json() for r in rows], lambda: render.print_rows(rows))
