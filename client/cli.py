"""The commanders' and approvers' commands, as a client of the API: open, ack, assign, escalate,
note, close, reopen, retry, skip, event, approve, reject, status, timeline, list.

Each command builds the API's request body (refused here if malformed, naming the option), sends
it as the signed-in person (``client/http.py``) and prints the answer (``incidents/render.py``, or
the API's JSON as it came with ``--json``). Nobody names themselves: the actor is the token's
person, and ``--role`` only chooses among the roles that person holds.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from api.bodies import ActionBody, DecisionBody, EventBody, OpenBody, ReopenBody, StepBody
from client.http import Api, body
from incidents import render
from playbooks.schema import SEVERITIES
from settings import get_settings
from terminal import JsonOpt, emit, out, pairs
from workflows.models import ApprovalResult, IncidentStatus, TimelineEntry

incidents_app = typer.Typer()
RoleChoice = Annotated[
    str | None, typer.Option("--role", help="Act in this role (one you hold); default: the first.")
]


def _severity(value: str | None) -> str | None:
    if value is not None and value not in SEVERITIES:
        raise typer.BadParameter(f"must be one of {', '.join(SEVERITIES)}, not {value!r}")
    return value


def _known_playbook(value: str | None) -> str | None:
    if value is None:
        return None
    from playbooks.loader import scan_playbooks  # the files are read only when one is named

    known = {lp.playbook.name for lp in scan_playbooks(get_settings().playbooks_dir)[0]}
    if value not in known:
        raise typer.BadParameter(f"unknown playbook {value!r}; known: {', '.join(sorted(known))}")
    return value


def _path(incident_id: str, *rest: str) -> str:
    """``/incidents/<id>/...``, each part quoted: an id can never reach another endpoint."""
    return "/".join(["/incidents", *(quote(p, safe="") for p in (incident_id, *rest))])


def _show_entry(as_json: bool, answer: Any) -> None:
    entry = TimelineEntry.model_validate(answer)
    emit(as_json, answer, lambda: render.print_entry(entry))


def _commander(incident_id: str, action: str, as_json: bool, **values: Any) -> None:
    """Send one commander action and show the timeline entry it recorded."""
    payload = body(ActionBody, {"reason": values.pop("reason_option", "--reason")}, **values)
    _show_entry(as_json, Api().post(_path(incident_id, "actions", action), payload))


# --------------------------------------------------------------------------- commander actions


@incidents_app.command("open")
def open_(
    playbook: Annotated[str, typer.Option(help="Playbook name (see `incident playbooks`).")],
    summary: Annotated[str, typer.Option(help="What happened, in one line.")],
    severity: Annotated[
        str | None, typer.Option(help="sev0..sev3; default: the playbook's.", callback=_severity)
    ] = None,
    field: Annotated[list[str], typer.Option("--field", help="key=value, repeatable.")] = [],  # noqa: B006
    incident_id: Annotated[
        str | None, typer.Option("--id", help="Incident id (e.g. the case).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Open an incident: snapshot the playbook and start its workflow (idempotent per --id)."""
    payload = body(
        OpenBody, {"id": "--id"}, playbook=playbook, summary=summary, severity=severity,
        fields=pairs(field, "--field"), id=incident_id,
    )  # fmt: skip
    result = Api().post("/incidents", payload)
    verb = "opened" if result["created"] else "already open"
    emit(
        as_json,
        result,
        lambda: out.print(
            f"{verb}: {result['incident_id']} ({playbook}, {result['playbook_hash'][:19]}) "
            f"workflow {result['workflow_id']}",
            markup=False,
        ),
    )


@incidents_app.command("ack")
def ack(incident_id: str, role: RoleChoice = None, as_json: JsonOpt = False) -> None:
    """Acknowledge the incident (stops the time-to-acknowledge clock; you become the owner)."""
    _commander(incident_id, "ack", as_json, role=role)


@incidents_app.command("assign")
def assign(
    incident_id: str,
    to: Annotated[str, typer.Option(help="New owner.")],
    role: RoleChoice = None,
    as_json: JsonOpt = False,
) -> None:
    """Hand the incident to another commander."""
    _commander(incident_id, "assign", as_json, to=to, role=role)


@incidents_app.command("escalate")
def escalate(
    incident_id: str,
    severity: Annotated[str, typer.Option(help="sev0..sev3", callback=_severity)],
    reason: Annotated[str, typer.Option(help="Why.")],
    role: RoleChoice = None,
    as_json: JsonOpt = False,
) -> None:
    """Raise the severity."""
    _commander(incident_id, "escalate", as_json, severity=severity, reason=reason, role=role)


@incidents_app.command("note")
def note(incident_id: str, text: str, role: RoleChoice = None, as_json: JsonOpt = False) -> None:
    """Add a note to the timeline."""
    _commander(incident_id, "note", as_json, reason=text, reason_option="TEXT", role=role)


