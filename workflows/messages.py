"""The incident's message interface: commander Updates, Legal's decisions, events and queries.

A mixin of ``IncidentWorkflow``, kept apart so ``incident.py`` reads as the playbook walk. Handlers
change state only through the bookkeeping and clocks of its bases (``_record``, ``_stop_clock``,
status, severity: ``workflows/bookkeeping.py``, ``workflows/sla_race.py``), and every decision goes
through ``workflows.rules``, so the Update, its validator and the signals agree.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from workflows import rules
    from workflows import signatures as signed
    from workflows import sla as clocks
    from workflows.models import (
        ACK_CLOCK,
        RESOLVE_CLOCK,
        ApprovalRequest,
        ApprovalResult,
        CommanderRequest,
        Decision,
        IncidentInput,
        IncidentStatus,
        StepRequest,
        TimelineEntry,
    )
    from workflows.sla_race import IncidentSlaRace


class IncidentMessages(IncidentSlaRace):
    """Updates, signals and queries of ``IncidentWorkflow``; its state lives in the workflow."""

    @workflow.update
    async def approve(self, request: ApprovalRequest) -> ApprovalResult:
        return self._decide(request, "approve", raise_refusal=True)

    @approve.validator
    def _validate_approve(self, request: ApprovalRequest) -> None:
        self._validate_decision(request)

    @workflow.update
    async def reject(self, request: ApprovalRequest) -> ApprovalResult:
        return self._decide(request, "reject", raise_refusal=True)

    @reject.validator
    def _validate_reject(self, request: ApprovalRequest) -> None:
        self._validate_decision(request)

    def _validate_decision(self, request: ApprovalRequest) -> None:
        """Stale or malformed decisions never reach history; authorization is judged in the
        handler so that a refused attempt is recorded for auditors."""
        try:
            rules.check_decision(self.state, self.steps, request)
        except rules.DecisionRefused as refused:
            if refused.code in rules.STALE_REFUSALS:
                raise ApplicationError(
                    refused.message, type=refused.code, non_retryable=True
                ) from None

    def _decide(
        self, request: ApprovalRequest, decision: str, *, raise_refusal: bool, message: str = ""
    ) -> ApprovalResult:
        if not self._admitted(decision, request, message or decision, raise_refusal=raise_refusal):
            return ApprovalResult(step_id=request.step_id, outcome="rejected")
        try:
            pending = rules.check_decision(self.state, self.steps, request)
        except rules.DecisionRefused as refused:
            self._record(
                "approval_refused",
                f"{decision} refused ({refused.code}): {refused.message}",
                actor=request.actor,
                role=request.role,
                step=request.step_id if request.step_id in self.steps else None,
                data={"code": refused.code, "reason": request.reason},
                request_id=request.request_id,
            )
            if raise_refusal:
                raise ApplicationError(
                    refused.message, type=refused.code, non_retryable=True
                ) from None
            return ApprovalResult(step_id=request.step_id, outcome="rejected")
        pending.decisions.append(
            Decision(
                actor=request.actor,
                role=request.role,
                reason=request.reason,
                at=workflow.now(),
                decision=decision,
            )
        )  # type: ignore[arg-type]
        if decision == "reject":
            pending.outcome = "rejected"
        elif pending.second_roles and len(pending.decisions) == 1:
            self._record(
                "first_approval",
                f"{request.reason} (a second approver must still decide)",
                actor=request.actor,
                role=request.role,
                step=request.step_id,
                request_id=request.request_id,
            )
            return ApprovalResult(step_id=request.step_id, outcome="awaiting_second_approver")
        else:
            pending.outcome = "approved"
        self._record(
            pending.outcome,
            request.reason,
            actor=request.actor,
            role=request.role,
            step=request.step_id,
            request_id=request.request_id,
        )
        return ApprovalResult(step_id=request.step_id, outcome=pending.outcome)

    @workflow.update
    async def acknowledge(self, request: CommanderRequest) -> TimelineEntry:
        self._admitted("acknowledge", request, "acknowledge", raise_refusal=True)
        self.state.acknowledged_at = workflow.now()
        self.state.owner = request.actor
        self._stop_clock(ACK_CLOCK)
        if self.state.status == "open":  # never back from playbook_complete
            self._set_status("acknowledged")
        return self._record(
            "acknowledged", request.reason, actor=request.actor, role=request.role, clock=ACK_CLOCK
        )

    @acknowledge.validator
    def _validate_acknowledge(self, request: CommanderRequest) -> None:
        self._refuse_if_closed()
        if self.state.acknowledged_at is not None:
            raise ApplicationError(
                "already acknowledged", type="already_acknowledged", non_retryable=True
            )

    @workflow.update
    async def assign(self, request: CommanderRequest) -> TimelineEntry:
        self._admitted("assign", request, "assign", raise_refusal=True)
        previous, self.state.owner = self.state.owner, request.to or self.state.owner
        return self._record(
            "assigned",
            f"{previous} -> {self.state.owner}",
            actor=request.actor,
            role=request.role,
            data={"from": previous, "to": self.state.owner},
        )

    @assign.validator
    def _validate_assign(self, request: CommanderRequest) -> None:
        self._refuse_if_closed()
        if not request.to:
            raise ApplicationError(
                "assign needs --to NAME", type="missing_assignee", non_retryable=True
            )

    @workflow.update
    async def escalate(self, request: CommanderRequest) -> TimelineEntry:
        self._admitted("escalate", request, "escalate", raise_refusal=True)
        assert request.severity is not None
        return self._set_severity(request.severity, request.actor, request.role, request.reason)

    @escalate.validator
    def _validate_escalate(self, request: CommanderRequest) -> None:
        self._refuse_if_closed()
        if request.severity is None or not rules.is_more_urgent(
            request.severity, self.state.severity
        ):
            raise ApplicationError(
                f"escalate raises severity; {request.severity} is not above {self.state.severity}",
                type="not_an_escalation",
                non_retryable=True,
            )

    @workflow.update
    async def note(self, request: CommanderRequest) -> TimelineEntry:
        self._admitted("note", request, "note", raise_refusal=True)
        return self._record("note", request.reason, actor=request.actor, role=request.role)

    @note.validator
    def _validate_note(self, request: CommanderRequest) -> None:
        self._refuse_if_closed()
        if not request.reason.strip():
            raise ApplicationError("a note needs text", type="empty_note", non_retryable=True)

    @workflow.update
    async def close(self, request: CommanderRequest) -> TimelineEntry:
        self._admitted("close", request, "close", raise_refusal=True)
        return self._close(request.actor, request.role, request.reason)

    def _close(self, actor: str, role: str, resolution: str) -> TimelineEntry:
        self.state.resolution = resolution
        self.state.closed_at = workflow.now()
        for name in list(self.state.clocks):
            self._stop_clock(name, met=self._met_at_close(name))
        entry = self._record("closed", resolution, actor=actor, role=role, clock=RESOLVE_CLOCK)
        self._set_status("closed")
        return entry

    def _met_at_close(self, name: str) -> bool:
        """Closing resolves the incident; a step's clock is met only if its step finished, and
        the acknowledge clock only if someone acknowledged (closing is not acknowledging)."""
        if name == RESOLVE_CLOCK:
            return True
        if name == ACK_CLOCK:
            return self.state.acknowledged_at is not None
        step = self.state.steps.get(name)
        return step is not None and step.status == "completed"

    @close.validator
    def _validate_close(self, request: CommanderRequest) -> None:
        self._refuse_if_closed()
        if not request.reason.strip():
            raise ApplicationError(
                "closing needs a resolution", type="missing_resolution", non_retryable=True
            )
        if (still := sorted(c for c, s in self.state.linked.items() if s != "closed")) and not (
            request.confirm
        ):  # a parent with open linked incidents (workflows/linked.py) asks first
            raise ApplicationError(f"linked incidents still open: {', '.join(still)}; close again "
                                   "with confirm (incident close --confirm) to close it anyway",
                                   type="open_linked_incidents", non_retryable=True)  # fmt: skip

    @workflow.query
    def status(self, as_of: datetime | None = None) -> IncidentStatus:
        """``as_of``: the caller's clock, so time left is counted to now, not to the last task."""
        now = max(as_of, workflow.now()) if as_of is not None else workflow.now()
        return IncidentStatus(
            incident_id=self.inp.incident_id,
            playbook=self.inp.playbook.name,
            playbook_version=self.inp.playbook.version,
            playbook_hash=self.inp.playbook_hash,
            summary=self.inp.summary,
            severity=self.state.severity,
            status=self.state.status,
            owner=self.state.owner,
            opened_at=self.state.opened_at,
            acknowledged_at=self.state.acknowledged_at,
            closed_at=self.state.closed_at,
            active_steps=[s for s in self.state.steps.values() if s.status == "running"],
            pending_approvals=[
                a
                for a in self.state.approvals.values()
                if a.outcome is None and self.state.steps[a.step_id].status == "running"
            ],
            clocks=[clocks.view(c, now, self.inp.calendar) for c in self.state.clocks.values()],
            sla_breached=self.state.sla_breached,
            fields=self.state.fields,
            as_of=now,
            run=self.state.runs,
            walk=self.state.walk,
            trusted_key_ids=sorted(self.inp.trusted_keys),
            failed_steps=[
                s
                for s in self.state.steps.values()
                if s.status == "failed" and s.failure_decision is None
            ],
            attention=list(self.state.attention.values()),
            parent_incident_id=self.inp.parent_incident_id,
            linked=dict(self.state.linked),
        )

    @workflow.update
    async def retry_step(self, request: StepRequest) -> TimelineEntry:
        self._admitted("retry_step", request, "retry_step", raise_refusal=True)
        self.state.steps[request.step_id].failure_decision = "retry"
        return self._record(
            "step_retry_decided",
            request.reason or "retry after the failure",
            actor=request.actor,
            role=request.role,
            step=request.step_id,
        )

    @retry_step.validator
    def _validate_retry_step(self, request: StepRequest) -> None:
        self._check_failed_step(request)

    @workflow.update
    async def skip_step(self, request: StepRequest) -> TimelineEntry:
        self._admitted("skip_step", request, "skip_step", raise_refusal=True)
        st = self.state.steps[request.step_id]
        st.failure_decision = "skip"
        st.detail = f"skipped by {request.actor} ({request.role}): {request.reason}"
        return self._record(
            "step_skip_decided",
            request.reason,
            actor=request.actor,
            role=request.role,
            step=request.step_id,
        )

    @skip_step.validator
    def _validate_skip_step(self, request: StepRequest) -> None:
        self._check_failed_step(request)
        if not request.reason.strip():
            raise ApplicationError(
                "skipping a step needs a reason", type="missing_reason", non_retryable=True
            )
        step = self.steps[request.step_id]
        if step.sla is not None and step.sla.legal and request.role != "legal":
            raise ApplicationError(
                f"step {step.id} runs a statutory clock: only Legal may skip it (--role legal)",
                type="legal_required",
                non_retryable=True,
            )

    def _check_failed_step(self, request: StepRequest) -> None:
        self._refuse_if_closed()
        st = self.state.steps.get(request.step_id)
        if request.step_id not in self.steps or st is None:
            raise ApplicationError(
                f"no step {request.step_id!r} has run in this incident",
                type="unknown_step",
                non_retryable=True,
            )
        if st.status != "failed" or st.failure_decision is not None:
            raise ApplicationError(
                f"step {request.step_id} is {st.status}, not failed and waiting for a decision",
                type="not_waiting",
                non_retryable=True,
            )

    @workflow.query
    def continuation(self) -> IncidentInput:
        """This incident's input and carried state, from which ``incident reopen`` starts a new
        run once it has closed (a query: it also answers on a closed workflow)."""
        return self.inp.model_copy(update={"state": self._carried_state(), "reopen": None})

    @workflow.query
    def timeline(self) -> list[TimelineEntry]:
        return self.state.timeline

    def _roster(self) -> dict[str, list[str]]:
        """Who held which role: the roster the incident opened with, and what the roster said at
        each approval request since (a person granted a role after the open may act in it)."""
        if not self.state.roster_seen:
            return self.inp.roster
        merged = {person: list(roles) for person, roles in self.inp.roster.items()}
        for person, roles in self.state.roster_seen.items():
            merged[person] = sorted({*merged.get(person, []), *roles})
        return merged

    def _admitted(
        self, action: str, request: BaseModel, message: str, *, raise_refusal: bool
    ) -> bool:
        """Whether a message may act. On an incident with trusted keys it must carry a fresh,
        valid signature of exactly this action by a trusted key, with a nonce not used before;
        with a roster, its actor must have held its role. Otherwise it is recorded as
        ``message_refused`` (and an Update fails with the code as its error type). An incident
        with neither (every one opened before the API) admits everything, as it always did."""
        self._message_task = workflow.info().get_current_history_length()  # see run()
        if not self.inp.trusted_keys and not self.inp.roster:
            return True
        actor, role = str(getattr(request, "actor", "")), getattr(request, "role", None)
        refused = None
        if self.inp.trusted_keys:
            now = workflow.now()
            fields = signed.fields_of(self.inp.incident_id, action, request)
            signature = getattr(request, "signature", None)
            used = self.state.used_nonces
            refused = signed.refusal(signature, fields, self.inp.trusted_keys, now, used)
            if refused is None and signature is not None:
                signed.prune_nonces(used, now)
                used[signature.nonce] = signature.issued_at
        if refused is None and (problem := signed.role_not_held(actor, role, self._roster())):
            refused = (signed.ROLE_NOT_HELD, problem)
        if refused is None:
            return True
        code, reason = refused
        authenticated = code == signed.ROLE_NOT_HELD or not self.inp.trusted_keys
        step = str(getattr(request, "step_id", "") or "")
        self._record(
            "message_refused",
            f"{message} refused ({code}): {reason}"[:300],
            actor=actor if authenticated else "system",
            role=role if authenticated else None,
            step=step if step in self.steps else None,
            data={"message": message[:64], "code": code, "claimed_actor": actor[:100]},
            request_id=getattr(request, "request_id", None),
        )
        if raise_refusal:
            raise ApplicationError(reason, type=code, non_retryable=True)
        return False

    def _refuse_if_closed(self) -> None:
        if self.state.status == "closed":
            raise ApplicationError(
                "the incident is closed", type="incident_closed", non_retryable=True
            )
