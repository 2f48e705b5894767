"""IncidentWorkflow: one durable workflow per incident, interpreting its playbook snapshot.

The playbook arrives whole in ``IncidentInput`` (never read from disk here). This module is the
walk: ``run`` (start, close, continue-as-new), ``_run_steps`` over a step list, and ``_run_step``,
which wraps every step with its SLA race and hands it to ``_dispatch``. The rest lives in rooms of
its own, stacked as mixins (each builds on the one before):

- ``workflows/bookkeeping.py`` (``IncidentBookkeeping``): the workflow's attributes, the timeline,
  step outcomes, status, severity and search attributes;
- ``workflows/outbound.py`` (``IncidentOutbound``): every outbound call (activities,
  notifications, the records mirror, the archiver child, sleeps);
- ``workflows/sla_race.py`` (``IncidentSlaRace``): SLA clocks and ``_enforce_sla``, the only place
  SLA timers live;
- ``workflows/steps.py`` (``IncidentSteps``): ``_dispatch`` and one handler per step kind;
- ``workflows/messages.py`` (``IncidentMessages``): the Updates and queries through which people
  act, and the one rule for decisions;
- ``workflows/signals.py`` (``IncidentSignals``): every signal, decoded under our control so a
  malformed one is refused and recorded instead of freezing the incident.

All state lives in ``IncidentState`` so continue-as-new carries it over intact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from playbooks.schema import StepModel
    from workflows.bookkeeping import LEAN, WALK_STOPS
    from workflows.failures import StepFailed
    from workflows.models import IncidentInput, IncidentOutcome, IncidentState, StepState
    from workflows.signals import IncidentSignals
    from workflows.steps import IncidentSteps
    from workflows.triage import triage_entry, triage_problem

TRIAGE_ENTRY = "triage-entry"  # issue 14: the suggestion and the choice, after ``opened``


@workflow.defn
class IncidentWorkflow(IncidentSignals, IncidentSteps):
    @workflow.init
    def __init__(self, inp: IncidentInput) -> None:
        self.inp = inp
        self._lean = workflow.patched(LEAN)  # the first command of a lean run (bookkeeping.py)
        self._local_calls = self._lean and inp.local_calls
        self._local_reads = self._lean and (inp.local_calls or inp.local_reads)
        self._close_together = self._lean and inp.close_together
        self.steps = {s.id: s for s in inp.playbook.iter_steps()}
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
        self._stopping = None  # "close" or "continue_as_new"
        self._sla_failed = set()
        self._bodies = {}
        self._published = self._published_at_start() if self._lean else {}
        self._flushing = False
        self._message_task = 0
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
                    # a linked incident names its parent in its first entry (records, export)
                    **({"parent": inp.parent_incident_id} if inp.parent_incident_id else {}),
                },
            )
            if inp.triage is not None and workflow.patched(TRIAGE_ENTRY):
                self._record_triage(inp)
            self._start_incident_clocks()
        elif inp.reopen is not None:
            self._record(
                "reopened", inp.reopen.reason, actor=inp.reopen.actor, role=inp.reopen.role
            )
        else:
            self._record("continued", f"run {self.state.runs} resumes the incident")

    def _record_triage(self, inp: IncidentInput) -> None:
        """The suggestion and the person's choice; a note that does not hold is refused and
        recorded, and the incident runs either way."""
        assert inp.triage is not None
        problem = triage_problem(inp.triage, inp.playbook.name, inp.severity)
        if problem is not None:
            self._record("message_refused", problem, actor=inp.triage.chosen_by,
                         data={"message": "triage", "code": "invalid_triage"})  # fmt: skip
            return
        detail, data = triage_entry(inp.triage)
        self._record("triage", detail, actor=inp.triage.chosen_by, role="ic", data=data)

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
        if self._patched("records-flusher-finishes"):
            # Cancelling a records flush whose result lands in this same workflow task could
            # leave it pending for ever (seen under injected faults): let it finish and stop.
            await self._stop_tasks([walker, *clock_races])
            await flusher
        else:
            await self._stop_tasks([walker, *background])
        if self._local_calls and self._message_task == workflow.info().get_current_history_length():
            # An Update's answer travels with this task's completion. Local activities make the
            # closing task last longer, and an event landing meanwhile (a cancelled step's
            # activity, a signal) would fail the task that completes the run, and the Update
            # with it: close in a task of its own.
            await workflow.sleep(timedelta(milliseconds=1))
        if self._close_together:
            await self._closing_calls()
            return self._outcome()
        if self._patched("resolve-pages-at-close"):
            await self._resolve_pages()
        await self._tell_parent()  # a linked incident's parent hears it closed
        # Both are round trips to the server; neither needs the other.
        await asyncio.gather(self._flush_records(), self._archive())
        return self._outcome()

    async def _closing_calls(self) -> None:
        """The close's calls at once, then the last records batch (``IncidentInput.close_together``).

        The pages' resolutions, the closing message, the parent's news and the archiver's start
        need nothing of each other: one workflow task sends them all and one more takes their
        results, where one after the other cost a task each. The archiver waits for this run to
        end whenever it starts. The last batch goes out after them, so it holds what they
        recorded (a failed delivery, the pages resolved)."""
        policies = list(self.state.paged_policies)
        calls: list[Awaitable[object]] = [self._resolve_page(policy) for policy in policies]
        if policies:
            message = f"{self._label()}: closed; resolving its pages ({', '.join(policies)})"
            calls.append(self._notify(message, "pages-resolved"))
        done = await asyncio.gather(*calls, self._tell_parent(), self._archive())
        if policies:
            resolved = [p for p, ok in zip(policies, done, strict=False) if ok is True]
            unresolved = [p for p in policies if p not in resolved]  # each failure is recorded
            detail = f"PagerDuty alerts resolved: {', '.join(resolved) or 'none'}"
            self._record("pages_resolved", detail + (
                f"; not resolved: {', '.join(unresolved)}" if unresolved else ""))  # fmt: skip
        await self._flush_records()

    async def _walk(self) -> None:
        if self.state.walk != "running":
            return
        try:
            await self._run_steps(list(self.inp.playbook.steps))
        except StepFailed as failure:
            self.state.walk = "halted"
            self._record("playbook_halted", str(failure))
            if self._patched("halted-needs-attention"):
                self._raise_attention("walk", f"playbook halted: {failure}")
                await self._page(
                    self.inp.playbook.escalation_policy,
                    f"{self._label()}: playbook halted: {failure}",
                    "halted",
                )
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
        if self.state.status == "closed" and self._patched("no-new-run-after-close"):
            return  # a close landed while draining: this run closes the incident
        self._stopping = "continue_as_new"
        await self._stop_tasks([walker, *background])
        self._draining = False
        await self._flush_records()
        # Archive each run as it ends: on a cluster whose retention is shorter than a long
        # incident, the early runs could be gone by the time the incident closes.
        if self._patched("archive-each-run"):
            await self._archive()
        self.state.runs += 1
        if self._patched("carry-small-state"):
            self._trim_timeline()  # the full timeline lives in the records and in history
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
            if self._stopping is not None and workflow.patched(WALK_STOPS):
                # Cancelling the walk only asks the server to cancel a running activity: one
                # whose result came in the same task completes its step normally, the walk's
                # cancellation spent. Stopping (close, continue-as-new) starts no further step.
                raise asyncio.CancelledError()
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
        # A step that failed in an earlier run: passed over (continue), or still waiting for the
        # commander (ask). Under ``halt`` the walk never comes back to it.
        policy = step.on_failure or self.inp.playbook.on_failure
        if st is not None and st.status == "failed" and policy == "continue":
            return None
        carried_failure = st is not None and st.status == "failed" and policy == "ask"
        if not carried_failure and (st is None or st.status != "running"):
            st = StepState(
                step_id=step.id,
                kind=step.kind,
                status="running",
                owner=step.owner,
                started_at=workflow.now(),
            )
            self.state.steps[step.id] = st
            self._start_step_clock(step)
            self._record("step_started", step.title or step.kind, step=step.id, role=step.owner)
        while True:
            try:
                if carried_failure:
                    carried_failure = False
                    raise StepFailed(self.state.steps[step.id].detail)
                detail = await self._attempt(step)
            except StepFailed as failure:
                move = await self._on_step_failure(step, failure)  # raises to halt
                if move == "retry":
                    continue
                return None  # skipped, or failed and the playbook continues
            self._finish(step, "completed", detail or "")
            return self._goto_of(step, self.state.steps[step.id])

    async def _attempt(self, step: StepModel) -> str:
        """One run of the step's body, raced against its SLA."""
        body = asyncio.create_task(self._dispatch(step))
        self._bodies[step.id] = body
        self._sla_failed.discard(step.id)
        race = None
        if step.sla is not None:
            race = asyncio.create_task(self._enforce_sla(step.id, step.sla, step, body.done))
        try:
            return await body
        except asyncio.CancelledError:
            if step.id not in self._sla_failed:
                self._step_interrupted(step)
                raise
            raise StepFailed(
                f"step {step.id} breached its SLA",
                detail=f"SLA breached and the playbook says fail: {step.id}",
            ) from None
        finally:
            self._bodies.pop(step.id, None)
            if race is not None and not race.done():
                race.cancel()
