"""Commands that run processes: ``incident up`` (the embedded stack), ``worker`` and ``demo``.

Imported lazily inside each command so that everyday commands (status, approve) do not pay for the
dev server, emulators and worker modules.
"""

from __future__ import annotations

import typer

from settings import get_settings

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