@incidents_app.command("close")
def close(
    incident_id: str,
    resolution: Annotated[str, typer.Option(help="How it ended.")],
    role: RoleChoice = None,
    confirm: Annotated[
        bool, typer.Option("--confirm", help="Close even with linked incidents still open.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Close the incident; steps still running are cancelled and recorded."""
    _commander(
        incident_id, "close", as_json, reason=resolution, reason_option="--resolution", role=role,
        confirm=confirm,
    )  # fmt: skip


def _failed_step(incident_id: str, step: str, move: str, as_json: bool, **values: Any) -> None:
    payload = body(StepBody, **values)
    _show_entry(as_json, Api().post(_path(incident_id, "steps", step, move), payload))


@incidents_app.command("retry")
def retry(
    incident_id: str,
    step: str,
    reason: Annotated[str, typer.Option(help="What was fixed.")] = "",
    role: RoleChoice = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a failed step again (after fixing what made it fail, e.g. a field by an event)."""
    _failed_step(incident_id, step, "retry", as_json, reason=reason, role=role)


@incidents_app.command("skip")
def skip(
    incident_id: str,
    step: str,
    reason: Annotated[str, typer.Option(help="Why the step can be left out.")],
    role: RoleChoice = None,
    as_json: JsonOpt = False,
) -> None:
    """Leave out a failed step and go on (a step with a statutory clock: as legal only)."""
    _failed_step(incident_id, step, "skip", as_json, reason=reason, role=role)


@incidents_app.command("reopen")
def reopen(
    incident_id: str,
    reason: Annotated[str, typer.Option(help="Why it is reopened.")],
    as_json: JsonOpt = False,
) -> None:
    """Continue a closed incident: same id, same timeline, a new run; who and why are recorded."""
    result = Api().post(_path(incident_id, "reopen"), body(ReopenBody, reason=reason))
    emit(
        as_json,
        result,
        lambda: out.print(f"reopened: {result['incident_id']} workflow {result['workflow_id']}"),
    )


@incidents_app.command("event")
def event(
    incident_id: str,
    name: str,
    data: Annotated[list[str], typer.Option("--data", help="key=value, repeatable.")] = [],  # noqa: B006
    role: RoleChoice = None,
    as_json: JsonOpt = False,
) -> None:
    """Record an outside event (e.g. law_enforcement_response); its data updates fields."""
    payload = body(EventBody, {"name": "NAME"}, name=name, data=pairs(data, "--data"), role=role)
    _show_entry(as_json, Api().post(_path(incident_id, "events"), payload))


# ---------------------------------------------------------------------------------- decisions

RoleOpt = Annotated[str, typer.Option(help="The role you decide in (one you hold), e.g. legal.")]
ReasonOpt = Annotated[str, typer.Option(help="The basis for the decision.")]
SignalOpt = Annotated[bool, typer.Option("--signal", help="Send as a signal, not an Update.")]


def _decision_command(decision: str, doc: str) -> None:
    """Register ``approve`` or ``reject``: the same options, the opposite decision."""

    def command(
        incident_id: str,
        step: str,
        role: RoleOpt,
        reason: ReasonOpt,
        signal: SignalOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        payload = body(DecisionBody, {"step": "STEP"}, step=step, decision=decision, role=role,
                       reason=reason, signal=signal)  # fmt: skip
        answer = Api().post(_path(incident_id, "decisions"), payload)
        if signal:  # the entry the decision produced
            entry = TimelineEntry.model_validate(answer)
            emit(as_json, answer, lambda: out.print(f"{step}: {entry.kind}", markup=False))
            return
        result = ApprovalResult.model_validate(answer)
        emit(as_json, answer, lambda: out.print(f"{result.step_id}: {result.outcome}"))

    command.__doc__ = doc
    incidents_app.command(decision)(command)


_decision_command(
    "approve",
    "Approve a gated step (refused for a role you do not hold or the step does not accept, your "
    "own request, or a decided step).",
)
_decision_command("reject", "Reject a gated step.")


# ------------------------------------------------------------------------------------ reading


@incidents_app.command("status")
def status(incident_id: str, as_json: JsonOpt = False) -> None:
    """Current steps, pending approvals and live SLA clocks."""
    answer = Api().get(_path(incident_id))
    emit(as_json, answer, lambda: render.print_status(IncidentStatus.model_validate(answer)))


@incidents_app.command("timeline")
def timeline(incident_id: str, as_json: JsonOpt = False) -> None:
    """Who did what, when, against which SLA."""
    answer = Api().get(_path(incident_id, "timeline"))
    entries = [TimelineEntry.model_validate(e) for e in answer]
    emit(as_json, answer, lambda: render.print_timeline(entries))


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
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Incidents you may see, by their search attributes (eventually consistent)."""
    rows = Api().get(
        "/incidents", open=open_only, severity=severity, playbook=playbook, breached=breached,
        attention=attention, limit=limit,
    )  # fmt: skip
    emit(as_json, rows, lambda: render.print_rows(rows))
