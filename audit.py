"""Auditors' tools: ``incident audit export | replay | verify``.

``verify`` needs only the records database. ``export`` reads Temporal and falls back to the archive
(``records.archive_history``) once retention has removed the history; ``replay`` runs today's code
over exported or archived histories. Mount with ``app.add_typer(audit_app, name="audit")``.
"""

from __future__ import annotations

import typer

from audit_verify import verify

audit_app = typer.Typer(
    help="Audit log verification, history export and replay.", no_args_is_help=True
)


@audit_app.callback()
def audit_group() -> None:
    """Audit log verification, history export and replay (for auditors and case files)."""


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
