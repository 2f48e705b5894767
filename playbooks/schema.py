"""The shape of a playbook: steps, SLAs, escalations, approvals, conditions.

A playbook is loaded from YAML by ``playbooks.loader``, validated by these models, hashed, and then
snapshotted whole into each incident's workflow input, so the interpreter in
``workflows/incident.py`` only ever sees these models. Everything here is pure (no I/O), which is why
the workflow sandbox may import it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from playbooks import fields as _fields
from playbooks.durations import Duration
from playbooks.durations import format_duration as format_duration
from playbooks.durations import parse_duration as parse_duration
from playbooks.fields import EventSpec, FieldSpec, StrictModel

SEVERITIES = ("sev0", "sev1", "sev2", "sev3")
Severity = Literal["sev0", "sev1", "sev2", "sev3"]

# Roles of the Critical Response team (domain.md section 4); playbooks may only name these.
ROLES = frozenset(
    {
        "lers",  # law-enforcement response
        "cr",  # critical-response specialist
        "cr_lead",
        "ic",  # incident commander
        "legal",
        "mgr",  # T&S manager
        "director",
        "sec",
        "privacy",  # DPO
        "data",
        "child_safety",
        "comms",
        "food_safety",
        "catalog_ops",
        "retail_mgr",
        "system",
    }
)


_Model = StrictModel


# --- Conditions (branch) ------------------------------------------------------------------


class Condition(_Model):
    """A test on incident fields; exactly one of the operators is given.

    ``field`` may name an incident field, ``severity``, or ``decision.<step-id>`` (``approved`` /
    ``rejected``) so a branch can follow an earlier approval.
    """

    field: str | None = None
    equals: str | None = None
    not_equals: str | None = None
    in_: list[str] | None = Field(default=None, alias="in")
    exists: bool | None = None
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(default=None, alias="not")

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        field_ops = [self.equals, self.not_equals, self.in_, self.exists]
        combinators = [self.all, self.any, self.not_]
        n_field = sum(op is not None for op in field_ops)
        n_comb = sum(op is not None for op in combinators)
        if n_comb == 1 and n_field == 0 and self.field is None:
            return self
        if n_comb == 0 and n_field == 1 and self.field:
            return self
        raise ValueError(
            "a condition is either `field` with one of equals/not_equals/in/exists, "
            "or exactly one of all/any/not"
        )

    def evaluate(self, facts: dict[str, str]) -> bool:
        if self.all is not None:
            return all(c.evaluate(facts) for c in self.all)
        if self.any is not None:
            return any(c.evaluate(facts) for c in self.any)
        if self.not_ is not None:
            return not self.not_.evaluate(facts)
        assert self.field is not None
        value = facts.get(self.field)
        if self.exists is not None:
            return (value not in (None, "")) == self.exists
        if self.equals is not None:
            return value is not None and value.lower() == self.equals.lower()
        if self.not_equals is not None:
            return value is None or value.lower() != self.not_equals.lower()
        assert self.in_ is not None
        return value is not None and value.lower() in {v.lower() for v in self.in_}


# --- SLAs and escalation -------------------------------------------------------------------


class Escalation(_Model):
    """One thing to do when an SLA is breached; exactly one field is set.

    YAML: ``- page: lers-secondary``, ``- notify: "#tns-leadership"``, ``- raise_severity: 1``,
    ``- fail``.
    """

    page: str | None = None
    notify: str | None = None
    raise_severity: int | None = Field(default=None, ge=1, le=3)
    fail: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if data == "fail":
            return {"fail": True}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> Escalation:
        if (
            sum(v is not None for v in (self.page, self.notify, self.raise_severity, self.fail))
            != 1
        ):
            raise ValueError("an escalation is exactly one of page, notify, raise_severity, fail")
        return self


def _escalations(value: Any) -> Any:
    return [value] if isinstance(value, str | dict) else value


ANCHOR_PATTERN = r"^(step|incident|field:[A-Za-z0-9_]+|step:[a-z0-9][a-z0-9_-]*)$"


def parse_anchor(anchor: str) -> tuple[str, str]:
    """``field:aware_at`` -> ``("field", "aware_at")``; ``incident`` -> ``("incident", "")``."""
    kind, _, name = anchor.partition(":")
    return kind, name


class Sla(_Model):
    """A deadline on a step or the incident: warn at ``warn_at``, breach at ``due``.

    ``clock: business`` counts only the team's business hours; ``pauses_on``/``resumes_on`` stop the
    clock while waiting on an outside party. ``legal: true`` marks a statutory clock, which must run on
    the wall clock and never pause. ``anchor`` says when the clock starts: ``step`` (when its step
    starts; for an incident clock, when the incident opens), ``incident`` (when the incident
    opened), ``field:<name>`` (a datetime incident field, e.g. ``field:aware_at``) or
    ``step:<id>`` (when another step started). A legal clock often starts before its step does.
    """

    due: Duration
    warn_at: Duration | None = None
    on_breach: Annotated[list[Escalation], BeforeValidator(_escalations)] = Field(
        default_factory=list
    )
    clock: Literal["wall", "business"] = "wall"
    pauses_on: list[str] = Field(default_factory=list)
    resumes_on: list[str] = Field(default_factory=list)
    legal: bool = False
    anchor: str = Field(default="step", pattern=ANCHOR_PATTERN)

    @model_validator(mode="after")
    def _consistent(self) -> Sla:
        if self.warn_at is not None and self.warn_at >= self.due:
            raise ValueError("warn_at must come before due")
        if self.legal and (self.clock != "wall" or self.pauses_on):
            raise ValueError("a legal clock runs on the wall clock and never pauses")
        if bool(self.pauses_on) != bool(self.resumes_on):
            raise ValueError("pauses_on and resumes_on go together")
        return self

    @property
    def fails_on_breach(self) -> bool:
        return any(e.fail for e in self.on_breach)


class IncidentSla(_Model):
    """Incident-level clocks: time to acknowledge (stops on ack) and to resolve (stops on close)."""

    acknowledge: Sla | None = None
    resolve: Sla | None = None


# --- Steps ---------------------------------------------------------------------------------


class RetrySpec(_Model):
    """Retry policy of an action's activity; outages are retried with exponential backoff."""

    max_attempts: int = Field(default=0, ge=0)  # 0 = until the timeout
    initial_interval: Duration = timedelta(seconds=1)
    backoff: float = Field(default=2.0, ge=1.0)
    max_interval: Duration = timedelta(minutes=5)
    timeout: Duration = timedelta(hours=1)  # schedule-to-close budget for all attempts


