"""Playbook authors' commands: ``incident lint`` and ``incident playbooks``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from playbooks.loader import lint_files, scan_playbooks
from settings import get_settings
from terminal import JsonOpt, emit, out

playbooks_app = typer.Typer()


@playbooks_app.command("lint")
def lint(
    files: Annotated[list[Path] | None, typer.Argument()] = None, as_json: JsonOpt = False
) -> None:
    """Check playbooks; every problem as file:line: field: message, exit 1 if any."""
    paths = files or sorted(get_settings().playbooks_dir.glob("*.yaml"))
    errors = lint_files(paths)

    def human() -> None:
        for error in errors:
            print(error)

    emit(as_json, [e.__dict__ for e in errors], human)
    if not as_json and not errors:
        print(f"{len(paths)} playbook(s) OK")
    if errors:
        raise typer.Exit(1)


@playbooks_app.command("playbooks")
def playbooks(as_json: JsonOpt = False) -> None:
    """The playbooks available to `incident open`, with their content hashes."""
    loaded, problems = scan_playbooks(get_settings().playbooks_dir)
    for problem in problems:  # one broken file never hides the others
        print(f"warning: {problem}", file=sys.stderr)
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

    emit(as_json, rows, human)
