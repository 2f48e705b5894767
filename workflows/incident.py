"""IncidentWorkflow: one durable workflow per incident, interpreting its playbook snapshot.

The playbook arrives whole in ``IncidentInput`` (never read from disk here). ``_run_steps`` walks
a step list; ``_run_step`` wraps every step with its SLA race (``_enforce_sla``, the only place SLA
timers live) and hands it to one handler per kind. The Updates, signals and queries through which
people act live in ``workflows/messages.py`` (a mixin). All state lives in ``IncidentState`` so
continue-as-new carries it over intact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from playbooks.operations import is_salesforce
    from playbooks.schema import (
        ActionStep,
        ApprovalStep,
        BranchStep,
        ParallelStep,
        Severity,
        Sla,
        StepModel,
        TimerStep,
        WaitForStep,
    )
    from workflows import rules
    from workflows import sla as clocks
    from workflows.messages import IncidentMessages
    from workflows.models import (
        ACK_CLOCK,
        RESOLVE_CLOCK,
        ActionRequest,
        ActionResult,
        IncidentInput,
        IncidentOutcome,
        IncidentState,
        PendingApproval,
        RecordBatch,
        StepState,
        TimelineEntry,
    )

SA_SEVERITY = SearchAttributeKey.for_keyword("IncidentSeverity")
SA_PLAYBOOK = SearchAttributeKey.for_keyword("IncidentPlaybook")
SA_STATUS = SearchAttributeKey.for_keyword("IncidentStatus")
SA_BREACHED = SearchAttributeKey.for_bool("SlaBreached")
SEARCH_ATTRIBUTES = (SA_SEVERITY, SA_PLAYBOOK, SA_STATUS, SA_BREACHED)

RECORDS_ACTIVITY = "records.append"
RECORDS_BATCH = 25
ARCHIVE_WORKFLOW = "ArchiveIncidentWorkflow"
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)


class StepFailed(Exception):
    """A step could not finish (activity gave up, rejected approval with on_reject: fail, ...)."""


def _reraise_cancellation(err: ActivityError) -> None:
    """An activity cancelled because its step was cancelled is a cancellation, not a failure."""
    if isinstance(err.cause, CancelledError):
        raise asyncio.CancelledError() from err


def workflow_id_for(incident_id: str) -> str:
    return f"incident-{incident_id}"


@workflow.defn
class IncidentWorkflow(IncidentMessages):
    @workflow.init
    def __init__(self, inp: IncidentInput) -> None:
        self.inp = inp
        self.steps: dict[str, StepModel] = {s.id: s for s in inp.playbook.iter_steps()}
        self.state = inp.state or IncidentState(
            severity=inp.severity,
            severity_history=[(workflow.now(), inp.severity)],
            owner=inp.opened_by,
            fields=dict(inp.fields),
            opened_at=workflow.now(),
        )
        self._clock_version = 0  # bumped on pause/resume so SLA races recompute their timers
        self._in_flight = 0
        self._draining = False
        self._stopping: str | None = None  # "close" or "continue_as_new"
        self._sla_failed: set[str] = set()
        self._bodies: dict[str, asyncio.Task[Any]] = {}
        self._published: dict[str, Any] = {}
        # Here, not in run(): an Update delivered with the first task runs before run() starts.
        if inp.state is None:
            self._record(
                "opened",
                inp.summary,
                actor=inp.opened_by,
                role="ic",
                data={
                    "playbook": inp.playbook.name,
                    "hash": inp.playbook_hash,
                    "severity": inp.severity,
                },
            )
            self._start_incident_clocks()
        else:
            self._record("continued", f"run {self.state.runs} resumes the incident")

    # ----------------------------------------------------------------------------- main loop

    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentOutcome:
        self._publish()
        background = [asyncio.create_task(self._flush_records_forever())]
        for name, sla in self._incident_slas():
            background.append(
                asyncio.create_task(self._enforce_sla(name, sla, None, self._clock_done(name)))
            )
        walker = asyncio.create_task(self._walk())
        await workflow.wait_condition(
            lambda: self.state.status == "closed" or self._continue_as_new_due()
        )
        if self.state.status != "closed":
            # Returns only when the incident was closed while it waited for a clean point.
            await self._continue_as_new(walker, background)
        self._stopping = "close"
        flusher, *clock_races = background
        if workflow.patched("records-flusher-finishes"):
            # Cancelling a records flush whose result lands in this same workflow task could
            # leave it pending for ever (seen under injected faults): let it finish and stop.
            await self._stop_tasks([walker, *clock_races])
            await flusher
        else:
            await self._stop_tasks([walker, *background])
        # Both are round trips to the server; neither needs the other.
        await asyncio.gather(self._flush_records(), self._archive())
        return self._outcome()

    async def _walk(self) -> None:
        if self.state.walk != "running":
            return
        try:
            await self._run_steps(list(self.inp.playbook.steps))
        except StepFailed as failure:
            self.state.walk = "halted"
            self._record("playbook_halted", str(failure))
            await self._notify(f"{self._label()}: playbook halted: {failure}", "halted")
            return
        self.state.walk = "complete"
        if self.inp.playbook.close_on_complete:
            self._record(
                "playbook_complete", "every step is done; the playbook closes the incident"
            )
            self._close("system", "system", "playbook complete")
            return
        self._record("playbook_complete", "every step is done; waiting for the commander to close")
        self._set_status("playbook_complete")

    def _continue_as_new_due(self) -> bool:
        info = workflow.info()
        limit = self.inp.continue_as_new_after_events
        if limit is not None and info.get_current_history_length() >= limit:
            return True
        return info.is_continue_as_new_suggested()

    async def _continue_as_new(self, walker: asyncio.Task[None], background: list[Any]) -> Any:
        """Stop at a clean point (no activity in flight, no handler running) and carry the state."""
        self._draining = True
        await workflow.wait_condition(
            lambda: self._in_flight == 0 and workflow.all_handlers_finished()
        )
        if self.state.status == "closed" and workflow.patched("no-new-run-after-close"):
            return  # a close landed while draining: this run closes the incident
        self._stopping = "continue_as_new"
        await self._stop_tasks([walker, *background])
        self._draining = False
        await self._flush_records()
        # Archive each run as it ends: on a cluster whose retention is shorter than a long
        # incident, the early runs could be gone by the time the incident closes.
        if workflow.patched("archive-each-run"):
            await self._archive()
        self.state.runs += 1
        workflow.continue_as_new(self.inp.model_copy(update={"state": self.state}))

    @staticmethod
    async def _stop_tasks(tasks: list[asyncio.Task[Any]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------------------- steps

    async def _run_steps(self, steps: list[StepModel]) -> None:
        index = 0
        while index < len(steps):
            goto = await self._run_step(steps[index])
            if goto is None:
                index += 1
                continue
            target = next(i for i, s in enumerate(steps) if s.id == goto)
            for skipped in steps[index + 1 : target]:
                self._skip(skipped, f"branch {steps[index].id} jumped to {goto}")
            index = target

    async def _run_step(self, step: StepModel) -> str | None:
        """Run one step with its SLA race; returns a branch's ``goto`` target, if any."""
        st = self.state.steps.get(step.id)
        if st is not None and st.status in ("completed", "skipped"):
            return self._goto_of(step, st)
        if st is None or st.status != "running":
            st = StepState(
                step_id=step.id,
                kind=step.kind,
                status="running",
                owner=step.owner,
                started_at=workflow.now(),
            )
            self.state.steps[step.id] = st
            if step.sla is not None:
                self.state.clocks[step.id] = clocks.start_clock(
                    step.id, step.sla, workflow.now(), self.inp.calendar
                )
            self._record("step_started", step.title or step.kind, step=step.id, role=step.owner)
        body = asyncio.create_task(self._dispatch(step))
        self._bodies[step.id] = body
        race = None
        if step.sla is not None:
            race = asyncio.create_task(self._enforce_sla(step.id, step.sla, step, body.done))
        try:
            detail = await body
        except asyncio.CancelledError:
            if step.id not in self._sla_failed:
                self._step_interrupted(step)
                raise
            self._finish(step, "failed", f"SLA breached and the playbook says fail: {step.id}")
            raise StepFailed(f"step {step.id} breached its SLA") from None
        except StepFailed as failure:
            self._finish(step, "failed", str(failure))
            raise
        finally:
            self._bodies.pop(step.id, None)
            if race is not None and not race.done():
                race.cancel()
        self._finish(step, "completed", detail or "")
        return self._goto_of(step, self.state.steps[step.id])

    async def _dispatch(self, step: StepModel) -> str:
        if isinstance(step, ActionStep):
            return await self._action(step)
        if isinstance(step, ApprovalStep):
            return await self._approval(step)
        if isinstance(step, WaitForStep):
            return await self._wait_for(step)
        if isinstance(step, TimerStep):
            return await self._timer(step)
        if isinstance(step, BranchStep):
            return await self._branch(step)
        assert isinstance(step, ParallelStep)
        return await self._parallel(step)

    async def _action(self, step: ActionStep) -> str:
        args = rules.render(step.args, rules.facts(self.inp, self.state, step.id))
        retry = RetryPolicy(
            initial_interval=step.retry.initial_interval,
            backoff_coefficient=step.retry.backoff,
            maximum_interval=step.retry.max_interval,
            maximum_attempts=step.retry.max_attempts,
        )
        try:
            result = await self._activity(
                step.activity, step.id, args, step.id, retry, step.retry.timeout
            )
        except ActivityError as err:
            _reraise_cancellation(err)
            cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err)
            raise StepFailed(f"{step.activity} failed: {cause}") from None
        return result.detail or f"{step.activity} done"

    async def _approval(self, step: ApprovalStep) -> str:
        pending = self.state.approvals.get(step.id)
        if pending is None:
            pending = PendingApproval(
                step_id=step.id,
                roles=step.roles,
                requested_by=self.state.owner,
                second_roles=step.second_approver.roles if step.second_approver else None,
                requested_at=workflow.now(),
            )
            self.state.approvals[step.id] = pending
            self._record(
                "approval_requested",
                step.prompt or step.title,
                step=step.id,
                role=",".join(step.roles),
                actor=self.state.owner,
            )
            await self._notify(
                f"{self._label()}: decision needed from {'/'.join(step.roles)} on {step.id}",
                f"approval:{step.id}",
            )
        await workflow.wait_condition(lambda: pending.outcome is not None)
        if pending.outcome == "rejected" and step.on_reject == "fail":
            raise StepFailed(f"{step.id} was rejected: {pending.decisions[-1].reason}")
        return f"{pending.outcome} by " + ", ".join(d.actor for d in pending.decisions)

    async def _wait_for(self, step: WaitForStep) -> str:
        arrived = lambda: self.state.events_pending.get(step.event, 0) > 0  # noqa: E731
        timeout = None
        if step.timeout is not None:
            st = self.state.steps[step.id]
            timeout = max(timedelta(0), st.started_at + step.timeout - workflow.now())
        try:
            await workflow.wait_condition(arrived, timeout=timeout)
        except TimeoutError:
            if step.on_timeout == "fail":
                raise StepFailed(f"no {step.event} before the timeout") from None
            return f"timed out waiting for {step.event}"
        self.state.events_pending[step.event] -= 1
        return f"{step.event} received"

    async def _timer(self, step: TimerStep) -> str:
        st = self.state.steps[step.id]
        if st.timer_fires_at is None:
            st.timer_fires_at = self._timer_target(step, st.started_at)
            self._record("timer_set", f"fires at {st.timer_fires_at.isoformat()}", step=step.id)
        if step.remind_before is not None and not st.reminder_sent:
            await self._sleep_until(st.timer_fires_at - step.remind_before)
            await self._notify(
                f"{self._label()}: reminder: {step.title or step.id} fires at "
                f"{st.timer_fires_at.isoformat()}",
                f"reminder:{step.id}",
                channel=step.reminder,
            )
            st.reminder_sent = True
            self._record(
                "reminder", f"{step.id} fires at {st.timer_fires_at.isoformat()}", step=step.id
            )
        await self._sleep_until(st.timer_fires_at)
        return f"timer fired at {workflow.now().isoformat()}"

    def _timer_target(self, step: TimerStep, started_at: datetime) -> datetime:
        if step.duration is not None:
            return started_at + step.duration
        raw = self.state.fields.get(step.until_field or "", "")
        try:
            target = datetime.fromisoformat(raw)
        except ValueError:
            raise StepFailed(
                f"field {step.until_field!r} must be an ISO date for timer {step.id}, got {raw!r}"
            ) from None
        return target if target.tzinfo else target.replace(tzinfo=UTC)

    async def _branch(self, step: BranchStep) -> str:
        st = self.state.steps[step.id]
        if st.branch_case is None:
            facts = rules.facts(self.inp, self.state, step.id)
            st.branch_case = next(
                (i for i, c in enumerate(step.cases) if c.when is None or c.when.evaluate(facts)),
                -1,
            )
            self._record("branch_taken", self._case_label(step, st.branch_case), step=step.id)
        if st.branch_case >= 0:
            await self._run_steps(list(step.cases[st.branch_case].steps))
        return self._case_label(step, st.branch_case)

    async def _parallel(self, step: ParallelStep) -> str:
        tasks = [asyncio.create_task(self._run_steps(list(b.steps))) for b in step.branches]
        results = (
            await asyncio.gather(*tasks, return_exceptions=True)
            if not step.cancel_siblings_on_failure
            else await self._gather_fail_fast(tasks)
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise StepFailed(f"{step.id}: {len(failures)} branch(es) failed: {failures[0]}")
        return f"{len(tasks)} branches done"

    async def _gather_fail_fast(self, tasks: list[asyncio.Task[None]]) -> list[Any]:
        try:
            return list(await asyncio.gather(*tasks))
        except StepFailed as failure:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return [failure]

    # ----------------------------------------------------------------------------- SLA race

    async def _enforce_sla(
        self, name: str, sla: Sla, step: StepModel | None, done: Callable[[], bool]
    ) -> None:
        """Fire the warning and the breach of clock ``name`` until ``done()``."""
        while not done():
            clock = self.state.clocks[name]
            upcoming = clocks.next_threshold(clock, self.inp.calendar)
            version = self._clock_version
            changed = lambda: done() or self._clock_version != version  # noqa: E731,B023
            if upcoming is None:
                await workflow.wait_condition(changed)
                continue
            which, at = upcoming
            if at > workflow.now():
                try:
                    await workflow.wait_condition(changed, timeout=at - workflow.now())
                    continue
                except TimeoutError:
                    pass
            if which == "warn":
                await self._sla_warning(name, clock.due_at)
            else:
                await self._sla_breach(name, sla, step)

    async def _sla_warning(self, name: str, due_at: datetime | None) -> None:
        self.state.clocks[name] = clocks.mark_warned(self.state.clocks[name], workflow.now())
        self._record(
            "sla_warning",
            f"{name} is due at {due_at.isoformat() if due_at else '?'}",
            step=name,
            clock=name,
        )
        await self._notify(f"{self._label()}: SLA warning on {name}", f"warn:{name}")

    async def _sla_breach(self, name: str, sla: Sla, step: StepModel | None) -> None:
        self.state.clocks[name] = clocks.mark_breached(self.state.clocks[name], workflow.now())
        self.state.sla_breached = True
        self._record("sla_breach", f"{name} missed its {sla.due} SLA", step=name, clock=name)
        self._publish()
        for index, escalation in enumerate(sla.on_breach):
            key = f"breach:{name}:{index}"
            if escalation.page:
                await self._page(escalation.page, f"{self._label()}: SLA breached on {name}", key)
            elif escalation.notify:
                await self._notify(
                    f"{self._label()}: SLA breached on {name}", key, channel=escalation.notify
                )
            elif escalation.raise_severity:
                new = rules.raised(self.state.severity, escalation.raise_severity)
                self._set_severity(new, "system", "system", f"SLA breach on {name}")
            elif escalation.fail and step is not None and step.id in self._bodies:
                self._sla_failed.add(step.id)
                self._bodies[step.id].cancel()
            self._record(
                "escalation", escalation.model_dump_json(exclude_none=True), step=name, clock=name
            )

    def _start_incident_clocks(self) -> None:
        for name in (ACK_CLOCK, RESOLVE_CLOCK):
            sla = self._sla_of(name)
            if sla is not None:
                self.state.clocks[name] = clocks.start_clock(
                    name, sla, workflow.now(), self.inp.calendar
                )

    def _incident_slas(self) -> list[tuple[str, Sla]]:
        """Incident clocks still running (a resumed run re-arms only those)."""
        pairs = [(n, self._sla_of(n)) for n in (ACK_CLOCK, RESOLVE_CLOCK)]
        return [
            (n, s)
            for n, s in pairs
            if s is not None and n in self.state.clocks and not self._clock_done(n)()
        ]

    def _clock_done(self, name: str) -> Callable[[], bool]:
        return lambda: self.state.clocks[name].stopped_at is not None

    def _stop_clock(self, name: str) -> None:
        if name in self.state.clocks and self.state.clocks[name].stopped_at is None:
            self.state.clocks[name] = clocks.stop(
                self.state.clocks[name], workflow.now(), self.inp.calendar
            )

    def _sla_of(self, name: str) -> Sla | None:
        if name == ACK_CLOCK:
            return self.inp.playbook.sla.acknowledge
        if name == RESOLVE_CLOCK:
            return self.inp.playbook.sla.resolve
        step = self.steps.get(name)
        return step.sla if step is not None else None

    def _pause_or_resume(self, event: str) -> None:
        for name, clock in list(self.state.clocks.items()):
            sla = self._sla_of(name)
            if sla is None or clock.stopped_at is not None:
                continue
            if event in sla.pauses_on and clock.running_since is not None:
                self.state.clocks[name] = clocks.pause(clock, workflow.now(), self.inp.calendar)
                self._record("sla_paused", f"{name} paused by {event}", step=name, clock=name)
            elif event in sla.resumes_on and clock.running_since is None:
                self.state.clocks[name] = clocks.resume(clock, workflow.now(), self.inp.calendar)
                self._record("sla_resumed", f"{name} resumed by {event}", step=name, clock=name)
            else:
                continue
            self._clock_version += 1

    # --------------------------------------------------------------------------- bookkeeping

    def _record(
        self,
        kind: str,
        detail: str = "",
        *,
        actor: str = "system",
        role: str | None = None,
        step: str | None = None,
        clock: str | None = None,
        data: dict[str, str] | None = None,
    ) -> TimelineEntry:
        sla_clock = self.state.clocks.get(clock or step or "")
        entry = TimelineEntry(
            seq=len(self.state.timeline) + 1,
            at=workflow.now(),
            actor=actor,
            role=role,
            kind=kind,
            step=step,
            detail=detail,
            data=data or {},
            sla=sla_clock.state if sla_clock else None,
            due_at=sla_clock.due_at if sla_clock else None,
        )
        self.state.timeline.append(entry)
        return entry

    def _finish(self, step: StepModel, status: str, detail: str) -> None:
        st = self.state.steps[step.id]
        st.status, st.finished_at, st.detail = status, workflow.now(), detail  # type: ignore[assignment]
        self._stop_clock(step.id)
        self._record(f"step_{status}", detail, step=step.id, role=step.owner)

    def _step_interrupted(self, step: StepModel) -> None:
        """Continue-as-new leaves a step running for the next run; otherwise it is cancelled
        (the incident closed, or a sibling parallel branch failed)."""
        if self._stopping != "continue_as_new":
            reason = "incident closed" if self._stopping == "close" else "a sibling branch failed"
            self._finish(step, "cancelled", f"cancelled: {reason}")

    def _skip(self, step: StepModel, reason: str) -> None:
        now = workflow.now()
        self.state.steps[step.id] = StepState(
            step_id=step.id,
            kind=step.kind,
            status="skipped",
            started_at=now,
            finished_at=now,
            detail=reason,
        )
        self._record("step_skipped", reason, step=step.id)

    def _goto_of(self, step: StepModel, st: StepState) -> str | None:
        if isinstance(step, BranchStep) and st.branch_case is not None and st.branch_case >= 0:
            return step.cases[st.branch_case].goto
        return None

    @staticmethod
    def _case_label(step: BranchStep, index: int) -> str:
        if index < 0:
            return "no case matched"
        case = step.cases[index]
        target = f", then to {case.goto}" if case.goto else ""
        return f"case {index + 1}{' (default)' if case.when is None else ''}{target}"

    def _set_status(self, status: str) -> None:
        if self.state.status == "closed":
            return
        self.state.status = status  # type: ignore[assignment]
        self._publish()

    def _set_severity(self, new: Severity, actor: str, role: str, reason: str) -> TimelineEntry:
        old, self.state.severity = self.state.severity, new
        self.state.severity_history.append((workflow.now(), new))
        self._publish()
        return self._record(
            "severity_changed",
            f"{old} -> {new}: {reason}",
            actor=actor,
            role=role,
            data={"from": old, "to": new},
        )

    def _publish(self) -> None:
        """Keep the search attributes current, upserting only what changed."""
        wanted = {
            SA_SEVERITY.name: self.state.severity,
            SA_PLAYBOOK.name: self.inp.playbook.name,
            SA_STATUS.name: self.state.status,
            SA_BREACHED.name: self.state.sla_breached,
        }
        changed = {k: v for k, v in wanted.items() if self._published.get(k) != v}
        if not changed:
            return
        keys = {k.name: k for k in SEARCH_ATTRIBUTES}
        updates = [keys[name].value_set(value) for name, value in changed.items()]  # type: ignore[arg-type]
        workflow.upsert_search_attributes(updates)
        self._published.update(changed)

    def _label(self) -> str:
        return f"[{self.state.severity.upper()}] {self.inp.playbook.name} {self.inp.incident_id}"

    def _outcome(self) -> IncidentOutcome:
        ack, closed = self.state.acknowledged_at, self.state.closed_at
        return IncidentOutcome(
            incident_id=self.inp.incident_id,
            status=self.state.status,
            resolution=self.state.resolution,
            sla_breached=self.state.sla_breached,
            time_to_acknowledge=ack - self.state.opened_at if ack else None,
            time_to_resolve=closed - self.state.opened_at if closed else None,
        )

    # ------------------------------------------------------------------------------ activities

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
        if self._draining or not workflow.patched("no-yield-before-activity"):
            await workflow.wait_condition(lambda: not self._draining)
        queue = workflow.info().task_queue
        request = ActionRequest(
            incident_id=self.inp.incident_id,
            step_id=step_id,
            operation=operation,
            args=args,
            severity=self.state.severity,
            playbook=self.inp.playbook.name,
            idempotency_key=f"{self.inp.incident_id}:{key}",
        )
        self._in_flight += 1
        try:
            return await workflow.execute_activity(
                operation,
                request,
                result_type=ActionResult,
                task_queue=f"{queue}-salesforce" if is_salesforce(operation) else queue,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=budget,
                retry_policy=retry,
            )
        finally:
            self._in_flight -= 1

    async def _notify(self, text: str, key: str, channel: str | None = None) -> None:
        args = {"text": text, "channel": channel or self.inp.playbook.channel}
        await self._best_effort("notify.slack", args, key)

    async def _page(self, policy: str, summary: str, key: str) -> None:
        args = {
            "summary": summary,
            "escalation_policy": policy,
            "action": "trigger",
            "severity": "critical",
        }
        await self._best_effort("notify.pagerduty", args, key)

    async def _best_effort(self, operation: str, args: dict[str, Any], key: str) -> None:
        """A notification that finally fails is recorded, never allowed to stop the incident."""
        try:
            await self._activity(operation, key, args, key)
        except ActivityError as err:
            _reraise_cancellation(err)
            self._record("notification_failed", f"{operation}: {err.cause or err}")

    async def _sleep_until(self, at: datetime) -> None:
        delay = at - workflow.now()
        if delay > timedelta(0):
            await workflow.sleep(delay)

    async def _flush_records_forever(self) -> None:
        """Mirror entries in batches: once the incident waits (no activity in flight), or every
        ``RECORDS_BATCH`` entries, so a run of automated steps costs one records call, not one
        per step, while anything a person waits on is in the records at once."""

        def due() -> bool:
            pending = len(self.state.timeline) - self.state.records_flushed
            return pending > 0 and (self._in_flight == 0 or pending >= RECORDS_BATCH)

        while True:
            await workflow.wait_condition(lambda: due() or self._stopping == "close")
            if self._stopping == "close":
                return  # run() sends the last batch itself
            await self._flush_records()

    async def _flush_records(self) -> None:
        """Mirror new timeline entries (and a state snapshot) to the records database."""
        pending = self.state.timeline[self.state.records_flushed :]
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
            snapshot=self.state.model_copy(update={"timeline": []}),
        )
        self._in_flight += 1
        try:
            await workflow.execute_activity(
                RECORDS_ACTIVITY,
                batch,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=NOTIFY_RETRY,
            )
        finally:
            self._in_flight -= 1
        self.state.records_flushed += len(pending)

    async def _archive(self) -> None:
        """Hand the closed incident's history to the archiver, which outlives this workflow."""
        info = workflow.info()
        await workflow.start_child_workflow(
            ARCHIVE_WORKFLOW,
            {
                "incident_id": self.inp.incident_id,
                "workflow_id": info.workflow_id,
                "run_id": info.run_id,
            },
            id=f"archive-{info.workflow_id}-{info.run_id}",
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
