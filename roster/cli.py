"""Admins' commands for people, the roster and API tokens, and anyone's ``incident oncall``.

Four groups for ``starter.py`` to mount: ``people_app`` (``incident people``), ``roster_app``
(``incident roster``), ``token_app`` (``incident token``) and ``oncall_app`` (the top-level
``incident oncall`` command, mounted without a name). The acting admin is ``$CR_ACTOR``/``$USER``
until the API makes it the signed-in person.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import typer

from datadir import write_output
from playbooks.durations import parse_duration
from records.tables import iso
from roster import passwords, service, tokens, yamlfile
from roster.service import RosterError
from terminal import CliError, JsonOpt, default_actor, emit, out

T = TypeVar("T")

people_app = typer.Typer(help="People and their roles and groups.", no_args_is_help=True)
roster_app = typer.Typer(
    help="On-call rotations, overrides, YAML import/export.", no_args_is_help=True
)
token_app = typer.Typer(help="Personal and service-account API tokens.", no_args_is_help=True)
oncall_app = typer.Typer()


def _do(call: Callable[[], T]) -> T:
    """Run a roster call; its refusal becomes one line (CliError)."""
    try:
        return call()
    except RosterError as err:
        raise CliError(str(err)) from None


def _parse(value: str, option: str) -> datetime:
    """An ISO time as written (naive if no offset); a bad one is a usage error naming the option."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO time", param_hint=option) from None


def _time(value: str | None, option: str) -> datetime:
    """An ISO time (naive: UTC) or ``now`` (the default)."""
    if value is None or value == "now":
        return datetime.now(UTC)
    parsed = _parse(value, option)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _duration(value: str, option: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=option) from None


# --- incident people ---------------------------------------------------------------------------


@people_app.callback()
def people_group() -> None:
    """People and their roles and groups (admins)."""


@people_app.command("add")
def people_add(
    handle: str = typer.Argument(..., help="Their handle, e.g. lena"),
    name: str = typer.Option(..., "--name", help="Display name"),
    email: str | None = typer.Option(None, "--email"),
    role: list[str] = typer.Option([], "--role", help="A role they hold (repeat)"),
    group: list[str] = typer.Option([], "--group", help="A group they belong to (repeat)"),
    as_json: JsonOpt = False,
) -> None:
    """Add a person with their roles and groups."""
    person = _do(
        lambda: service.add_person(
            handle, display_name=name, email=email, roles=role, groups=group, actor=default_actor()
        )
    )
    value = {"handle": person.handle, "roles": sorted(role), "groups": sorted(group)}
    emit(as_json, value, lambda: out.print(f"added {handle} ({name})"))


@people_app.command("list")
def people_list(as_json: JsonOpt = False) -> None:
    """Everyone, with roles, groups and whether they are active."""
    rows = yamlfile.people_rows()

    def human() -> None:
        for r in rows:
            state = "" if r["active"] else "  (deactivated)"
            out.print(
                f"{r['handle']:<16} {r['name']:<24} roles: {','.join(r['roles']) or '-'}  "
                f"groups: {','.join(r['groups']) or '-'}{state}"
            )

    emit(as_json, rows, human)


@people_app.command("deactivate")
def people_deactivate(handle: str = typer.Argument(...)) -> None:
    """Deactivate a person: they hold no role and their tokens stop working at once."""
    changed = _do(lambda: service.deactivate_person(handle, actor=default_actor()))
    out.print(f"deactivated {handle}" if changed else f"{handle} was already deactivated")


@people_app.command("password")
def people_password(
    handle: str = typer.Argument(...),
    stdin: bool = typer.Option(False, "--stdin", help="Read the password from standard input"),
) -> None:
    """Set a person's console password (local accounts; OpenID Connect needs none)."""
    import sys

    if stdin:
        secret = sys.stdin.readline().rstrip("\n")
    else:
        secret = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    _do(lambda: passwords.set_password(handle, secret, actor=default_actor()))
    out.print(f"console password set for {handle}")


