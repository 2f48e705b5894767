"""The daily report Schedule: a Temporal Schedule that starts ``DailyReportWorkflow`` every morning.

``incident schedule daily-report`` installs it; running the command again updates the same Schedule.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
)

from workflows.daily_report import SCHEDULE_ID, DailyReportRequest, DailyReportWorkflow


async def create_daily_schedule(
    client: Client,
    *,
    at: str,
    timezone: str,
    channel: str,
    window: str,
    task_queue: str,
) -> str:
    """Create the Schedule, or update it in place when it exists; returns what was done."""
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
