"""The Temporal Schedules of critical-response, installed by ``incident schedule ...``.

- ``critical-response-daily-report`` starts ``DailyReportWorkflow`` every morning;
- ``critical-response-coverage-check`` starts ``CoverageCheckWorkflow`` every morning (the next
  24 hours' coverage gaps page the team lead);
- ``critical-response-reconcile`` starts ``ReconcileWorkflow`` every 15 minutes (the sweep that marks
  incidents terminated or deleted out of band).

Running a command again updates the same Schedule in place (``install_schedule``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
)

from playbooks.schema import format_duration, parse_duration
from workflows.coverage_check import SCHEDULE_ID as COVERAGE_SCHEDULE_ID
from workflows.coverage_check import CoverageCheckRequest, CoverageCheckWorkflow
from workflows.daily_report import SCHEDULE_ID, DailyReportRequest, DailyReportWorkflow
from workflows.reconcile import SCHEDULE_ID as RECONCILE_SCHEDULE_ID
from workflows.reconcile import WORKFLOW_ID as RECONCILE_WORKFLOW_ID
from workflows.reconcile import ReconcileWorkflow

RECONCILE_EVERY = timedelta(minutes=15)
RECONCILE_EVERY_MIN = timedelta(minutes=1)


def reconcile_interval(every: str | timedelta) -> timedelta:
    """``--every`` as a timedelta: a duration of at least a minute, else a ValueError."""
    interval = parse_duration(every)
    if interval < RECONCILE_EVERY_MIN:
        raise ValueError(
            f"the reconcile sweep runs at most every {format_duration(RECONCILE_EVERY_MIN)}, "
            f"not every {format_duration(interval)}"
        )
    return interval


async def install_schedule(client: Client, schedule_id: str, schedule: Schedule) -> str:
    """Create the Schedule, or update it in place when it exists; returns "created" or "updated"."""
    try:
        await client.create_schedule(schedule_id, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(schedule_id)
        await handle.update(lambda _input: ScheduleUpdate(schedule=schedule))
        return "updated"


def _every_day(run: Any, request: Any, *, workflow_id: str, at: str, timezone: str,
               task_queue: str) -> Schedule:  # fmt: skip
    """A Schedule starting ``run(request)`` every day at ``at`` (HH:MM) in ``timezone``."""
    hour, minute = (int(part) for part in at.split(":"))
    return Schedule(
        action=ScheduleActionStartWorkflow(
            run,
            request,
            id=workflow_id,
            task_queue=task_queue,
            execution_timeout=timedelta(hours=1),
        ),  # fmt: skip
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(hour=[ScheduleRange(hour)], minute=[ScheduleRange(minute)])
            ],
            time_zone_name=timezone,
        ),
    )


async def create_daily_schedule(
    client: Client,
    *,
    at: str,
    timezone: str,
    channel: str,
    window: str,
    task_queue: str,
) -> str:
    """Install the daily report Schedule; returns what was done."""
    schedule = _every_day(
        DailyReportWorkflow.run, DailyReportRequest(channel=channel, window=window),
        workflow_id="daily-report", at=at, timezone=timezone, task_queue=task_queue,
    )  # fmt: skip
    verb = await install_schedule(client, SCHEDULE_ID, schedule)
    return f"schedule {SCHEDULE_ID} {verb}: every day at {at} {timezone}, posting to {channel}"


async def create_coverage_schedule(
    client: Client, *, at: str, timezone: str, policy: str, task_queue: str, lookback_weeks: int = 8
) -> str:
    """Install the daily coverage check's Schedule; returns what was done."""
    schedule = _every_day(
        CoverageCheckWorkflow.run,
        CoverageCheckRequest(policy=policy, timezone=timezone, lookback_weeks=lookback_weeks),
        workflow_id="coverage-check", at=at, timezone=timezone, task_queue=task_queue,
    )  # fmt: skip
    verb = await install_schedule(client, COVERAGE_SCHEDULE_ID, schedule)
    return (
        f"schedule {COVERAGE_SCHEDULE_ID} {verb}: every day at {at} {timezone}, paging {policy} "
        "when the next 24 hours have a coverage gap"
    )


async def create_reconcile_schedule(
    client: Client, *, task_queue: str, every: timedelta = RECONCILE_EVERY
) -> str:
    """Install the reconcile sweep's Schedule; returns what was done. A sweep still running when
    the next is due makes that one skip; after downtime at most one missed sweep runs."""
    every = reconcile_interval(every)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            ReconcileWorkflow.run,
            id=RECONCILE_WORKFLOW_ID,
            task_queue=task_queue,
            execution_timeout=timedelta(minutes=30),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=every),
    )
    verb = await install_schedule(client, RECONCILE_SCHEDULE_ID, schedule)
    return (
        f"schedule {RECONCILE_SCHEDULE_ID} {verb}: every {format_duration(every)}, marking "
        "incidents whose workflow was terminated or deleted out of band"
    )
