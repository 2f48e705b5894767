"""Activity failures that carry no personal data (issue 10).

An activity's error message travels far: it becomes the failed step's timeline entry
(``workflows/steps.py``: ``<operation> failed: <message>``), the audit log and the case file, the
failure in Temporal's history and Web UI, and the SDK's log line. Our own errors are built safe:
a vendor failure names its type, status and code, never the vendor's text
(``vendor_http.described``). ``private_failures`` is the net under that rule, around every activity
(``heartbeats`` applies it):

- an unexpected exception (a database error quoting its parameters, a ``KeyError`` holding a
  value) is logged with its traceback through the redacting processors (``logs.py``) and becomes
  an ``ApplicationError`` of the same type, retryable as before, whose message is fixed:
  ``IntegrityError: unexpected error (details in the worker log)``;
- an ``ApplicationError`` whose message still shows an email address or a phone number is raised
  again with those masked (same type, retry flag and delay).

Cancellation and the SDK's own errors pass through untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from temporalio.exceptions import ApplicationError, TemporalError

from activities.log import activity_logger
from logs import redact_text

P = ParamSpec("P")
T = TypeVar("T")


def unexpected(err: BaseException) -> ApplicationError:
    """The ApplicationError an unexpected exception becomes: its type, a fixed message."""
    name = type(err).__name__
    return ApplicationError(f"{name}: unexpected error (details in the worker log)", type=name)


def masked(err: ApplicationError) -> ApplicationError | None:
    """``err`` again with emails and phone numbers masked in its message; None if it had none."""
    safe = redact_text(err.message)
    if safe == err.message:
        return None
    return ApplicationError(
        safe,
        *err.details,
        type=err.type,
        non_retryable=err.non_retryable,
        next_retry_delay=err.next_retry_delay,
        category=err.category,
    )


def private_failures(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Decorator: the activity ``fn`` fails only with messages that hold no personal data."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except ApplicationError as err:
            safe = masked(err)
            if safe is None:
                raise
            raise safe from None
        except TemporalError:
            raise
        except Exception as err:
            activity_logger().warning(
                "activity.unexpected_error", error=type(err).__name__, exc_info=err
            )
            raise unexpected(err) from None

    return run
