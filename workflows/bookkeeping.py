"""The incident's bookkeeping: its attributes, the timeline, step outcomes, status and severity.

The base of ``IncidentWorkflow``. Everything here changes ``IncidentState`` in place (so
continue-as-new carries it over) and issues no command except the search-attribute upsert in
``_publish``; outbound calls live in ``workflows/outbound.py``, SLA clocks in
``workflows/sla_race.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from playbooks.schema import BranchStep, Severity, StepModel
    from workflows.models import (
        IncidentInput,
        IncidentOutcome,
        IncidentState,
        StepState,
        TimelineEntry,
    )
    from workflows.names import (
        SA_ATTENTION,
        SA_BREACHED,
        SA_PLAYBOOK,
        SA_SEVERITY,
        SA_STATUS,
        SEARCH_ATTRIBUTES,
    )


CARRIED_TIMELINE = 20  # timeline entries a new run carries for context; the rest is in the records
# One patch for the lean bookkeeping (issue 11): batches without the whole state, search
# attributes read from the start, the request in the records before anyone is told, and (with
# ``IncidentInput.local_calls``) the engine's own calls as local activities. A run that records it
# takes every older patched branch without a marker of its own; a run recorded before it replays
# exactly as it did (see ``_patched``).
LEAN = "lean-bookkeeping"
# A stopping run (close, continue-as-new) starts no further step and waits on no new SLA timer:
# cancelling a task only asks the server to cancel its activity, and a result in the same task
# spends the cancellation. Asked only when it happens (rare), with ``workflow.patched`` itself,
# never ``_patched``: a lean run recorded before the fix went on, and must replay so.
WALK_STOPS = "walk-stops-when-stopping"


class IncidentBookkeeping:
    """The workflow's attributes (set in ``IncidentWorkflow.__init__``) and their bookkeeping."""

    inp: IncidentInput
    state: IncidentState
    steps: dict[str, StepModel]
    _clock_version: int  # bumped on pause/resume so SLA races recompute their timers
    _in_flight: int
    _draining: bool
    _stopping: str | None  # "close" or "continue_as_new"
    _sla_failed: set[str]
    _bodies: dict[str, asyncio.Task[Any]]
    _published: dict[str, Any]
    _lean: bool  # workflow.patched(LEAN), asked once as the run starts
    _local_calls: bool  # a lean run whose input asks for local activities (models.py)
    _local_reads: bool  # ... or for the roster's answer alone as one
    _close_together: bool  # a lean run whose input asks for the closing calls at once
    _flushing: bool  # a records batch is on its way (lean runs flush one batch at a time)
    _message_task: int  # history length at the task that handled the latest message

    def _patched(self, patch_id: str) -> bool:
        """``workflow.patched(patch_id)``, true without a marker in a lean run: each marker costs
        two history events (the marker and the SDK's ``TemporalChangeVersion`` upsert)."""
        return self._lean or workflow.patched(patch_id)

    def _published_at_start(self) -> dict[str, Any]:
        """The search attributes the run started with (the front door sets them; continue-as-new
        carries them), so ``_publish`` upserts only what differs."""
        ours = {k.name for k in SEARCH_ATTRIBUTES}
        return {
            pair.key.name: pair.value
            for pair in workflow.info().typed_search_attributes
            if pair.key.name in ours
        }

    def _stop_clock(self, name: str, *, met: bool = True) -> None:
        """Provided by ``IncidentSlaRace``."""
        raise NotImplementedError

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
        request_id: str | None = None,
    ) -> TimelineEntry:
        sla_clock = self.state.clocks.get(clock or step or "")
        entry = TimelineEntry(
            seq=self.state.timeline_offset + len(self.state.timeline) + 1,
            at=workflow.now(),
            actor=actor,
            role=role,
            kind=kind,
            step=step,
            detail=detail,
            data=data or {},
            sla=sla_clock.state if sla_clock else None,
            due_at=sla_clock.due_at if sla_clock else None,
            request_id=request_id,
        )
        self.state.timeline.append(entry)
        return entry

    def _trim_timeline(self) -> None:
        """Before continue-as-new: carry only what the next run needs (see ``_carried_state``)."""
        self.state = self._carried_state()

    def _carried_state(self) -> IncidentState:
        """The state a next run starts from: the latest entries, and every entry not yet in the
        records (a message may land after the last flush), so the next run flushes those."""
        unflushed_from = self.state.records_flushed - self.state.timeline_offset
        start = max(0, min(len(self.state.timeline) - CARRIED_TIMELINE, unflushed_from))
        return self.state.model_copy(
            update={
                "timeline_offset": self.state.timeline_offset + start,
                "timeline": self.state.timeline[start:],
            }
        )

    def _projected(self) -> IncidentState:
        return records_view(self.state)

    def _finish(self, step: StepModel, status: str, detail: str) -> None:
        st = self.state.steps[step.id]
        st.status, st.finished_at, st.detail = status, workflow.now(), detail  # type: ignore[assignment]
        self._stop_clock(step.id, met=status == "completed")
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
        # Only once something needed attention: incidents recorded before the flag existed
        # must issue exactly the upserts they did.
        if self.state.attention or SA_ATTENTION.name in self._published:
            wanted[SA_ATTENTION.name] = bool(self.state.attention)
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


def records_view(s: IncidentState) -> IncidentState:
    """What a records batch carries of the state: only what the records read, not nonces, the
    roster seen or the timeline: the projection and SLA outcomes (``records/projection.py``), and
    the steps, approvals and fields from which a law-enforcement request's transparency row is
    derived (``records/requests.py``), and what needs a person (``records/board.py``).
    ``tests/test_records_view.py`` holds every reader to it."""
    return IncidentState(
        fields=s.fields,
        steps=s.steps,
        approvals=s.approvals,
        attention=s.attention,
        status=s.status,
        severity=s.severity,
        severity_history=s.severity_history,
        owner=s.owner,
        opened_at=s.opened_at,
        acknowledged_at=s.acknowledged_at,
        closed_at=s.closed_at,
        resolution=s.resolution,
        clocks=s.clocks,
        sla_breached=s.sla_breached,
        runs=s.runs,
    )
