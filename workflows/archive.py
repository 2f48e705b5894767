"""ArchiveIncidentWorkflow: keep an incident's Temporal history after retention deletes it.

The incident workflow starts this as a child at close (``parent_close_policy=ABANDON``), so the
archive survives the parent's completion and a worker dying at that moment: the child's start is
recorded in the parent's history, and its one activity (``records.archive_history``) is retried by
the server until the parent run is closed and every run of its continue-as-new chain is stored.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.names import ARCHIVE_ACTIVITY, ARCHIVE_WORKFLOW


class ArchiveRequest(BaseModel):
    """Which incident workflow run to archive (the run that closes; earlier runs are followed)."""

    incident_id: str
    workflow_id: str
    run_id: str
    # Archive in a local activity (one workflow task, no activity task): set by incidents
    # started since issue 11; a request without it is archived as it always was.
    local: bool = False


class ArchiveResult(BaseModel):
    incident_id: str
    archived_runs: list[str] = Field(default_factory=list)  # newly stored, oldest first
    already_archived: list[str] = Field(default_factory=list)
    missing_runs: list[str] = Field(default_factory=list)  # gone from Temporal before archiving


@workflow.defn(name=ARCHIVE_WORKFLOW)
class ArchiveIncidentWorkflow:
    @workflow.run
    async def run(self, request: ArchiveRequest) -> ArchiveResult:
        # The activity fails (retryably) while the incident run is still open; backoff caps at
        # one minute so a close is archived promptly, and retries go on for up to 30 days.
        retry = RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(minutes=1),
            non_retryable_error_types=["IncidentNotFound"],
        )
        if request.local:
            # The incident closes moments after starting this: run in this workflow's first
            # task (which the worker keeps alive while the run is awaited), recorded as a marker.
            return await workflow.execute_local_activity(
                ARCHIVE_ACTIVITY,
                request,
                result_type=ArchiveResult,
                start_to_close_timeout=timedelta(minutes=10),
                schedule_to_close_timeout=timedelta(days=30),
                retry_policy=retry,
            )
        return await workflow.execute_activity(
            ARCHIVE_ACTIVITY,
            request,
            result_type=ArchiveResult,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(seconds=3),  # it beats while it waits for the close
            schedule_to_close_timeout=timedelta(days=30),
            retry_policy=retry,
        )