# --- incident roster ---------------------------------------------------------------------------


@roster_app.callback()
def roster_group() -> None:
    """On-call rotations and overrides; the roster as a YAML file (admins)."""


@roster_app.command("import")
def roster_import(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A roster YAML file"),
) -> None:
    """Make the roster match the file for everything it names (idempotent)."""
    data = _do(lambda: yamlfile.load(file.read_text()))
    changes = _do(lambda: yamlfile.import_roster(data, actor=default_actor()))
    out.print(f"imported {file}: {changes} change(s)")


@roster_app.command("export")
def roster_export(
    out_file: Path | None = typer.Option(None, "--out", help="Write here instead of stdout"),
) -> None:
    """The whole roster as YAML (what `roster import` reads)."""
    text = yamlfile.dump(yamlfile.export_roster())
    if out_file is None:
        typer.echo(text, nl=False)
    else:
        write_output(out_file, text)
        typer.echo(f"roster written to {out_file}", err=True)


rotation_app = typer.Typer(help="On-call rotations of a role.", no_args_is_help=True)
roster_app.add_typer(rotation_app, name="rotation")


@rotation_app.command("add")
def rotation_add(
    role: str = typer.Argument(..., help="The role it covers: ic, legal ..."),
    name: str = typer.Option(..., "--name", help="The rotation's name, e.g. primary"),
    people: str = typer.Option(..., "--people", help="Handles in order: a,b,c"),
    shift: str = typer.Option("7d", "--shift", help="Shift length: 12h, 7d ..."),
    start: str = typer.Option(..., "--start", help="ISO time the first shift starts"),
    timezone: str = typer.Option("UTC", "--timezone", help="IANA zone for the hand-over time"),
) -> None:
    """Add (or replace) rotation --name of ROLE: --people take turns of --shift from --start."""
    length, begin = _duration(shift, "--shift"), _parse(start, "--start")  # naive: --timezone
    handles = [p.strip() for p in people.split(",") if p.strip()]
    _do(lambda: service.check_zone(timezone))
    _do(
        lambda: service.add_rotation(
            role,
            name=name,
            people=handles,
            shift=length,
            start=begin,
            timezone=timezone,
            actor=default_actor(),
        )
    )
    out.print(f"rotation {name} of {role}: {', '.join(handles)}, every {shift}")


@rotation_app.command("remove")
def rotation_remove(
    role: str = typer.Argument(...),
    name: str = typer.Option(..., "--name", help="The rotation's name"),
) -> None:
    """Remove rotation --name of ROLE."""
    if not _do(lambda: service.remove_rotation(role, name, actor=default_actor())):
        raise CliError(f"no rotation {name} of {role}")
    out.print(f"removed rotation {name} of {role}")


@roster_app.command("override")
def roster_override(
    role: str = typer.Argument(...),
    person: str = typer.Argument(...),
    start: str = typer.Option(..., "--from", help="ISO time"),
    end: str = typer.Option(..., "--to", help="ISO time"),
    reason: str = typer.Option(..., "--reason"),
) -> None:
    """PERSON holds ROLE from --from to --to, ahead of any rotation."""
    begin, finish = _time(start, "--from"), _time(end, "--to")
    override = _do(
        lambda: service.add_override(
            role, person, start=begin, end=finish, reason=reason, actor=default_actor()
        )
    )
    out.print(f"override {override.id}: {person} holds {role} from {iso(begin)} to {iso(finish)}")


work_app = typer.Typer(help="Declared work: projects, training, leave.", no_args_is_help=True)
roster_app.add_typer(work_app, name="work")


