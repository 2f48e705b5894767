"""The worker's activity metrics: every failed attempt counted by vendor, activity and error type
(``insights/metrics.py`` holds the counters; the worker serves them on its metrics port).

An interceptor, so every activity is covered, whatever its module: it sees the error an attempt
ends with after ``activities/safe_errors.py`` made it safe (its type and code, never its text),
and counts it before the SDK schedules the retry. A cancellation is not a failure.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from insights.metrics import count_failure


def error_name(err: BaseException) -> str:
    """``ApplicationError``'s type when it names one (``TwilioError``), else the class name."""
    if isinstance(err, ApplicationError) and err.type:
        return err.type
    return type(err).__name__


class _CountFailures(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            count_failure(activity.info().activity_type, error_name(err))
            raise


class ActivityMetrics(Interceptor):
    """Counts failed activity attempts (``cr_activity_failures_total``)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CountFailures(next)
