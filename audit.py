"""Auditors' tools: ``incident audit export | replay | verify``.

``verify`` needs only the records database. ``export`` reads Temporal and the archive written at close
by ``records.archive_history`` (so it still works once retention has deleted the history); ``replay``
runs today's code over exported files or every closed incident and prints the case file rebuilt from
the histories alone. Mount with ``app.add_typer(audit_app, name="audit")``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from temporalio.client import Client, WorkflowHistory

from activities.archive import archived_runs, fetch_chain, fetch_run, history_of, run_manifest
from audit_replay import (
    EXPORT_FORMAT,
    CaseFile,
    Loaded,
    ReplayFailure,
    group_by_incident,
    load_file,
    rebuild,
    replay,
)
from audit_verify import verify

audit_app = typer.Typer(
    help="Audit log verification, history export and replay.", no_args_is_help=True
)
CLOSED_QUERY = "WorkflowType = 'IncidentWorkflow' AND ExecutionStatus != 'Running'"


@audit_app.callback()
def audit_group() -> None:
    """Audit log verification, history export and replay (for auditors and case files)."""


# --- export ------------------------------------------------------------------------------------


def _started(history: WorkflowHistory) -> datetime:
    return history.events[0].event_time.ToDatetime(tzinfo=UTC)


async def export_incident(incident_id: str, client: Client | None) -> dict[str, Any]:
    """The incident's history (every run) as SDK history JSON, plus a manifest.

    Archived runs come from the records database; Temporal adds what it still has (and the
    running tail of an open incident). Raises LookupError when neither knows the incident.
    """
    workflow_id = f"incident-{incident_id}"
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
    }


async def _client_or_none() -> Client | None:
    """A Temporal client, or None (with a notice) when the cluster is unreachable."""
    from connection import connect
    from settings import get_settings

    try:
        return await asyncio.wait_for(connect(), get_settings().cli_timeout_seconds)
    except Exception as err:  # noqa: BLE001 - any connection failure means "archive only"
        typer.echo(f"Temporal unreachable ({err}); using the archive only", err=True)
        return None


def _finish(code: int) -> None:
    """End without interpreter teardown: the SDK's native threads can abort it (sdk-python#300)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@audit_app.command("export")
def export_command(
    incident_id: str = typer.Argument(..., help="Incident id (workflow incident-<id>)"),
    out: Path | None = typer.Option(None, "--out", help="Write here instead of stdout"),
) -> None:
    """Write the incident's Temporal history (all runs) and a manifest as JSON."""

    async def go() -> dict[str, Any]:
        return await export_incident(incident_id, await _client_or_none())

    try:
        document = asyncio.run(go())
    except LookupError as err:
        typer.echo(str(err), err=True)
        _finish(1)
    text = json.dumps(document, indent=2)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text + "\n")
        manifest = document["manifest"]
        typer.echo(
            f"exported {len(manifest['runs'])} run(s) of incident {incident_id} "
            f"(playbook {manifest['playbook']} {manifest['playbook_hash']}, from "
            f"{manifest['source']}) to {out}",
            err=True,
        )
    _finish(0)


# --- replay ------------------------------------------------------------------------------------


class ReplayFormat(StrEnum):
    text = "text"
    json = "json"
    md = "md"


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
                    incident = wf.id.removeprefix("incident-")
                    items[(wf.id, wf.run_id)] = Loaded(incident, history, "temporal")
    return list(items.values())


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _who(actor: str, role: str | None) -> str:
    return f"{actor} ({role})" if role else actor


def _sla(entry: Any) -> str:
    if entry.sla is None:
        return "-"
    return f"{entry.sla}, due {_when(entry.due_at)}" if entry.due_at else entry.sla


def _message_line(m: Any) -> str:
    p = m.payload if isinstance(m.payload, dict) else {"value": m.payload}
    who = _who(str(p.get("actor", "?")), p.get("role"))
    on = f" on {p['step_id']}" if p.get("step_id") else ""
    why = p.get("reason") or p.get("name") or ""
    return f"{_when(m.at)}  event {m.event_id}: {m.kind} {m.name} by {who}{on}: {why}".rstrip(": ")


def _failure_text(f: ReplayFailure) -> str:
    where = f"event {f.event_id}" if f.event_id is not None else "an unidentified event"
    return (
        f"NON-DETERMINISM in incident {f.incident_id} (workflow {f.workflow_id}, run {f.run_id}) "
        f"at {where}: {f.reason}\n  replayer said: {f.detail[:400]}"
    )


