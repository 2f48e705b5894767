"""ReconcileWorkflow: the sweep that finds incidents ended out of band, run by a Temporal Schedule.

One activity (``records.reconcile``) asks Temporal about every incident the records still show
open and marks those whose workflow was terminated, deleted, failed, timed out or cancelled
(``records/reconcile.py``). ``reports/schedule.py`` installs the Schedule (``incident schedule
reconcile``, every 15 minutes by default); overlapping sweeps are skipped.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.names import RECONCILE_ACTIVITY

SCHEDULE_ID = "critical-response-reconcile"
WORKFLOW_ID = "reconcile"  # each scheduled start appends its time to it


@workflow.defn(name="ReconcileWorkflow")
class ReconcileWorkflow:
    @workflow.run
    async def run(self) -> list[str]:
        """One line per incident marked by this sweep."""
        result: list[str] = await workflow.execute_activity(
            RECONCILE_ACTIVITY,
            result_type=list[str],
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=3),
        )
        return result