@work_app.command("add")
def work_add(
    person: str = typer.Argument(...),
    kind: str = typer.Option(..., "--kind", help="project, training or leave"),
    start: str = typer.Option(..., "--from", help="ISO time"),
    end: str = typer.Option(..., "--to", help="ISO time"),
    note: str = typer.Option("", "--note", help="What it is (no case details)"),
) -> None:
    """Book PERSON on work other than incidents (leave takes them off call in coverage)."""
    from roster.work import add_work

    begin, finish = _time(start, "--from"), _time(end, "--to")
    work = _do(lambda: add_work(person, kind, start=begin, end=finish, note=note,
                                actor=default_actor()))  # fmt: skip
    out.print(f"declared work {work.id}: {person} on {kind} from {iso(begin)} to {iso(finish)}")


@work_app.command("list")
def work_list(as_json: JsonOpt = False) -> None:
    """Every declared work entry, by start."""
    from roster.work import list_work

    rows = list_work()

    def human() -> None:
        for w in rows:
            out.print(f"{w.id}  {w.person}  {w.kind}  {iso(w.start)} -> {iso(w.end)}  {w.note}")

    emit(as_json, [w.model_dump(mode="json") for w in rows], human)


@work_app.command("remove")
def work_remove(work_id: int = typer.Argument(...)) -> None:
    """Remove declared work WORK_ID."""
    from roster.work import remove_work

    if not remove_work(work_id, actor=default_actor()):
        raise CliError(f"no declared work {work_id}")
    out.print(f"removed declared work {work_id}")


# --- incident oncall ---------------------------------------------------------------------------


@oncall_app.command("oncall")
def oncall(
    role: str = typer.Argument(..., help="A role: ic, legal, lers ..."),
    at: str | None = typer.Option(None, "--at", help="ISO time (default: now)"),
    as_json: JsonOpt = False,
) -> None:
    """Who holds ROLE now (or at --at): override, then rotation, then everyone granted it."""
    when = _time(at, "--at")
    people = service.holders(role, when)
    if not people:
        raise CliError(f"no one holds {role} at {iso(when)}")
    emit(
        as_json,
        {"role": role, "at": iso(when), "holders": people},
        lambda: out.print(", ".join(people)),
    )


# --- incident token ----------------------------------------------------------------------------


@token_app.callback()
def token_group() -> None:
    """Personal and service-account API tokens (admins)."""


@token_app.command("create")
def token_create(
    person: str = typer.Argument(...),
    name: str = typer.Option(..., "--name", help="What it is for, e.g. laptop"),
    expires: str = typer.Option("90d", "--expires", help="Lifetime (90d); `never` for none"),
    service_account: bool = typer.Option(False, "--service", help="A service account's token"),
    as_json: JsonOpt = False,
) -> None:
    """Create a token and print its secret, this once."""
    lifetime = None if expires == "never" else _duration(expires, "--expires")
    secret = _do(
        lambda: tokens.create_token(
            person, name=name, expires_in=lifetime, service=service_account, actor=default_actor()
        )
    )
    emit(as_json, {"person": person, "name": name, "secret": secret}, lambda: print(secret))
    typer.echo("this secret is shown once: keep it now", err=True)


@token_app.command("list")
def token_list(person: str | None = typer.Argument(None), as_json: JsonOpt = False) -> None:
    """Tokens (of PERSON, or everyone's): id, name, expiry, last use; never a secret."""
    rows: list[dict[str, Any]] = [tokens.describe(t) for t in tokens.list_tokens(person)]

    def human() -> None:
        for r in rows:
            state = (
                f"revoked {r['revoked_at']}"
                if r["revoked_at"]
                else f"expires {r['expires_at'] or 'never'}"
            )
            used = r["last_used_at"] or "never"
            out.print(f"{r['id']}  {r['person']:<12} {r['name']:<16} {state}  last used {used}")

    emit(as_json, rows, human)


@token_app.command("revoke")
def token_revoke(token_id: str = typer.Argument(...)) -> None:
    """Revoke a token: it stops working at once."""
    changed = _do(lambda: tokens.revoke(token_id, default_actor()))
    out.print(f"revoked {token_id}" if changed else f"{token_id} was already revoked")
