"""DailyReportWorkflow: the SLA report summary posted to Slack every morning by a Temporal Schedule.

The report is computed by an activity (``records.report_summary``, it reads the database) and posted
by the ordinary ``notify.slack`` activity, called by name with an idempotency key derived from this
run's workflow id, so a retried post is not duplicated. ``reports/schedule.py`` installs the
Schedule (``incident schedule daily-report``).
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.models import ActionRequest, ActionResult
    from workflows.names import REPORT_SUMMARY_ACTIVITY

SCHEDULE_ID = "critical-response-daily-report"


class DailyReportRequest(BaseModel):
    channel: str
    window: str = "24h"  # look-back, e.g. 24h or 7d
    playbooks: list[str] = Field(default_factory=list)


@workflow.defn(name="DailyReportWorkflow")
class DailyReportWorkflow:
    @workflow.run
    async def run(self, request: DailyReportRequest) -> str:
        retry = RetryPolicy(maximum_interval=timedelta(minutes=2), maximum_attempts=20)
        text: str = await workflow.execute_activity(
            REPORT_SUMMARY_ACTIVITY,
            request,
            result_type=str,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=retry,
        )
        key = f"daily-report:{workflow.info().workflow_id}"
        await workflow.execute_activity(
            "notify.slack",
            ActionRequest(
                incident_id="daily-report",
                step_id="daily-report",
                operation="notify.slack",
                args={"text": text, "channel": request.channel},
                idempotency_key=key,
            ),
            result_type=ActionResult,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=retry,
        )
        return text
