"""The `incident` command: mounts each room's command group and is the one error/exit path.

Commanders, Legal, auditors and the team lead drive incidents from a terminal; each room owns its
commands (``client/cli.py`` through the API, ``playbooks/cli.py``, ``audit/cli.py``, ``reports/cli.py``,
``stack/cli.py``). Errors are one line on stderr with a non-zero exit (usage errors 2), never a
traceback; `--json` prints machine-readable output.

The top-level group is built as commands are asked for (``Rooms``): an API client's command
(``client/``: open, status, list, approve, login ...) alone, loading neither Temporal nor the
records database, so it starts in a fraction of a second (``make bench-cli``); every other room's
commands together, on the first name that is not a client's or when the whole list is asked for
(`incident --help`, a typo's suggestions). Every command ends through ``process.exit_process``.
"""

from __future__ import annotations

import sys
from functools import cache

import typer
from pydantic import ValidationError
from typer._click import Command, Context  # typer vendors click
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup
from typer.models import CommandInfo

from client.assist import assist_client_app
from client.cli import incidents_app
from client.session import session_app
from datadir import private_umask
from process import exit_process
from terminal import CliError


def _name(info: CommandInfo) -> str:
    return info.name or typer.main.get_command_name(getattr(info.callback, "__name__", ""))


# The API's clients, by command name, in the order `incident --help` lists them first.
CLIENT_COMMANDS = {_name(info): info for group in (incidents_app, assist_client_app, session_app)
                   for info in group.registered_commands}  # fmt: skip


@cache
def operator_commands() -> dict[str, Command]:
    """Every command of the rooms that work on Temporal or the records themselves, by name, in
    the order `incident --help` lists them (imported here, on first need; built once)."""
    from assist.cli import assist_app
    from audit.cli import audit_app
    from incidents.doctor import doctor_app
    from incidents.purge import purge_app
    from insights.cli import insights_app
    from playbooks.cli import playbooks_app
    from reports.cli import reports_app, schedule_app
    from roster.cli import oncall_app, people_app, roster_app, token_app
    from stack.cli import stack_app

    rooms = typer.Typer()
    rooms.add_typer(doctor_app, name="doctor")
    rooms.add_typer(purge_app)
    rooms.add_typer(playbooks_app)
    rooms.add_typer(reports_app)
    rooms.add_typer(insights_app)
    rooms.add_typer(audit_app, name="audit")
    rooms.add_typer(schedule_app, name="schedule")
    rooms.add_typer(people_app, name="people")
    rooms.add_typer(roster_app, name="roster")
    rooms.add_typer(token_app, name="token")
    rooms.add_typer(oncall_app)
    rooms.add_typer(stack_app)
    rooms.add_typer(assist_app)
    return dict(typer.main.get_group(rooms).commands)


class Rooms(TyperGroup):
    """The `incident` group: a client's command is built alone when named (typer builds a group's
    commands all at once), the rest all together on the first other name or listing."""

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands:
            if cmd_name in CLIENT_COMMANDS:
                self.commands[cmd_name] = _client_command(cmd_name)
            else:
                self._mount_all()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: Context) -> list[str]:
        self._mount_all()
        order = [*CLIENT_COMMANDS, *operator_commands()]
        return [*order, *(name for name in super().list_commands(ctx) if name not in order)]

    def _mount_all(self) -> None:
        for name in CLIENT_COMMANDS:
            if name not in self.commands:
                self.commands[name] = _client_command(name)
        for name, command in operator_commands().items():
            self.commands.setdefault(name, command)


def _client_command(name: str) -> Command:
    return typer.main.get_command_from_info(
        CLIENT_COMMANDS[name],
        pretty_exceptions_short=app.pretty_exceptions_short,
        rich_markup_mode=app.rich_markup_mode,
    )


def _incident() -> None:
    """Runs before any command, and does nothing: with it typer builds ``Rooms`` as a group even
    though every command comes from ``Rooms`` itself."""


app = typer.Typer(
    cls=Rooms,
    callback=_incident,
    help="Trust & Safety incident playbooks on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def main() -> None:
    """Entry point: run the command, print one-line errors, exit without the interpreter's
    teardown. Whatever a command writes (the records database, keys, an export) is private:
    umask 077."""
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
    except ValidationError as err:
        return _fail(_one_line(err), 1)
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        return _fail(f"{where}{err.strerror or err}", 1)
    except Exception as err:  # noqa: BLE001 - the last guard: one line, never a traceback
        return _fail(_refusal(err) or f"unexpected {type(err).__name__}: {_one_line(err)}", 1)


def _refusal(err: Exception) -> str | None:
    """The message of a refusal only the operator rooms raise: ``InvalidRequest`` (the front door
    to incidents) or ``PlaybookError`` (a playbook that does not load). Their modules are asked
    only once loaded: a command that never loaded one cannot have raised its error."""
    if "incidents.service" in sys.modules:
        from incidents.service import InvalidRequest

        if isinstance(err, InvalidRequest):
            return _one_line(err)
    if "playbooks.loader" in sys.modules:
        from playbooks.loader import PlaybookError

        if isinstance(err, PlaybookError):
            return "\n".join(str(e) for e in err.errors) or str(err)
    return None


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
