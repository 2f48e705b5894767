"""The records activities: how the workflows reach the records database (``records/``).

Thin on purpose: the tables, the audit chain and the archive live in ``records/``; these functions
only run that code off the event loop under the activity names the workflows call (``workflows/names``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.heartbeat import heartbeats
from activities.safe_errors import private_failures
from insights.coverage import build_coverage, gap_summary
from insights.metrics import observe_batch
from playbooks.schema import parse_duration
from records.archive import archive_chain
from records.chain import write_batch
from records.reconcile import reconcile_open
from reports.report import build_report, summary_text
from workflows.archive import ArchiveRequest, ArchiveResult
from workflows.coverage_check import CoverageCheckRequest
from workflows.daily_report import DailyReportRequest
from workflows.models import RecordBatch
from workflows.names import (
    ARCHIVE_ACTIVITY,
    ARCHIVE_START_ACTIVITY,
    ARCHIVE_WORKFLOW,
    COVERAGE_GAPS_ACTIVITY,
    RECONCILE_ACTIVITY,
    RECORDS_ACTIVITY,
    REPORT_SUMMARY_ACTIVITY,
    archive_workflow_id,
)


@activity.defn(name=RECORDS_ACTIVITY)
@heartbeats
async def append(batch: RecordBatch) -> dict[str, Any]:
    """Mirror a timeline batch into the records database (idempotent; safe to retry).

    Run as a local activity (lean incidents, ``workflows/outbound.py``) its input never reaches
    the history, so it answers with the entries too: the marker that records its result keeps the
    timeline in the history, rebuilt from there alone by ``audit/replay.py``."""
    result: dict[str, Any] = dict(await asyncio.to_thread(write_batch, batch))
    observe_batch(batch, result["written"])  # decision latency, for the worker's metrics
    kept: dict[int, str] = result.pop("kept")
    if activity.in_activity() and activity.info().is_local:
        # As the records hold them: an entry already there keeps the time it was first written.
        result["entries"] = [
            {**e.model_dump(mode="json"), **({"at": kept[e.seq]} if e.seq in kept else {})}
            for e in batch.entries
        ]
    return result


@activity.defn(name=ARCHIVE_ACTIVITY)
@heartbeats
async def archive_history(request: ArchiveRequest) -> ArchiveResult:
    """Store the closed incident run and its continue-as-new predecessors (retries until closed;
    a worker that stops hands the wait to the next one)."""
    return await archive_chain(activity.client(), request, until=activity.wait_for_worker_shutdown)


@activity.defn(name=ARCHIVE_START_ACTIVITY)
@heartbeats
async def start_archive(request: ArchiveRequest) -> dict[str, str]:
    """Start the archiver of a closing incident run: its own workflow, on the incident's queue,
    that outlives the run (called from the run's last workflow task as a local activity, where
    the archive used to be a child workflow). Idempotent: one archiver per run, ever."""
    workflow_id = archive_workflow_id(request.workflow_id, request.run_id)
    try:
        handle = await activity.client().start_workflow(
            ARCHIVE_WORKFLOW,
            request,
            id=workflow_id,
            task_queue=activity.info().task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        run_id = handle.result_run_id or ""
    except WorkflowAlreadyStartedError as err:  # a retry, or a task replayed after its start
        run_id = err.run_id or ""
    return {"workflow_id": workflow_id, "run_id": run_id}


@activity.defn(name=REPORT_SUMMARY_ACTIVITY)
@heartbeats
async def report_summary(request: DailyReportRequest) -> str:
    """The daily report's Slack text over the request's look-back window."""

    def compute() -> str:
        since = datetime.now(UTC) - parse_duration(request.window)
        return summary_text(build_report(since, request.playbooks), request.window)

    return await asyncio.to_thread(compute)


@activity.defn(name=RECONCILE_ACTIVITY)
@private_failures
async def reconcile() -> list[str]:
    """Mark every incident whose workflow ended out of band; one ``id: status`` line for each
    (ids and outcomes only: who and why stay in the audit log)."""
    done = await reconcile_open(activity.client(), heartbeat=activity.heartbeat)
    return [f"{r.incident_id}: {r.status}" for r in done]


@activity.defn(name=COVERAGE_GAPS_ACTIVITY)
@heartbeats
async def coverage_gaps(request: CoverageCheckRequest) -> str:
    """The coverage gaps of the next 24 hours as a page's text; "" when there is none."""

    def compute() -> str:
        coverage = build_coverage(request.timezone, hours=24, lookback=request.lookback_weeks)
        return gap_summary(coverage)

    return await asyncio.to_thread(compute)


ACTIVITIES = [append, archive_history, start_archive, report_summary, reconcile, coverage_gaps]
