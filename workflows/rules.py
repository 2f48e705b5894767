"""Pure rules the interpreter applies: who may decide an approval, templating, branch facts.

Kept out of ``incident.py`` so the same rule serves the approval Update's validator, its handler and
the approval signal, and so each rule is unit-testable without a Temporal server.
"""

from __future__ import annotations

import re
from typing import Any

from playbooks.schema import SEVERITIES, ApprovalStep, Severity
from workflows.models import ApprovalRequest, IncidentInput, IncidentState, PendingApproval

# Refusals that mean the request is malformed or stale: rejected before history (Update validator).
STALE_REFUSALS = (
    "unknown_step",
    "not_an_approval",
    "not_awaiting_decision",
    "already_decided",
    "incident_closed",
)
# Refusals that mean "this person may not decide this": recorded in the timeline for auditors.
AUTHORIZATION_REFUSALS = ("role_not_allowed", "self_approval", "same_approver")


class DecisionRefused(Exception):
    """A decision the workflow will not accept; ``code`` is one of the refusal names above."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_decision(
    state: IncidentState, steps: dict[str, Any], request: ApprovalRequest
) -> PendingApproval:
    """Return the pending approval ``request`` may decide, or raise ``DecisionRefused``."""
    step = steps.get(request.step_id)
    if step is None:
        raise DecisionRefused("unknown_step", f"no step {request.step_id!r} in this playbook")
    if not isinstance(step, ApprovalStep):
        raise DecisionRefused(
            "not_an_approval", f"step {request.step_id!r} is a {step.kind} step, not an approval"
        )
    if state.status == "closed":
        raise DecisionRefused("incident_closed", "the incident is closed")
    pending = state.approvals.get(request.step_id)
    if pending is None:
        raise DecisionRefused(
            "not_awaiting_decision", f"step {request.step_id!r} is not awaiting a decision yet"
        )
    if pending.outcome is not None:
        raise DecisionRefused(
            "already_decided", f"step {request.step_id!r} was already {pending.outcome}"
        )
    step_state = state.steps.get(request.step_id)
    if step_state is None or step_state.status != "running":
        # The step was cancelled (a sibling branch failed) or failed (SLA breach with `fail`).
        raise DecisionRefused(
            "not_awaiting_decision",
            f"step {request.step_id!r} is {step_state.status if step_state else 'not started'}; "
            "it awaits no decision",
        )
    allowed = pending.second_roles if pending.decisions else pending.roles
    assert allowed is not None
    if request.role.lower() not in {r.lower() for r in allowed}:
        who = "second approver" if pending.decisions else "approver"
        raise DecisionRefused(
            "role_not_allowed",
            f"role {request.role!r} may not act as {who} of {request.step_id!r} "
            f"(allowed: {', '.join(allowed)})",
        )
    if request.actor.lower() == pending.requested_by.lower():
        raise DecisionRefused(
            "self_approval", f"{request.actor} requested this approval and may not decide it"
        )
    if any(d.actor.lower() == request.actor.lower() for d in pending.decisions):
        raise DecisionRefused(
            "same_approver", f"{request.actor} already decided; a second person must decide"
        )
    return pending


def raised(severity: Severity, levels: int) -> Severity:
    """Severity ``levels`` tiers more urgent (sev0 is the top)."""
    index = max(0, SEVERITIES.index(severity) - levels)
    return SEVERITIES[index]  # type: ignore[return-value]


def is_more_urgent(new: Severity, old: Severity) -> bool:
    return SEVERITIES.index(new) < SEVERITIES.index(old)


def facts(inp: IncidentInput, state: IncidentState, step_id: str = "") -> dict[str, str]:
    """What templates and branch conditions may read: fields, built-ins and decisions so far."""
    result = dict(state.fields)
    result.update(
        incident_id=inp.incident_id,
        summary=inp.summary,
        severity=state.severity,
        playbook=inp.playbook.name,
        opened_by=inp.opened_by,
        owner=state.owner,
        step_id=step_id,
    )
    for sid, approval in state.approvals.items():
        if approval.outcome:
            result[f"decision.{sid}"] = approval.outcome
    return result


_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")


def render(value: Any, context: dict[str, str]) -> Any:
    """Fill ``{{ name }}`` placeholders in strings, recursively; unknown names render empty."""
    if isinstance(value, str):
        return _TEMPLATE.sub(lambda m: context.get(m.group(1), ""), value)
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    return value
