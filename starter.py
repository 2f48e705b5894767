"""The `incident` command: how commanders, Legal and auditors drive incidents from a terminal.

Every command talks to the running IncidentWorkflow through Updates (commander actions, approvals),
signals (events, signal-only approvals) and queries (status, timeline). Errors are one line on
stderr with a non-zero exit, never a traceback; `--json` prints machine-readable output. The
process ends with `os._exit` once its work is done (temporalio/sdk-python#300).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from audit import audit_app
from connection import connect
from incident_service import OpenError, new_incident_id, open_incident
from playbooks.loader import PlaybookError, lint_files, list_playbooks
from playbooks.schema import SEVERITIES
from report import report_command, schedule_app
from settings import get_settings
from workflows import sla as clocks
from workflows.incident import IncidentWorkflow, workflow_id_for
from workflows.models import (
    ApprovalRequest,
    CommanderRequest,
    ExternalEvent,
    IncidentStatus,
    TimelineEntry,
)

app = typer.Typer(
    help="Trust & Safety incident playbooks on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(audit_app, name="audit")
app.add_typer(schedule_app, name="schedule")
app.command("report")(report_command)

out = Console(highlight=False, soft_wrap=True)
T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ActorOpt = Annotated[str, typer.Option("--as", help="Who is acting (your name).")]


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


def _default_actor() -> str:
    return os.environ.get("CR_ACTOR") or os.environ.get("USER") or "unknown"


def _run(factory: Callable[[Client], Awaitable[T]]) -> T:
    """Connect, run one client operation with a deadline, translate SDK errors into CliError."""
    settings = get_settings()

    async def go() -> T:
        try:
            client = await connect(settings)
        except RuntimeError as err:
            raise CliError(
                f"cannot reach Temporal at {settings.temporal_address} ({err}); "
                "is `make run` running?"
            ) from None
        async with asyncio.timeout(settings.cli_timeout_seconds):
            return await factory(client)

    try:
        return asyncio.run(go())
    except TimeoutError:
        raise CliError(
            f"no answer within {settings.cli_timeout_seconds:.0f}s: is a worker running "
            f"on task queue {settings.task_queue!r}?"
        ) from None
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            raise CliError(f"refused ({cause.type}): {cause.message}") from None
        raise CliError(f"update failed: {cause or err}") from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND and "already completed" in err.message:
            raise CliError("refused (incident_closed): the incident is closed") from None
        if err.status == RPCStatusCode.NOT_FOUND:
            raise CliError(f"not found: {err.message}") from None
        raise CliError(f"Temporal error: {err.message}") from None


def _emit(as_json: bool, value: Any, human: Callable[[], None]) -> None:
    if as_json:
        data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        if isinstance(value, list):
            data = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
        print(json.dumps(data, indent=2, default=str))
    else:
        human()


def _pairs(values: list[str], option: str) -> dict[str, str]:
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{option} takes key=value, got {item!r}")
        result[key.strip()] = value.strip()
    return result


def _handle(client: Client, incident_id: str) -> Any:
    return client.get_workflow_handle(workflow_id_for(incident_id))


def _update(incident_id: str, update: Any, request: BaseModel) -> Any:
    return _run(lambda c: _handle(c, incident_id).execute_update(update, request))


def _commander(incident_id: str, update: Any, actor: str, as_json: bool, **request: Any) -> None:
    """Send one commander Update and show the timeline entry it recorded."""
    entry = _update(
        incident_id, update, CommanderRequest(actor=actor or _default_actor(), **request)
    )
    _emit(as_json, entry, lambda: _print_entry(entry))


def _print_entry(entry: TimelineEntry) -> None:
    out.print(f"{entry.kind}: {entry.detail}".rstrip(": "))


# --------------------------------------------------------------------------- commander actions


@app.command("open")
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
    fields = _pairs(field, "--field")
    result = _run(
        lambda c: open_incident(
            c,
            playbook=playbook,
            severity=severity,
            summary=summary,
            fields=fields,
            incident_id=incident_id,
            opened_by=actor or _default_actor(),
        )
    )
    verb = "opened" if result.created else "already open"
    _emit(
        as_json,
        result.__dict__,
        lambda: out.print(
            f"{verb}: {result.incident_id} ({playbook}, {result.playbook_hash[:19]}) "
            f"workflow {result.workflow_id}"
        ),
    )


@app.command("ack")
def ack(incident_id: str, actor: ActorOpt = "", as_json: JsonOpt = False) -> None:
    """Acknowledge the incident (stops the time-to-acknowledge clock; you become the owner)."""
    _commander(incident_id, IncidentWorkflow.acknowledge, actor, as_json)


@app.command("assign")
def assign(
    incident_id: str,
    to: Annotated[str, typer.Option(help="New owner.")],
    actor: ActorOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Hand the incident to another commander."""
    _commander(incident_id, IncidentWorkflow.assign, actor, as_json, to=to)


