"""DailyReportWorkflow: the SLA report summary posted to Slack every morning by a Temporal Schedule.

The report is computed by an activity (``records.report_summary``, it reads the database) and posted
by the ordinary ``notify.slack`` activity, called by name with an idempotency key derived from this
run's workflow id, so a retried post is not duplicated. ``create_daily_schedule`` installs the
Schedule (``incident schedule daily-report``); running it again updates the same Schedule.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.models import ActionRequest, ActionResult

SCHEDULE_ID = "critical-response-daily-report"
SUMMARY_ACTIVITY = "records.report_summary"


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
            SUMMARY_ACTIVITY,
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


async def create_daily_schedule(
    client,  # type: ignore[no-untyped-def]  # temporalio.client.Client (kept out of the sandbox)
    *,
    at: str,
    timezone: str,
    channel: str,
    window: str,
    task_queue: str,
) -> str:
    """Create the Schedule, or update it in place when it exists; returns what was done."""
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleAlreadyRunningError,
        ScheduleCalendarSpec,
        ScheduleRange,
        ScheduleSpec,
        ScheduleUpdate,
    )

    hour, minute = (int(part) for part in at.split(":"))
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            DailyReportWorkflow.run,
            DailyReportRequest(channel=channel, window=window),
            id="daily-report",
            task_queue=task_queue,
            execution_timeout=timedelta(hours=1),
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(hour=[ScheduleRange(hour)], minute=[ScheduleRange(minute)])
            ],
            time_zone_name=timezone,
        ),
    )
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
        verb = "created"
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(SCHEDULE_ID)
        await handle.update(lambda _input: ScheduleUpdate(schedule=schedule))
        verb = "updated"
    return f"schedule {SCHEDULE_ID} {verb}: every day at {at} {timezone}, posting to {channel}"