def render_text(case: CaseFile) -> str:
    head = [
        f"Incident {case.incident_id}: playbook {case.playbook} v{case.playbook_version}, "
        f"hash {case.playbook_hash}",
        f"Opened by {case.opened_by} as {case.severity_at_open}: {case.summary}",
        f"Workflow {case.workflow_id}, {len(case.runs)} run(s): "
        + "; ".join(f"{r.run_id} {r.status} ({r.events} events)" for r in case.runs),
        "Replay with today's code: "
        + ("FAILED" if case.failures else "OK, every decision matches the recorded history"),
        "",
        f"{'when (UTC)':<20} {'seq':>4}  {'what':<20} {'who':<20} {'step':<22} SLA",
    ]
    for e in case.timeline:
        head.append(
            f"{_when(e.at):<20} {e.seq:>4}  {e.kind:<20} {_who(e.actor, e.role):<20} "
            f"{e.step or '-':<22} {_sla(e)}"
        )
        if e.detail:
            head.append(f"{'':<27}{e.detail}")
    if case.messages:
        head += ["", "Decisions and commands received (Updates and signals):"]
        head += [f"  {_message_line(m)}" for m in case.messages]
    head += [_failure_text(f) for f in case.failures]
    return "\n".join(head) + "\n"


def render_md(case: CaseFile) -> str:
    lines = [
        f"# Incident {case.incident_id}",
        "",
        f"- Playbook: **{case.playbook}** v{case.playbook_version}, hash `{case.playbook_hash}`",
        f"- Opened by {case.opened_by} as {case.severity_at_open}: {case.summary}",
        f"- Workflow `{case.workflow_id}`, runs: "
        + ", ".join(f"`{r.run_id}` ({r.status})" for r in case.runs),
        f"- Replay with today's code: {'**FAILED**' if case.failures else 'OK'}",
        "",
        "| When (UTC) | Seq | What | Who | Step | SLA | Detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in case.timeline:
        detail = e.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {_when(e.at)} | {e.seq} | {e.kind} | {_who(e.actor, e.role)} | {e.step or ''} "
            f"| {_sla(e)} | {detail} |"
        )
    if case.messages:
        lines += ["", "## Decisions and commands received", ""]
        lines += [f"- {_message_line(m)}" for m in case.messages]
    if case.failures:
        lines += ["", "## Replay failures", ""] + [f"- {_failure_text(f)}" for f in case.failures]
    return "\n".join(lines) + "\n"


async def replay_items(
    items: list[Loaded], fmt: ReplayFormat, workflows: list[type] | None = None
) -> tuple[int, str]:
    """Replay, rebuild one case file per incident, render; exit code 1 on any failure."""
    failures = await replay(items, workflows)
    cases = []
    for workflow_id, runs in group_by_incident(items).items():
        case = rebuild(runs[0].incident_id, [r.history for r in runs])
        case.failures = [f for f in failures if f.workflow_id == workflow_id]
        cases.append(case)
    if fmt == ReplayFormat.json:
        text = json.dumps([c.model_dump(mode="json") for c in cases], indent=2) + "\n"
    else:
        render = render_md if fmt == ReplayFormat.md else render_text
        text = "\n".join(render(c) for c in cases)
    return (1 if failures else 0), text


def replay_main(files: list[Path], all_closed: bool, fmt: ReplayFormat, out: Path | None) -> int:
    """The command's body (testable without the process exit)."""
    items = [item for path in files for item in load_file(path)]

    async def go() -> tuple[int, str]:
        if all_closed:
            items.extend(await closed_items(await _client_or_none()))
        if not items:
            return 2, ""
        return await replay_items(items, fmt)

    code, text = asyncio.run(go())
    if code == 2:
        typer.echo("nothing to replay: give history files or --all-closed", err=True)
    elif out is not None:
        out.write_text(text)
        typer.echo(f"case file written to {out}", err=True)
    else:
        typer.echo(text, nl=False)
    if code == 1:
        typer.echo("replay FAILED: today's code does not reproduce a recorded history", err=True)
    return code


@audit_app.command("replay")
def replay_command(
    files: list[Path] = typer.Argument(None, help="Exported or recorded history files"),
    all_closed: bool = typer.Option(False, "--all-closed", help="Every closed incident"),
    format: ReplayFormat = typer.Option(ReplayFormat.text, "--format", help="text, json or md"),
    out: Path | None = typer.Option(None, "--out", help="Write the case file here"),
) -> None:
    """Replay histories with today's code; print the timeline rebuilt from them; exit 1 on drift."""
    _finish(replay_main(files or [], all_closed, format, out))


# --- verify ------------------------------------------------------------------------------------


@audit_app.command("verify")
def verify_command(
    incident_id: str | None = typer.Argument(None, help="Only this incident (default: whole log)"),
) -> None:
    """Recompute the audit log's hash chain; exit 1 at the first broken row."""
    verdict = verify(incident_id)
    scope = f"incident {incident_id}" if incident_id else "audit log"
    if verdict.broken is not None:
        typer.echo(f"BROKEN {scope}: {verdict.broken.describe()}", err=True)
        typer.echo(f"{verdict.rows} rows verified before the break", err=True)
        raise typer.Exit(1)
    typer.echo(f"OK {scope}: {verdict.rows} rows, chain intact; log head {verdict.head_hash}")
