"""What every command group of the `incident` command shares: one-line errors, `--json` output,
and one way to run a Temporal client operation.

Command groups live in their rooms (``client/cli.py``, ``audit/cli.py``, ``reports/cli.py`` ...);
``starter.py`` mounts them and turns every ``CliError`` into one line on stderr with exit code 1.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console

from settings import get_settings

if TYPE_CHECKING:
    from temporalio.client import Client

out = Console(highlight=False, soft_wrap=True)
T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ActorOpt = Annotated[str, typer.Option("--as", help="Who is acting (your name).")]


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


def default_actor() -> str:
    return os.environ.get("CR_ACTOR") or os.environ.get("USER") or "unknown"


def run_with_client(factory: Callable[[Client], Awaitable[T]]) -> T:
    """Connect, run one client operation with a deadline, translate SDK errors into CliError.

    The SDK is imported here, by the commands that drive Temporal themselves: the API's clients
    (``client/``) share this module and never load it (tests/test_cli_imports.py)."""
    from temporalio.client import (
        WorkflowUpdateFailedError,
        WorkflowUpdateRPCTimeoutOrCancelledError,
    )
    from temporalio.exceptions import ApplicationError
    from temporalio.service import RPCError, RPCStatusCode

    from connection import connect

    settings = get_settings()

    async def go() -> T:
        try:
            client = await connect(settings)
        except RuntimeError as err:
            why = "connection refused" if "ConnectionRefused" in str(err) else str(err)[:120]
            raise CliError(
                f"cannot reach Temporal at {settings.temporal_address} ({why}); "
                "is `make run` running?"
            ) from None
        async with asyncio.timeout(settings.cli_timeout_seconds):
            return await factory(client)

    try:
        return asyncio.run(go())
    except TimeoutError:
        raise CliError(
            f"no answer within {settings.cli_timeout_seconds:.0f}s: is a worker running "
            f"on task queue {settings.task_queue!r}?"
        ) from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise CliError(
            "the incident did not answer the Update in time: is its workflow task failing? "
            "see `incident doctor`"
        ) from None
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            raise CliError(f"refused ({cause.type}): {cause.message}") from None
        raise CliError(f"update failed: {cause or err}") from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND and "already completed" in err.message:
            raise CliError("refused (incident_closed): the incident is closed") from None
        if err.status == RPCStatusCode.NOT_FOUND:
            raise CliError(f"not found: {err.message}") from None
        raise CliError(f"Temporal error: {err.message}") from None


def emit(as_json: bool, value: Any, human: Callable[[], None]) -> None:
    """Print ``value`` as JSON, or call ``human`` to print it for people."""
    if as_json:
        data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        if isinstance(value, list):
            data = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
        print(json.dumps(data, indent=2, default=str))
    else:
        human()


def pairs(values: list[str], option: str) -> dict[str, str]:
    """``key=value`` options as a dict (a malformed one is a CliError naming the option)."""
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{option} takes key=value, got {item!r}")
        result[key.strip()] = value.strip()
    return result


def printable(text: str | None) -> str:
    """``text`` with control characters shown escaped (a newline as ``\\n``): a note or a reason
    can never forge an extra line in a timeline, a case file or a terminal."""
    if not text:
        return ""
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode()
                   for ch in text)  # fmt: skip
