"""Commands that run processes: ``incident up`` (the embedded stack), ``worker``, ``demo``, and
``plan`` (a what-if run of a playbook on the time-skipping test server, ``stack/plan.py``).

Imported lazily inside each command so that everyday commands (status, approve) do not pay for the
dev server, emulators and worker modules.
"""

from __future__ import annotations

from typing import Annotated

import typer

from settings import get_settings
from terminal import JsonOpt, pairs

stack_app = typer.Typer()


@stack_app.command("up")
def up() -> None:
    """Start the embedded stack (Temporal dev server, emulators, intake, worker) until Ctrl-C."""
    from stack.up import run_stack

    run_stack(get_settings())


@stack_app.command("worker")
def worker_() -> None:
    """Run only the workers against the configured Temporal (scale out by running more)."""
    import worker

    worker.main()


@stack_app.command("demo")
def demo() -> None:
    """Run one sample critical incident end to end on a fresh embedded stack."""
    from stack.demo import main

    main()


@stack_app.command("plan")
def plan(
    playbook: Annotated[list[str], typer.Argument(help="Playbook names; none: every one.")] = [],  # noqa: B006
    field: Annotated[list[str], typer.Option("--field", help="key=value, repeatable.")] = [],  # noqa: B006
    severity: Annotated[
        str | None, typer.Option(help="sev0..sev3; default: the playbook's.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What-if: run the playbook on the time-skipping test server with every decision taken at its
    deadline and print the SLA plan (starts, warnings, breaches, escalations, statutory clocks)."""
    import asyncio
    import json

    from assist.plan import render
    from playbooks.loader import list_playbooks
    from playbooks.schema import SEVERITIES
    from stack.plan import plans

    known = {lp.playbook.name: lp for lp in list_playbooks()}
    unknown = [name for name in playbook if name not in known]
    if unknown:
        raise typer.BadParameter(f"unknown playbook {unknown[0]!r}; known: "
                                 f"{', '.join(sorted(known))}", param_hint="PLAYBOOK")  # fmt: skip
    if severity is not None and severity not in SEVERITIES:
        raise typer.BadParameter(f"must be one of {', '.join(SEVERITIES)}, not {severity!r}",
                                 param_hint="--severity")  # fmt: skip
    chosen = [known[name] for name in playbook] or list(known.values())
    found = asyncio.run(plans(chosen, pairs(field, "--field"), severity))
    if as_json:
        typer.echo(json.dumps([p.as_json() for p in found], indent=2))
        return
    for p in found:
        typer.echo(render(p) + f"(planned in {p.wall_seconds:.2f} s of wall time)\n")
