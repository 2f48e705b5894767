"""The `incident` command: mounts each room's command group and is the one error/exit path.

Commanders, Legal, auditors and the team lead drive incidents from a terminal; each room owns its
commands (``incidents/cli.py``, ``playbooks/cli.py``, ``audit/cli.py``, ``reports/cli.py``,
``stack/cli.py``). Errors are one line on stderr with a non-zero exit (usage errors 2), never a
traceback; `--json` prints machine-readable output. The process ends through
``connection.exit_process`` once its work is done.
"""

from __future__ import annotations

import sys

import click
import typer
from pydantic import ValidationError

from audit.cli import audit_app
from connection import exit_process
from incidents.cli import incidents_app
from incidents.service import InvalidRequest
from playbooks.cli import playbooks_app
from playbooks.loader import PlaybookError
from reports.cli import reports_app, schedule_app
from stack.cli import stack_app
from terminal import CliError

app = typer.Typer(
    help="Trust & Safety incident playbooks on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(incidents_app)
app.add_typer(playbooks_app)
app.add_typer(reports_app)
app.add_typer(audit_app, name="audit")
app.add_typer(schedule_app, name="schedule")
app.add_typer(stack_app)


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
    except (InvalidRequest, ValidationError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        code = 1
    except PlaybookError as err:
        lines = [str(e) for e in err.errors] or [str(err)]
        print("error: " + "\n".join(lines), file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    exit_process(code)


def _one_line(err: Exception) -> str:
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}"
    return str(err)


if __name__ == "__main__":
    main()