@app.command("escalate")
def escalate(
    incident_id: str,
    severity: Annotated[str, typer.Option(help="sev0..sev3")],
    reason: Annotated[str, typer.Option(help="Why.")],
    actor: ActorOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Raise the severity."""
    if severity not in SEVERITIES:
        raise CliError(f"--severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
    _commander(incident_id, IncidentWorkflow.escalate, actor, as_json, severity=severity,
               reason=reason)  # fmt: skip


@app.command("note")
def note(incident_id: str, text: str, actor: ActorOpt = "", as_json: JsonOpt = False) -> None:
    """Add a note to the timeline."""
    _commander(incident_id, IncidentWorkflow.note, actor, as_json, reason=text)


@app.command("close")
def close(
    incident_id: str,
    resolution: Annotated[str, typer.Option(help="How it ended.")],
    actor: ActorOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Close the incident; steps still running are cancelled and recorded."""
    _commander(incident_id, IncidentWorkflow.close, actor, as_json, reason=resolution)


@app.command("event")
def event(
    incident_id: str,
    name: str,
    data: Annotated[list[str], typer.Option("--data", help="key=value, repeatable.")] = [],  # noqa: B006
    actor: ActorOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Record an outside event (e.g. law_enforcement_response); its data updates fields."""
    payload = ExternalEvent(name=name, actor=actor or _default_actor(), data=_pairs(data, "--data"))
    _run(lambda c: _handle(c, incident_id).signal(IncidentWorkflow.event, payload))
    _emit(as_json, {"sent": name}, lambda: out.print(f"event sent: {name}"))


def _decide(
    incident_id: str,
    step: str,
    actor: str,
    role: str,
    reason: str,
    approve: bool,
    by_signal: bool,
    as_json: bool,
) -> None:
    request = ApprovalRequest(
        step_id=step, actor=actor or _default_actor(), role=role, reason=reason
    )
    if by_signal:
        sig = IncidentWorkflow.approve_signal if approve else IncidentWorkflow.reject_signal
        _run(lambda c: _handle(c, incident_id).signal(sig, request))
        _emit(as_json, {"sent": step}, lambda: out.print("decision sent by signal"))
        return
    update = IncidentWorkflow.approve if approve else IncidentWorkflow.reject
    result = _update(incident_id, update, request)
    _emit(as_json, result, lambda: out.print(f"{result.step_id}: {result.outcome}"))


RoleOpt = Annotated[str, typer.Option(help="Your role, e.g. legal.")]
ReasonOpt = Annotated[str, typer.Option(help="The basis for the decision.")]
SignalOpt = Annotated[bool, typer.Option("--signal", help="Send as a signal, not an Update.")]


@app.command("approve")
def approve(
    incident_id: str,
    step: str,
    role: RoleOpt,
    reason: ReasonOpt,
    actor: ActorOpt = "",
    signal: SignalOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Approve a gated step (refused for a wrong role, your own request, or a decided step)."""
    _decide(incident_id, step, actor, role, reason, True, signal, as_json)


@app.command("reject")
def reject(
    incident_id: str,
    step: str,
    role: RoleOpt,
    reason: ReasonOpt,
    actor: ActorOpt = "",
    signal: SignalOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Reject a gated step."""
    _decide(incident_id, step, actor, role, reason, False, signal, as_json)


# ------------------------------------------------------------------------------------ reading


@app.command("status")
def status(incident_id: str, as_json: JsonOpt = False) -> None:
    """Current steps, pending approvals and live SLA clocks."""
    st: IncidentStatus = _run(lambda c: _handle(c, incident_id).query(IncidentWorkflow.status))
    _emit(as_json, st, lambda: _print_status(st))


def _print_status(st: IncidentStatus) -> None:
    now = datetime.now(UTC)
    breached = " [red]SLA BREACHED[/red]" if st.sla_breached else ""
    out.print(
        f"[bold]{st.incident_id}[/bold] {st.severity.upper()} {st.status} "
        f"owner={st.owner}{breached}"
    )
    out.print(f"playbook {st.playbook} v{st.playbook_version} {st.playbook_hash}")
    out.print(f"summary: {st.summary}")
    table = Table("step", "kind", "owner", "since")
    for s in st.active_steps:
        table.add_row(s.step_id, s.kind, s.owner or "", s.started_at.isoformat(timespec="seconds"))
    out.print(table)
    for a in st.pending_approvals:
        roles = "/".join(a.second_roles if a.decisions and a.second_roles else a.roles)
        out.print(f"awaiting decision: {a.step_id} from {roles} (requested by {a.requested_by})")
    clocks_table = Table("SLA clock", "kind", "state", "due", "left")
    for c in st.clocks:
        left = c.due_at - now if c.due_at and c.state not in ("met", "met_late") else None
        remaining = (
            clocks.format_remaining(left)
            if left is not None
            else ("paused" if c.state == "paused" else "-")
        )
        due = c.due_at.isoformat(timespec="seconds") if c.due_at else "-"
        clocks_table.add_row(c.name, c.kind, c.state, due, remaining)
    out.print(clocks_table)


@app.command("timeline")
def timeline(incident_id: str, as_json: JsonOpt = False) -> None:
    """Who did what, when, against which SLA."""
    entries: list[TimelineEntry] = _run(
        lambda c: _handle(c, incident_id).query(IncidentWorkflow.timeline)
    )
    _emit(as_json, entries, lambda: print_timeline(entries))


def print_timeline(entries: list[TimelineEntry]) -> None:
    """One line per entry: readable in a terminal, a log or a case file."""
    for e in entries:
        who = f"{e.actor} ({e.role})" if e.role else e.actor
        text = " ".join(part for part in (e.kind.ljust(18), e.step, e.detail) if part)
        out.print(f"{e.seq:>3} {e.at:%Y-%m-%d %H:%M:%S}Z {who:<24} {text}{_sla_note(e)}",
                  markup=False)  # fmt: skip


def _sla_note(entry: TimelineEntry) -> str:
    if not entry.sla:
        return ""
    if entry.due_at and entry.sla not in ("met", "met_late"):
        return f" [SLA {entry.sla}, due {entry.due_at:%Y-%m-%d %H:%M}Z]"
    return f" [SLA {entry.sla}]"


@app.command("list")
def list_(
    open_only: Annotated[bool, typer.Option("--open", help="Only incidents not closed.")] = False,
    severity: Annotated[str | None, typer.Option(help="Filter by severity.")] = None,
    playbook: Annotated[str | None, typer.Option(help="Filter by playbook.")] = None,
    breached: Annotated[bool, typer.Option("--breached", help="Only SLA-breached.")] = False,
    limit: int = 100,
    as_json: JsonOpt = False,
) -> None:
    """Incidents by their search attributes (eventually consistent, like all visibility)."""
    clauses = ["WorkflowType = 'IncidentWorkflow'"]
    if open_only:
        clauses.append("IncidentStatus != 'closed'")
    if severity:
        clauses.append(f"IncidentSeverity = '{_safe(severity)}'")
    if playbook:
        clauses.append(f"IncidentPlaybook = '{_safe(playbook)}'")
    if breached:
        clauses.append("SlaBreached = true")
    query = " AND ".join(clauses)

    async def fetch(client: Client) -> list[dict[str, Any]]:
        rows = []
        async for wf in client.list_workflows(query, limit=limit):
            attrs = {k.name: v for k, v in wf.typed_search_attributes}
            rows.append(
                {
                    "incident_id": wf.id.removeprefix("incident-"),
                    "status": attrs.get("IncidentStatus"),
                    "severity": attrs.get("IncidentSeverity"),
                    "playbook": attrs.get("IncidentPlaybook"),
                    "sla_breached": attrs.get("SlaBreached", False),
                    "opened_at": wf.start_time.isoformat(timespec="seconds"),
                }
            )
        return rows

    rows = _run(fetch)

    def human() -> None:
        table = Table("incident", "severity", "status", "playbook", "breached", "opened")
        for r in rows:
            table.add_row(
                r["incident_id"],
                str(r["severity"]),
                str(r["status"]),
                str(r["playbook"]),
                "yes" if r["sla_breached"] else "",
                r["opened_at"],
            )
        out.print(table)

    _emit(as_json, rows, human)


def _safe(value: str) -> str:
    if not value.replace("-", "").replace("_", "").isalnum():
        raise CliError(f"invalid filter value {value!r}")
    return value


@app.command("lint")
def lint(
    files: Annotated[list[Path] | None, typer.Argument()] = None, as_json: JsonOpt = False
) -> None:
    """Check playbooks; every problem as file:line: field: message, exit 1 if any."""
    paths = files or sorted(get_settings().playbooks_dir.glob("*.yaml"))
    errors = lint_files(paths)

    def human() -> None:
        for error in errors:
            print(error)

    _emit(as_json, [e.__dict__ for e in errors], human)
    if not as_json and not errors:
        print(f"{len(paths)} playbook(s) OK")
    if errors:
        raise typer.Exit(1)


@app.command("playbooks")
def playbooks(as_json: JsonOpt = False) -> None:
    """The playbooks available to `incident open`, with their content hashes."""
    loaded = list_playbooks(get_settings().playbooks_dir)
    rows: list[dict[str, Any]] = [
        {
            "name": lp.playbook.name,
            "version": lp.playbook.version,
            "title": lp.playbook.title,
            "default_severity": lp.playbook.default_severity,
            "hash": lp.content_hash,
        }
        for lp in loaded
    ]

    def human() -> None:
        table = Table("name", "v", "severity", "title", "hash")
        for r in rows:
            table.add_row(
                r["name"], str(r["version"]), r["default_severity"], r["title"], r["hash"][:19]
            )
        out.print(table)

    _emit(as_json, rows, human)


# ------------------------------------------------------------------------- stack, worker, demo


@app.command("up")
def up() -> None:
    """Start the embedded stack (Temporal dev server, emulators, intake, worker) until Ctrl-C."""
    from stack import run_stack

    run_stack(get_settings())


@app.command("worker")
def worker_() -> None:
    """Run only the workers against the configured Temporal (scale out by running more)."""
    import worker

    worker.main()


@app.command("demo")
def demo() -> None:
    """Run one sample critical incident end to end on a fresh embedded stack."""
    import demo as demo_module

    demo_module.main()


# ------------------------------------------------------------------------------------- main


def main() -> None:
    """Entry point: run the command, print one-line errors, exit without the SDK teardown."""
    code = 0
    try:
        result = app(standalone_mode=False)
        code = result if isinstance(result, int) else 0  # click returns typer.Exit's code here
    except click.exceptions.Exit as exit_:
        code = exit_.exit_code
    except click.exceptions.Abort:
        code = 130
    except click.ClickException as err:
        err.show()
        code = err.exit_code
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        code = 1
    except (OpenError, ValidationError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        code = 1
    except PlaybookError as err:
        lines = [str(e) for e in err.errors] or [str(err)]
        print("error: " + "\n".join(lines), file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _one_line(err: Exception) -> str:
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}"
    return str(err)


if __name__ == "__main__":
    main()
