"""CoverageCheckWorkflow: every morning, the coverage gaps of the next 24 hours page the team lead.

The gaps are computed by an activity (``records.coverage_gaps``: the roster and the records,
``insights/coverage.py``); when there is any, the ordinary ``notify.pagerduty`` activity pages the
team lead's escalation policy, one alert per run (the run's workflow id is the alert's incident).
``reports/schedule.py`` installs the Schedule (``incident schedule coverage-check``).
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.models import ActionRequest, ActionResult
    from workflows.names import COVERAGE_GAPS_ACTIVITY

SCHEDULE_ID = "critical-response-coverage-check"


class CoverageCheckRequest(BaseModel):
    policy: str  # the team lead's PagerDuty escalation policy
    timezone: str = "UTC"  # hours of the week are the team's
    lookback_weeks: int = 8


@workflow.defn(name="CoverageCheckWorkflow")
class CoverageCheckWorkflow:
    @workflow.run
    async def run(self, request: CoverageCheckRequest) -> str:
        retry = RetryPolicy(maximum_interval=timedelta(minutes=2), maximum_attempts=20)
        text: str = await workflow.execute_activity(
            COVERAGE_GAPS_ACTIVITY,
            request,
            result_type=str,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=retry,
        )
        if not text:
            return "no coverage gap in the next 24 hours"
        run_id = workflow.info().workflow_id
        await workflow.execute_activity(
            "notify.pagerduty",
            ActionRequest(
                incident_id=run_id,
                step_id="coverage-check",
                operation="notify.pagerduty",
                args={"summary": text, "escalation_policy": request.policy, "severity": "warning"},
                idempotency_key=f"coverage-check:{run_id}",
            ),
            result_type=ActionResult,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=retry,
        )
        return text
