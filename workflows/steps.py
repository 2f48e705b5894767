"""One handler per playbook step kind: action, approval, wait_for, timer, branch and parallel
(and open_incident, whose handler is ``workflows/linked.py``'s).

``IncidentWorkflow._run_step`` wraps each step with its SLA race and hands it to ``_dispatch``,
which calls the handler here. A handler returns the step's detail line or raises ``StepFailed``;
``branch`` and ``parallel`` walk their nested steps through the interpreter's ``_run_steps``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from playbooks.schema import (
        ActionStep,
        ApprovalStep,
        BranchStep,
        OpenIncidentStep,
        ParallelStep,
        StepModel,
        TimerStep,
        WaitForStep,
    )
    from workflows import on_call, rules
    from workflows.failures import IncidentFailures, StepFailed
    from workflows.models import ROSTER_MAX, PendingApproval
    from workflows.outbound import reraise_cancellation


class IncidentSteps(IncidentFailures):
    """The step handlers; the walk that calls them is ``IncidentWorkflow``'s."""

    async def _run_steps(self, steps: list[StepModel]) -> None:
        """Provided by the interpreter (``IncidentWorkflow``): walks ``steps`` in order."""
        raise NotImplementedError

    async def _open_linked(self, step: OpenIncidentStep) -> str:
        """Provided by ``IncidentLinks`` (``workflows/linked.py``): open the linked incident."""
        raise NotImplementedError

    async def _dispatch(self, step: StepModel) -> str:
        """Hand the step to the handler of its kind (no handler knows about another kind)."""
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
        if isinstance(step, OpenIncidentStep):
            return await self._open_linked(step)
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
        attempt = self.state.steps[step.id].attempt
        # A retried step is a new call: its first attempt's failure must not be deduplicated.
        key = step.id if attempt == 1 else f"{step.id}#{attempt}"
        paging = step.activity == "notify.pagerduty" and args.get("action", "trigger") == "trigger"
        policy = str(args.get("escalation_policy") or "default")  # the activity's default
        found = await self._on_call_paged(policy, key) if paging else None
        if found is not None:
            args["on_call"] = found.text
        try:
            result = await self._activity(
                step.activity, step.id, args, key, retry, step.retry.timeout
            )
        except ActivityError as err:
            reraise_cancellation(err)
            cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err)
            raise StepFailed(f"{step.activity} failed: {cause}") from None
        if paging and policy not in self.state.paged_policies:
            self.state.paged_policies.append(policy)  # resolved when the incident closes
        if found is not None:
            self._record_paged(policy, found, step.id)
        return result.detail or f"{step.activity} done"

    async def _approval(self, step: ApprovalStep) -> str:
        pending = self.state.approvals.get(step.id)
        if pending is None:
            requester = self.state.owner
            found = None
            if self._patched(on_call.PATCH):
                # Asked before the request opens, so no decision can precede its entry.
                found = await self._on_call(
                    step.roles, f"on-call:{step.id}", exclude=requester, members=True
                )
                self._saw_roster(found)
            pending = PendingApproval(
                step_id=step.id,
                roles=step.roles,
                requested_by=requester,
                second_roles=step.second_approver.roles if step.second_approver else None,
                requested_at=workflow.now(),
                eligible=self._eligible(step.roles, requester, found),
                on_call=found.people if found is not None else [],
            )
            self.state.approvals[step.id] = pending
            data = {"eligible": ", ".join(pending.eligible)} if pending.eligible else {}
            self._record(
                "approval_requested",
                step.prompt or step.title,
                step=step.id,
                role=",".join(step.roles),
                actor=requester,
                data=(data | found.data if found is not None else data) or None,
            )
            asked = on_call.decision_needed(step.roles, step.id, pending.eligible, found)
            if self._lean:
                await self._flush_records()  # in the records before anyone is asked to decide
            await self._notify(f"{self._label()}: {asked}", f"approval:{step.id}")
        await workflow.wait_condition(lambda: pending.outcome is not None)
        if pending.outcome == "rejected" and step.on_reject == "fail":
            raise StepFailed(f"{step.id} was rejected: {pending.decisions[-1].reason}")
        return f"{pending.outcome} by " + ", ".join(d.actor for d in pending.decisions)

    def _eligible(
        self, roles: list[str], requester: str, found: on_call.OnCall | None = None
    ) -> list[str]:
        """Who may decide (the requester excluded: nobody approves their own request): from the
        roster at request time when it answered, else the roster the incident was opened with;
        empty when the incident carries no roster."""
        if found is not None and found.members:
            return sorted({p for people in found.members.values() for p in people} - {requester})
        wanted = {r.lower() for r in roles}
        return sorted(
            person
            for person, held in self.inp.roster.items()
            if wanted & {r.lower() for r in held} and person != requester
        )

    def _saw_roster(self, found: on_call.OnCall) -> None:
        """Remember who the roster said held which role at request time (see ``_roster``)."""
        seen = self.state.roster_seen
        pairs = [(p, role) for role, people in found.members.items() for p in people]
        for person, role in [*found.holders, *pairs]:
            if role not in seen.setdefault(person, []) and len(seen) < ROSTER_MAX:
                seen[person].append(role)

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
