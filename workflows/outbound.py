"""Every call the incident makes to the outside: integration activities, notifications, pages
(naming who is on call), the records mirror, the archiver child and durable sleeps.

``_activity`` is the one door for integration calls (routing, retries, the in-flight count that
continue-as-new and the records flusher wait on).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError, FailureError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from playbooks.operations import ON_CALL_ROLES_MAX, task_queue_for
    from workflows import on_call
    from workflows.bookkeeping import IncidentBookkeeping
    from workflows.models import ActionRequest, ActionResult, RecordBatch
    from workflows.names import (
        ARCHIVE_START_ACTIVITY,
        ARCHIVE_WORKFLOW,
        ON_CALL_ACTIVITY,
        RECORDS_ACTIVITY,
        archive_workflow_id,
    )

RECORDS_BATCH = 25
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)
# A request or page waits on the roster's answer: a few quick tries, then it goes out naming nobody.
ON_CALL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=4), maximum_attempts=3
)
ON_CALL_BUDGET = timedelta(seconds=10)


def reraise_cancellation(err: ActivityError) -> None:
    """An activity cancelled because its step was cancelled is a cancellation, not a failure."""
    if isinstance(err.cause, CancelledError):
        raise asyncio.CancelledError() from err


class IncidentOutbound(IncidentBookkeeping):
    """Activities, notifications, the records flusher and the archiver."""

    async def _activity(
        self,
        operation: str,
        step_id: str,
        args: dict[str, Any],
        key: str,
        retry: RetryPolicy = NOTIFY_RETRY,
        budget: timedelta = timedelta(hours=1),
    ) -> ActionResult:
        """Every integration call goes through here: routing, retries, the in-flight count."""
        # Waiting on an already-true condition still yields, which let the records flusher see
        # "nothing in flight" between every two steps; only wait when there is a reason to.
        if self._draining or not self._patched("no-yield-before-activity"):
            await workflow.wait_condition(lambda: not self._draining)
        queue = workflow.info().task_queue
        self._in_flight += 1
        try:
            return await workflow.execute_activity(
                operation,
                self._request(operation, step_id, args, key),
                result_type=ActionResult,
                task_queue=task_queue_for(operation, queue),
                start_to_close_timeout=timedelta(seconds=30),
                heartbeat_timeout=timedelta(seconds=3),  # a dead worker's attempt: retried in 3 s
                schedule_to_close_timeout=budget,
                retry_policy=retry,
            )
        finally:
            self._in_flight -= 1

    async def _local(
        self,
        operation: str,
        key: str,
        args: dict[str, Any],
        retry: RetryPolicy = NOTIFY_RETRY,
        budget: timedelta = timedelta(hours=1),
    ) -> ActionResult:
        """A call the engine makes on its own behalf (the roster's answer, its notifications and
        pages) when the run makes local calls: a local activity, run by this worker inside the workflow task that
        asks and recorded as one marker, so it costs no task-queue round trip and no workflow
        task of its own. Playbook actions stay activities (``_activity``)."""
        if task_queue_for(operation, "q") != "q":  # another queue's worker: not ours to run
            return await self._activity(operation, key, args, key, retry, budget)
        if self._draining:
            await workflow.wait_condition(lambda: not self._draining)
        self._in_flight += 1
        try:
            return await workflow.execute_local_activity(
                operation,
                self._request(operation, key, args, key),
                result_type=ActionResult,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=budget,
                retry_policy=retry,
            )
        except FailureError as err:
            if isinstance(err, ActivityError):
                raise
            # A local activity's failure can arrive as its bare cause: raise it the way an
            # activity's arrives, so every caller handles both alike.
            raise ActivityError(
                f"{operation} failed",
                scheduled_event_id=0,
                started_event_id=0,
                identity="",
                activity_type=operation,
                activity_id="",
                retry_state=None,
            ) from err
        finally:
            self._in_flight -= 1

    def _request(
        self, operation: str, step_id: str, args: dict[str, Any], key: str
    ) -> ActionRequest:
        return ActionRequest(
            incident_id=self.inp.incident_id,
            step_id=step_id,
            operation=operation,
            args=args,
            severity=self.state.severity,
            playbook=self.inp.playbook.name,
            idempotency_key=f"{self.inp.incident_id}:{key}",
        )

    async def _notify(self, text: str, key: str, channel: str | None = None) -> None:
        args = {"text": text, "channel": channel or self.inp.playbook.channel}
        await self._best_effort("notify.slack", args, key)

    async def _page(self, policy: str, summary: str, key: str, step: str | None = None) -> None:
        args: dict[str, Any] = {
            "summary": summary,
            "escalation_policy": policy,
            "action": "trigger",
            "severity": "critical",
        }
        if policy not in self.state.paged_policies:
            self.state.paged_policies.append(policy)
        found = await self._on_call_paged(policy, key)
        if found is not None:
            args["on_call"] = found.text
        if await self._best_effort("notify.pagerduty", args, key) and found is not None:
            self._record_paged(policy, found, step)

    async def _on_call(
        self, roles: Sequence[str], key: str, exclude: str | None = None, members: bool = False
    ) -> on_call.OnCall:
        """Who holds each of ``roles`` now, from the roster (``exclude`` left out). A roster that
        cannot answer after a few tries means nobody on call: what waits on it must go out."""
        asked = list(dict.fromkeys(r.lower() for r in roles))[:ON_CALL_ROLES_MAX]  # roster names
        args = {"roles": asked, "at": workflow.now().isoformat(), "members": members}
        try:
            if self._local_reads:
                result = await self._local(
                    ON_CALL_ACTIVITY, key, args, ON_CALL_RETRY, ON_CALL_BUDGET
                )
            else:
                result = await self._activity(
                    ON_CALL_ACTIVITY, key, args, key, ON_CALL_RETRY, ON_CALL_BUDGET
                )
        except ActivityError as err:
            reraise_cancellation(err)
            return on_call.OnCall(reached=False)
        return on_call.answer(result.data, asked, exclude)

    async def _on_call_paged(self, policy: str, key: str) -> on_call.OnCall | None:
        """Who holds the role ``policy`` pages (``<role>-oncall``); None when it pages no role, or
        for an incident started before pages named anyone."""
        role = on_call.paged_role(policy)
        if role is None or not self._patched(on_call.PATCH):
            return None
        return await self._on_call([role], f"on-call:{key}")

    def _record_paged(self, policy: str, found: on_call.OnCall, step: str | None) -> None:
        self._record(
            "paged", f"{policy}: {found.text}", step=step, data={"policy": policy, **found.data}
        )

    async def _resolve_pages(self) -> None:
        """At close: resolve every alert this incident raised (same dedup key, so PagerDuty closes
        the very alert), and say so in the incident's channel."""
        if not self.state.paged_policies:
            return
        for policy in self.state.paged_policies:
            await self._resolve_page(policy)
        policies = ", ".join(self.state.paged_policies)
        self._record("pages_resolved", f"PagerDuty alerts resolved: {policies}")
        await self._notify(
            f"{self._label()}: closed; pages resolved ({policies})", "pages-resolved"
        )

    async def _resolve_page(self, policy: str) -> bool:
        """Resolve the alert ``policy`` was paged with (its dedup key: the very alert)."""
        args = {"summary": f"{self._label()} closed", "escalation_policy": policy,
                "action": "resolve", "severity": "info"}  # fmt: skip
        return await self._best_effort("notify.pagerduty", args, f"resolve:{policy}")

    async def _best_effort(self, operation: str, args: dict[str, Any], key: str) -> bool:
        """A notification that finally fails is recorded, never allowed to stop the incident;
        True when it was delivered."""
        try:
            if self._local_calls:
                await self._local(operation, key, args)
            else:
                await self._activity(operation, key, args, key)
        except ActivityError as err:
            reraise_cancellation(err)
            self._record("notification_failed", f"{operation}: {err.cause or err}")
            return False
        return True

    async def _sleep_until(self, at: datetime) -> None:
        delay = at - workflow.now()
        if delay > timedelta(0):
            await workflow.sleep(delay)

    def _unflushed(self) -> int:
        return self.state.timeline_offset + len(self.state.timeline) - self.state.records_flushed

    async def _flush_records_forever(self) -> None:
        """Mirror entries in batches: once the incident waits (no activity in flight), or every
        ``RECORDS_BATCH`` entries, so a run of automated steps costs one records call, not one
        per step, while anything a person waits on is in the records at once."""

        def due() -> bool:
            pending = self._unflushed()
            return pending > 0 and (self._in_flight == 0 or pending >= RECORDS_BATCH)

        while True:
            await workflow.wait_condition(lambda: due() or self._stopping == "close")
            if self._stopping == "close":
                return  # run() sends the last batch itself
            if self._lean:
                # Conditions are checked together once nothing else can run: a decision that
                # lets the walk go on makes this one true too. Look again once the walk has had
                # its turn (it schedules its next call), so only a real wait flushes.
                await workflow.wait_condition(lambda: True)
                if not due() or self._stopping == "close":
                    continue
            await self._flush_records()

    async def _flush_records(self) -> None:
        """Mirror new timeline entries (and the state the projection reads) to the records."""
        # One batch at a time, each entry once: several callers (parallel approvals, the
        # flusher) can be woken by the same end of a batch.
        while self._lean and self._flushing:
            await workflow.wait_condition(lambda: not self._flushing)
        pending = self.state.timeline[self.state.records_flushed - self.state.timeline_offset :]
        if not pending:
            return
        info = workflow.info()
        batch = RecordBatch(
            incident_id=self.inp.incident_id,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            playbook=self.inp.playbook.name,
            playbook_hash=self.inp.playbook_hash,
            entries=pending,
            snapshot=self._projected()
            if self._lean
            else self.state.model_copy(update={"timeline": []}),
        )
        self._in_flight += 1
        self._flushing = True
        try:
            if self._local_calls:
                # A local activity: written by this worker before the workflow task completes
                # (one marker holding only its small result), so the records hold the batch
                # before any message the task did not see can be handled.
                written = await workflow.execute_local_activity(
                    RECORDS_ACTIVITY,
                    batch,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=NOTIFY_RETRY,
                )
                self._adopt_recorded_times(written)
            else:
                await workflow.execute_activity(
                    RECORDS_ACTIVITY,
                    batch,
                    start_to_close_timeout=timedelta(seconds=30),
                    heartbeat_timeout=timedelta(seconds=3),  # a dead worker's attempt: in 3 s
                    retry_policy=NOTIFY_RETRY,
                )
        finally:
            self._in_flight -= 1
            self._flushing = False
        if self._lean:
            self.state.records_flushed = max(self.state.records_flushed, pending[-1].seq)
        else:
            self.state.records_flushed += len(pending)

    def _adopt_recorded_times(self, written: Any) -> None:
        """Take each entry's time as the records hold it (the marker's echo, so a replay does the
        same). The clock of a task moves when a local activity completes, and a replayed task
        can stamp an entry a few milliseconds from the run that wrote it; a retried task stamps
        it anew while the first write stands. Only times of known entries change."""
        echoed = written.get("entries") if isinstance(written, dict) else None
        if not isinstance(echoed, list) or not self.state.timeline:
            return
        first = self.state.timeline[0].seq  # seqs run on without a gap
        for item in echoed:
            seq, at = (item.get("seq"), item.get("at")) if isinstance(item, dict) else (None, None)
            if not isinstance(seq, int) or not isinstance(at, str):
                continue
            index = seq - first
            if 0 <= index < len(self.state.timeline):
                entry = self.state.timeline[index]
                try:
                    recorded = datetime.fromisoformat(at)
                except ValueError:
                    continue
                if entry.seq == seq and recorded.tzinfo is not None and recorded != entry.at:
                    entry.at = recorded

    async def _archive(self) -> None:
        """Hand the closed incident's history to the archiver, which outlives this workflow."""
        info = workflow.info()
        request = {"incident_id": self.inp.incident_id, "workflow_id": info.workflow_id,
                   "run_id": info.run_id}  # fmt: skip
        if self._local_calls:
            # Started by a local activity in this task rather than as a child: no child events,
            # and no workflow task to take the news that it started. The marker says it did.
            await workflow.execute_local_activity(
                ARCHIVE_START_ACTIVITY,
                {**request, "local": True},
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=NOTIFY_RETRY,
            )
            return
        await workflow.start_child_workflow(
            ARCHIVE_WORKFLOW,
            request,
            id=archive_workflow_id(info.workflow_id, info.run_id),
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
