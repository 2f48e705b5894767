"""Auditors' commands: ``incident audit export | replay | verify``.

``verify`` needs only the records database. ``export`` reads Temporal and the archive written at close
(so it still works once retention has deleted the history); ``replay`` runs today's code over exported
files or every closed incident and prints the case file rebuilt from the histories alone.
"""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from temporalio.client import Client

from audit.bundle import tamper_failures
from audit.decrypt import split_unreadable
from audit.export import closed_items, export_incident
from audit.render import render_md, render_text
from audit.replay import Loaded, group_by_incident, load_file, rebuild, replay
from audit.verify import verify
from connection import connect, exit_process
from datadir import write_output
from encryption.keystore import DataKeyError
from encryption.master import MasterKeyError
from records.purge import purged
from records.sealed import SealedColumnError
from settings import get_settings

audit_app = typer.Typer(
    help="Audit log verification, history export and replay.", no_args_is_help=True
)


@audit_app.callback()
def audit_group() -> None:
    """Audit log verification, history export and replay (for auditors and case files)."""


async def _client_or_none() -> Client | None:
    """A Temporal client, or None (with a notice) when the cluster is unreachable."""
    try:
        return await asyncio.wait_for(connect(), get_settings().cli_timeout_seconds)
    except Exception as err:  # noqa: BLE001 - any connection failure means "archive only"
        typer.echo(f"Temporal unreachable ({err}); using the archive only", err=True)
        return None


@audit_app.command("export")
def export_command(
    incident_id: str = typer.Argument(..., help="Incident id (workflow incident-<id>)"),
    out: Path | None = typer.Option(None, "--out", help="Write here instead of stdout"),
    decrypt: bool = typer.Option(
        False, "--decrypt", help="Open every sealed payload and audit column (needs the keys)"
    ),
) -> None:
    """Write the incident's Temporal history (all runs), a manifest and its signed audit rows as
    JSON: sealed (its payloads and personal columns encrypted) unless --decrypt."""

    async def go() -> dict[str, Any]:
        return await export_incident(incident_id, await _client_or_none(), decrypt=decrypt)

    try:
        document = asyncio.run(go())
    except LookupError as err:  # unknown, or purged (when, by whom, why)
        typer.echo(str(err), err=True)
        exit_process(1)
    except (DataKeyError, MasterKeyError, SealedColumnError) as err:
        typer.echo(f"cannot decrypt incident {incident_id} here: {err}", err=True)
        exit_process(1)
    text = json.dumps(document, indent=2)
    if out is None:
        typer.echo(text)
    else:
        write_output(out, text + "\n")
        manifest, audit = document["manifest"], document["audit"]
        typer.echo(
            f"exported {len(manifest['runs'])} {manifest['encryption']} run(s) of incident "
            f"{incident_id} "
            f"(playbook {manifest['playbook']} {manifest['playbook_hash']}, from "
            f"{manifest['source']}), {len(audit['rows'])} audit rows and "
            f"{len(audit['checkpoints'])} signed checkpoints to {out}",
            err=True,
        )
    exit_process(0)


# --- replay ------------------------------------------------------------------------------------


class ReplayFormat(StrEnum):
    text = "text"
    json = "json"
    md = "md"


TAMPERED = 3  # the exit code when an exported file was altered after it was written
UNREADABLE = 4  # an export whose incident was purged, or sealed under a key not held here


async def replay_items(
    items: list[Loaded], fmt: ReplayFormat, workflows: list[type] | None = None
) -> tuple[int, str]:
    """Replay, rebuild one case file per incident, render; exit code 3 when a bundle was
    tampered with (``audit/bundle.py``, the manifest's sha256), else 1 on any failure, else 4
    when an export cannot be opened here (its incident purged, or no key: one line each)."""
    items, gone = split_unreadable(items)
    code, text = await _replay_readable(items, fmt, workflows) if items else (0, "")
    if fmt == ReplayFormat.json:
        cases = json.loads(text) if text else []
        cases += [{"incident_id": i, "workflow_id": w, "unreadable": why} for i, w, why in gone]
        text = json.dumps(cases, indent=2) + "\n"
    else:
        text = "".join(f"UNREADABLE: {why}\n" for _, _, why in gone) + text
    return (code or (UNREADABLE if gone else 0)), text


async def _replay_readable(
    items: list[Loaded], fmt: ReplayFormat, workflows: list[type] | None
) -> tuple[int, str]:
    failures = tamper_failures(items) + await replay(items, workflows)
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
    if any(f.kind == "tampered" for f in failures):
        return TAMPERED, text
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
        write_output(out, text)
        typer.echo(f"case file written to {out}", err=True)
    else:
        typer.echo(text, nl=False)
    if code == 1:
        typer.echo("replay FAILED: today's code does not reproduce a recorded history", err=True)
    if code == UNREADABLE:
        typer.echo(
            "replay: an export cannot be opened here (see UNREADABLE above): its incident was "
            "purged, or it is sealed under a key this installation does not hold",
            err=True,
        )
    if code == TAMPERED:
        typer.echo(
            "replay TAMPERED: an exported file was altered after it was written (its histories "
            "or audit rows no longer match their hashes and signed checkpoints)",
            err=True,
        )
    return code


@audit_app.command("replay")
def replay_command(
    files: list[Path] = typer.Argument(
        None, help="Exported or recorded history files", exists=True, dir_okay=False
    ),
    all_closed: bool = typer.Option(False, "--all-closed", help="Every closed incident"),
    format: ReplayFormat = typer.Option(ReplayFormat.text, "--format", help="text, json or md"),
    out: Path | None = typer.Option(None, "--out", help="Write the case file here"),
) -> None:
    """Replay histories with today's code; print the timeline rebuilt from them; exit 1 on drift,
    3 when an exported file was tampered with, 4 when one cannot be opened here (purged)."""
    exit_process(replay_main(files or [], all_closed, format, out))


# --- verify ------------------------------------------------------------------------------------


@audit_app.command("verify")
def verify_command(
    incident_id: str | None = typer.Argument(None, help="Only this incident (default: whole log)"),
) -> None:
    """Recompute the audit log's hash chain and check its signed checkpoints; exit 1 at the first
    broken row, or for an incident the log has never seen."""
    try:
        verdict = verify(incident_id)
    except LookupError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    scope = f"incident {incident_id}" if incident_id else "audit log"
    if verdict.broken is not None:
        typer.echo(f"BROKEN {scope}: {verdict.broken.describe()}", err=True)
        typer.echo(f"{verdict.rows} rows verified before the break", err=True)
        raise typer.Exit(1)
    typer.echo(f"OK {scope}: {verdict.rows} rows, chain intact; log head {verdict.head_hash}")
    if verdict.checkpoints:
        keys = ", ".join(verdict.key_ids)
        typer.echo(f"{verdict.checkpoints} signed checkpoints hold (audit key {keys})")
    for note in verdict.notes:
        typer.echo(note)
    purge = purged(incident_id) if incident_id else None
    if purge is not None:
        typer.echo(f"{purge.line()} (its sealed rows are shredded; the chain still holds)")