FailurePolicy = Literal["halt", "continue", "ask"]
GUIDANCE_MAX = 4000  # characters of a step's guidance, and of a playbook's purpose or scope
LEGAL_BASIS_MAX = 300


class _StepBase(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str = ""
    owner: str | None = None
    sla: Sla | None = None
    description: str = ""
    # For people, never read by the interpreter: what to do, and the law the step rests on
    # (``incident handbook`` renders them with the step's owner and SLA).
    guidance: str = Field(default="", max_length=GUIDANCE_MAX)
    legal_basis: str = Field(default="", max_length=LEGAL_BASIS_MAX)
    # What a failure of this step means (default: the playbook's ``on_failure``): ``halt`` the
    # walk, ``continue`` with the next step, or ``ask`` the commander to retry or skip it.
    on_failure: FailurePolicy | None = None


class ActionStep(_StepBase):
    """Run one activity (``salesforce.upsert_case``, ``notify.slack`` ...) with templated args."""

    kind: Literal["action"] = "action"
    activity: str
    args: dict[str, Any] = Field(default_factory=dict)
    retry: RetrySpec = Field(default_factory=RetrySpec)


class SecondApprover(_Model):
    roles: list[str] = Field(min_length=1)


class ApprovalStep(_StepBase):
    """Wait for an approve/reject decision from one of ``roles`` (and optionally a second person)."""

    kind: Literal["approval"] = "approval"
    roles: list[str] = Field(min_length=1)
    second_approver: SecondApprover | None = None
    on_reject: Literal["continue", "fail"] = "continue"
    prompt: str = ""


class WaitForStep(_StepBase):
    """Wait for a named external event (a signal), optionally only until a timeout."""

    kind: Literal["wait_for"] = "wait_for"
    event: str = Field(pattern=r"^[a-z0-9_]+$")
    timeout: Duration | None = None
    on_timeout: Literal["continue", "fail"] = "continue"


class TimerStep(_StepBase):
    """Wait a duration, or until a date taken from an incident field; remind before it fires."""

    kind: Literal["timer"] = "timer"
    duration: Duration | None = None
    until_field: str | None = None
    remind_before: Duration | None = None
    reminder: str | None = None  # Slack channel for the reminder; default: the playbook's channel

    @model_validator(mode="after")
    def _one_target(self) -> TimerStep:
        if (self.duration is None) == (self.until_field is None):
            raise ValueError("a timer takes exactly one of duration or until_field")
        if self.duration and self.remind_before and self.remind_before >= self.duration:
            raise ValueError("remind_before must be shorter than duration")
        return self


class OpenIncidentStep(_StepBase):
    """Open another playbook's incident, linked to this one (an emergency disclosure that needs a
    preservation hold): its id is this incident's and this step's (a second attempt finds it),
    its summary and fields are templated like an action's args; the step completes once it is
    open. The child runs on its own and tells this incident when it closes."""

    kind: Literal["open_incident"] = "open_incident"
    playbook: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    summary: str = Field(default="", max_length=500)
    severity: Severity | None = None
    fields: dict[str, str] = Field(default_factory=dict)


class BranchCase(_Model):
    """``when`` true (or absent: the default case) -> run ``steps``, then jump to ``goto`` if set."""

    when: Condition | None = None
    steps: list[Step] = Field(default_factory=list)
    goto: str | None = None


class BranchStep(_StepBase):
    """Pick the first case whose condition holds; ``goto`` jumps forward in the enclosing list."""

    kind: Literal["branch"] = "branch"
    cases: list[BranchCase] = Field(min_length=1)


class ParallelBranch(_Model):
    name: str
    steps: list[Step] = Field(min_length=1)


class ParallelStep(_StepBase):
    """Run branches at once and join; a failing branch cancels its siblings unless told not to."""

    kind: Literal["parallel"] = "parallel"
    branches: list[ParallelBranch] = Field(min_length=2)
    cancel_siblings_on_failure: bool = True


Step = Annotated[
    ActionStep
    | ApprovalStep
    | WaitForStep
    | TimerStep
    | BranchStep
    | ParallelStep
    | OpenIncidentStep,
    Field(discriminator="kind"),
]
STEP_KINDS = ("action", "approval", "wait_for", "timer", "branch", "parallel", "open_incident")


class Playbook(_Model):
    """One playbook, exactly as snapshotted into an incident."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: int = Field(ge=1)
    title: str
    description: str = ""
    # For the handbook: why the playbook exists, and when (and when not) to open it.
    purpose: str = Field(default="", max_length=GUIDANCE_MAX)
    applies_when: str = Field(default="", max_length=GUIDANCE_MAX)
    default_severity: Severity = "sev2"
    channel: str = "#tns-critical-response"
    escalation_policy: str = "tns-critical-response"
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    # A failed step: ``halt`` the walk (as snapshots before this key did), ``continue``, or
    # ``ask`` the commander to retry (after fixing a field) or skip it (Legal, for statutory ones).
    on_failure: FailurePolicy = "halt"
    # The outside events the playbook accepts and the fields each may set. Empty: a snapshot from
    # before events were declared, which accepts every event, as it did then.
    events: dict[str, EventSpec] = Field(default_factory=dict)
    sla: IncidentSla = Field(default_factory=IncidentSla)
    # Most incidents stay open for the commander to close; a purely automated playbook may end
    # the incident itself when its last step is done.
    close_on_complete: bool = False
    steps: list[Step] = Field(min_length=1)

    def iter_steps(self) -> list[StepModel]:
        """Every step, nested ones included, in document order."""
        return list(walk_steps(self.steps))

    def check_event(self, name: str, data: dict[str, str]) -> str | None:
        """Why event ``name`` carrying ``data`` is refused (undeclared event, a field it may not
        set, an invalid value), or None; a playbook that declares no events accepts every one."""
        return _fields.check_event(self.name, self.events, self.fields, name, data)

    def check_fields(self, fields: dict[str, str]) -> list[str]:
        """Every problem with the fields given at open (unknown, required missing, invalid)."""
        return _fields.check_fields(self.name, self.fields, fields)


StepModel = (
    ActionStep
    | ApprovalStep
    | WaitForStep
    | TimerStep
    | BranchStep
    | ParallelStep
    | OpenIncidentStep
)


def child_lists(step: StepModel) -> list[list[StepModel]]:
    """The step lists nested directly inside ``step`` (branch cases, parallel branches)."""
    if isinstance(step, BranchStep):
        return [list(case.steps) for case in step.cases]
    if isinstance(step, ParallelStep):
        return [list(branch.steps) for branch in step.branches]
    return []


def walk_steps(steps: list[StepModel]) -> Any:
    for step in steps:
        yield step
        for nested in child_lists(step):
            yield from walk_steps(nested)


BranchCase.model_rebuild()
ParallelBranch.model_rebuild()
Playbook.model_rebuild()
