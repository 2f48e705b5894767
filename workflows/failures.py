"""When a step fails: what the playbook says it means, and what needs a person's attention.

A permanent vendor error (a Salesforce 404, a bad phone number at Twilio) used to halt the whole
walk silently. Now each step's failure follows its policy (``on_failure``, or the playbook's):
``halt`` the walk (visible: attention raised, the owner paged), ``continue`` with the next step, or
``ask``: the step waits, the incident needs attention and its owner is paged, until the commander
retries it (after fixing a field) or skips it (Legal only, for a statutory step). Independent
branches of a parallel step are not stopped by a failure that does not halt.
"""

from __future__ import annotations

from typing import Literal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from playbooks.schema import StepModel
    from workflows.sla_race import IncidentSlaRace

NextMove = Literal["retry", "skip", "continue"]


class StepFailed(Exception):
    """A step could not finish (activity gave up, rejected approval with on_reject: fail, ...).

    ``detail`` is what the step's timeline entry says; the message is what the walk reports."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


class IncidentFailures(IncidentSlaRace):
    """Failure policies and the incident's attention flags."""

    async def _on_step_failure(self, step: StepModel, failure: StepFailed) -> NextMove:
        """Apply the step's failure policy: raise (halt), or say how the walk goes on."""
        policy = step.on_failure or self.inp.playbook.on_failure
        if policy == "halt":
            self._finish(step, "failed", failure.detail)
            raise failure
        if policy == "continue":
            self._finish(step, "failed", f"{failure.detail} (the playbook continues)")
            return "continue"
        return await self._ask_commander(step, failure)

    async def _ask_commander(self, step: StepModel, failure: StepFailed) -> NextMove:
        st = self.state.steps[step.id]
        if st.status != "failed":  # a fresh failure (a carried one was asked already)
            st.status, st.finished_at, st.detail = "failed", workflow.now(), failure.detail
            st.failure_decision = None
            self._record(
                "step_failed",
                f"{failure.detail}; waiting for the commander: incident retry or skip",
                step=step.id,
                role=step.owner,
            )
            self._raise_attention(f"step:{step.id}", f"step {step.id} failed: {failure.detail}")
            await self._page(
                self.inp.playbook.escalation_policy,
                f"{self._label()}: step {step.id} failed and needs a decision",
                f"failed:{step.id}:{st.attempt}",
                step=step.id,
            )
        await workflow.wait_condition(lambda: st.failure_decision is not None)
        self._clear_attention(f"step:{step.id}")
        if st.failure_decision == "retry":
            st.status, st.finished_at, st.detail = "running", None, ""
            st.attempt += 1
            st.failure_decision = None
            self._record("step_started", f"attempt {st.attempt}", step=step.id, role=step.owner)
            return "retry"
        st.status, st.finished_at = "skipped", workflow.now()
        self._stop_clock(step.id, met=False)
        self._record("step_skipped", st.detail, step=step.id, role=step.owner)
        return "skip"

    def _raise_attention(self, key: str, reason: str) -> None:
        self.state.attention[key] = reason
        self._publish()

    def _clear_attention(self, key: str) -> None:
        if self.state.attention.pop(key, None) is not None:
            self._publish()
