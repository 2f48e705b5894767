"""The `incident` command: mounts each room's command group and is the one error/exit path.

Commanders, Legal, auditors and the team lead drive incidents from a terminal; each room owns its
commands (``client/cli.py`` through the API, ``playbooks/cli.py``, ``audit/cli.py``, ``reports/cli.py``,
``stack/cli.py``). Errors are one line on stderr with a non-zero exit (usage errors 2), never a
traceback; `--json` prints machine-readable output. The process ends through
``connection.exit_process`` once its work is done.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer vendors click

from audit.cli import audit_app
from client.cli import incidents_app
from client.session import session_app
from connection import exit_process
from datadir import private_umask
from incidents.doctor import doctor_app
from incidents.purge import purge_app
from incidents.service import InvalidRequest
from playbooks.cli import playbooks_app
from playbooks.loader import PlaybookError
from reports.cli import reports_app, schedule_app
from roster.cli import oncall_app, people_app, roster_app, token_app
from stack.cli import stack_app
from terminal import CliError

app = typer.Typer(
    help="Trust & Safety incident playbooks on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(incidents_app)
app.add_typer(session_app)
app.add_typer(doctor_app, name="doctor")
app.add_typer(purge_app)
app.add_typer(playbooks_app)
app.add_typer(reports_app)
app.add_typer(audit_app, name="audit")
app.add_typer(schedule_app, name="schedule")
app.add_typer(people_app, name="people")
app.add_typer(roster_app, name="roster")
app.add_typer(token_app, name="token")
app.add_typer(oncall_app)
app.add_typer(stack_app)


def main() -> None:
    """Entry point: run the command, print one-line errors, exit without the SDK teardown.
    Whatever a command writes (the records database, keys, an export) is private: umask 077."""
    private_umask()
    exit_process(run(sys.argv[1:]))


def run(args: list[str]) -> int:
    """Run one command line; every failure becomes one line on stderr and an exit code:
    2 for usage errors (unknown command or option, missing or bad value), 1 for refusals and
    failures, 130 for Ctrl-C."""
    try:
        result = app(args=args, prog_name="incident", standalone_mode=False)
        return result if isinstance(result, int) else 0  # typer returns typer.Exit's code here
    except typer.Exit as exit_:
        return exit_.exit_code
    except NoArgsIsHelpError as err:
        err.show()  # `incident` alone, or a group alone: the help, as a usage error
        return 2
    except UsageError as err:
        return _fail(_usage_line(err), 2)
    except typer.TyperException as err:  # the rest of typer's (vendored click's) errors
        return _fail(str(getattr(err, "message", err)), getattr(err, "exit_code", 1))
    except (typer.Abort, KeyboardInterrupt):
        return 130
    except CliError as err:
        return _fail(str(err), 1)
    except (InvalidRequest, ValidationError) as err:
        return _fail(_one_line(err), 1)
    except PlaybookError as err:
        return _fail("\n".join(str(e) for e in err.errors) or str(err), 1)
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        return _fail(f"{where}{err.strerror or err}", 1)
    except Exception as err:  # noqa: BLE001 - the last guard: one line, never a traceback
        return _fail(f"unexpected {type(err).__name__}: {_one_line(err)}", 1)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _usage_line(err: UsageError) -> str:
    """`incident open: Missing option '--summary'.` (the command, then what is wrong)."""
    command = err.ctx.command_path if err.ctx is not None else "incident"
    return f"{command}: {err.format_message()}"


def _one_line(err: Exception) -> str:
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}"
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    main()
