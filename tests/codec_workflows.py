"""A workflow for the codec tests whose activity fails with a message that must never reach
history in clear. The workflow sandbox re-imports this module: it imports nothing but temporalio.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

FAILING_ACTIVITY = "codec.fail"


@workflow.defn
class FailingStepWorkflow:
    """Runs one activity that fails for good, then fails itself with the activity's message."""

    @workflow.run
    async def run(self, contact: str) -> str:
        try:
            return str(
                await workflow.execute_activity(
                    FAILING_ACTIVITY,
                    contact,
                    start_to_close_timeout=timedelta(seconds=10),
                    retry_policy=RetryPolicy(maximum_attempts=1),
                )
            )
        except ActivityError as err:
            raise ApplicationError(f"the step failed: {err.cause}", non_retryable=True) from err
