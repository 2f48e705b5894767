"""``incident purge ID --reason R [--yes]``: crypto-shred an incident whose retention has ended.

An operator command (it needs Temporal and the records database, as ``doctor`` and ``audit`` do);
the logic is ``records.purge.purge_incident``, which the HTTP API calls too. Refused in one line,
exit 1, while the incident runs, while a legal hold applies or before its retention ends.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from records.purge import PurgeRefused, purge_incident
from terminal import ActorOpt, CliError, JsonOpt, default_actor, emit, out, run_with_client

purge_app = typer.Typer()


def _confirm(incident_id: str) -> bool:
    """Ask on stderr; anything but y/yes, or no input, is no."""
    print(
        f"purge incident {incident_id}: its data keys are destroyed, and its history, archive, "
        "records and every export of them become unreadable for good. Purge now? [y/N] ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    answer = sys.stdin.readline()
    if not sys.stdin.isatty():
        print(file=sys.stderr)
    return answer.strip().lower() in ("y", "yes")


@purge_app.command("purge")
def purge_command(
    incident_id: str,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log in clear: name no one).")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    actor: ActorOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Destroy a closed incident's data keys (crypto-shredding): its history, archive, records and
    exports become unreadable; the audit log keeps that it existed and was purged."""
    if not reason.strip():
        raise CliError("--reason is required: say why the incident is purged")
    if not yes and not _confirm(incident_id):
        raise CliError("not confirmed: nothing changed (--yes skips the prompt)")
    who = actor or default_actor()
    try:
        purge = run_with_client(lambda c: purge_incident(c, incident_id, reason, who))
    except PurgeRefused as err:
        raise CliError(f"refused: {err}") from None
    what = "already purged" if purge.already else "purged"
    emit(
        as_json,
        {
            "incident_id": purge.incident_id,
            "purged_at": purge.at.isoformat(),
            "by": purge.by,
            "reason": purge.reason,
            "already": purge.already,
            "keys_destroyed": purge.keys_destroyed,
        },
        lambda: out.print(
            f"{what}: {purge.line()} ({purge.keys_destroyed} data key(s) destroyed now)",
            markup=False,
        ),
    )
