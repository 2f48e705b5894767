"""The incident workflow's public contract: its input, messages, queries and timeline.

The CLI, the intake endpoint, the activities and the auditors' tools all speak these models; the
workflow keeps its whole state in ``IncidentState`` so continue-as-new can carry it over intact.
Pure pydantic (serialised by ``temporalio.contrib.pydantic``).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from playbooks.schema import Playbook, Severity
from workflows.limits import EventData, Fields, Ident, Name, Role, Summary, Text
from workflows.triage import TriageNote

TRUSTED_KEYS_MAX = 16  # public keys one incident trusts (the API's current and rotated-out keys)
ROSTER_MAX = 2_000  # people on an incident's roster

# Names of the incident-level SLA clocks (step clocks are named by their step id).
ACK_CLOCK, RESOLVE_CLOCK = "incident.acknowledge", "incident.resolve"

IncidentStatusName = Literal["open", "acknowledged", "playbook_complete", "closed"]
StepStatusName = Literal["running", "completed", "skipped", "failed", "cancelled"]
SlaStateName = Literal[
    "on_track", "warned", "breached", "paused", "met", "met_late", "stopped", "not_met"
]


class BusinessCalendar(BaseModel):
    """The team's working week, snapshotted into each incident so SLA maths never reads config."""

    timezone: str = "America/Los_Angeles"
    days: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])  # Monday = 0
    start: time = time(9, 0)
    end: time = time(17, 0)  # at or before start: the working day runs past midnight

    @field_validator("days")
    @classmethod
    def _weekdays(cls, days: list[int]) -> list[int]:
        if not days or len(set(days)) != len(days) or any(d not in range(7) for d in days):
            raise ValueError("business days are distinct weekdays 0 (Monday) to 6, at least one")
        return days


class SlaClock(BaseModel):
    """One running SLA clock: pure data, advanced only by ``workflows.sla``.

    ``banked`` is the counted time before the current running segment; ``running_since`` is None
    while paused. Every threshold is measured in counted time (business or wall).
    """

    name: str  # step id, or "incident.acknowledge" / "incident.resolve"
    kind: Literal["wall", "business"] = "wall"
    started_at: datetime
    due: timedelta
    warn_at: timedelta | None = None
    banked: timedelta = timedelta(0)
    running_since: datetime | None = None
    paused_total: timedelta = timedelta(0)
    paused_since: datetime | None = None
    warned_at: datetime | None = None
    breached_at: datetime | None = None
    stopped_at: datetime | None = None
    # Stopped without its work done (the incident closed first, the step failed or was skipped):
    # not met, and reported apart, never as "met".
    unmet: bool = False
    due_at: datetime | None = None  # projected wall-clock deadline while running

    @property
    def state(self) -> SlaStateName:
        if self.stopped_at is not None and self.unmet:
            return "breached" if self.breached_at else "not_met"
        if self.stopped_at is not None:
            return "met_late" if self.breached_at else "met"
        if self.breached_at is not None:
            return "breached"
        if self.running_since is None:
            return "paused"
        return "warned" if self.warned_at else "on_track"


class TimelineEntry(BaseModel):
    """One line of the human timeline: who did what, when, to which step, against which SLA."""

    seq: int
    at: datetime
    actor: str
    role: str | None = None
    kind: str
    step: str | None = None
    detail: str = ""
    sla: SlaStateName | None = None
    due_at: datetime | None = None
    data: dict[str, str] = Field(default_factory=dict)
    request_id: str | None = None  # the message that caused it, so its sender can find its verdict


class Decision(BaseModel):
    actor: str
    role: str
    reason: str
    decision: Literal["approve", "reject"]
    at: datetime


class PendingApproval(BaseModel):
    """An approval step awaiting decisions; ``requested_by`` may not decide it."""

    step_id: str
    roles: list[str]
    second_roles: list[str] | None = None
    requested_by: str
    requested_at: datetime
    decisions: list[Decision] = Field(default_factory=list)
    outcome: Literal["approved", "rejected"] | None = None
    eligible: list[str] = Field(default_factory=list)  # people holding a role, at the request
    # Who was on call for its roles when it was requested (the requester never): the roster's
    # answer, named first in the request. Empty: nobody, or an incident started before it asked.
    on_call: list[str] = Field(default_factory=list)


class StepState(BaseModel):
    step_id: str
    kind: str
    status: StepStatusName
    owner: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    detail: str = ""
    branch_case: int | None = None  # chosen case, so a resumed run follows the same path
    timer_fires_at: datetime | None = None
    reminder_sent: bool = False
    attempt: int = 1  # a failed step the commander retried runs again as attempt 2, 3 ...
    failure_decision: Literal["retry", "skip"] | None = None  # the commander's, once asked


class IncidentState(BaseModel):
    """Everything the workflow knows; carried whole across continue-as-new."""

    status: IncidentStatusName = "open"
    severity: Severity
    severity_history: list[tuple[datetime, Severity]] = Field(default_factory=list)
    owner: str
    fields: dict[str, str] = Field(default_factory=dict)
    opened_at: datetime
    acknowledged_at: datetime | None = None
    closed_at: datetime | None = None
    resolution: str | None = None
    steps: dict[str, StepState] = Field(default_factory=dict)
    approvals: dict[str, PendingApproval] = Field(default_factory=dict)
    clocks: dict[str, SlaClock] = Field(default_factory=dict)
    events_pending: dict[str, int] = Field(default_factory=dict)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    records_flushed: int = 0  # timeline entries already mirrored to the records database
    # Entries of earlier runs not carried over (they live in the records and in history), so
    # continue-as-new carries a small state however long the incident: seq = offset + position.
    timeline_offset: int = 0
    paged_policies: list[str] = Field(default_factory=list)  # resolved at close
    attention: dict[str, str] = Field(default_factory=dict)  # what needs a person, and why
    sla_breached: bool = False
    walk: Literal["running", "complete", "halted"] = (
        "running"  # the playbook walk, not the incident
    )
    runs: int = 1
    # Nonces of signed messages accepted lately (nonce -> issued_at): a second use is a replay.
    # Those older than the freshness window are dropped (their replay is refused as stale).
    used_nonces: dict[str, datetime] = Field(default_factory=dict)
    # Who the roster said held a role when an approval was requested (person -> roles), beside
    # the roster the incident opened with: someone granted a role since may decide.
    roster_seen: dict[Name, list[Role]] = Field(default_factory=dict, max_length=ROSTER_MAX)
    # Incidents this one opened (workflows/linked.py): child id -> its last known status.
    linked: dict[str, str] = Field(default_factory=dict, max_length=20)


class ReopenRequest(BaseModel):
    """Who reopened a closed incident, and why (recorded as the new run's first entry)."""

    actor: Name
    role: Role = "ic"
    reason: Text = Field(min_length=1)


class IncidentInput(BaseModel):
    """Start argument of IncidentWorkflow: the playbook snapshot and the facts at open."""

    incident_id: Ident
    playbook: Playbook
    playbook_hash: str
    severity: Severity
    summary: Summary
    fields: Fields = Field(default_factory=dict)
    opened_by: Name
    calendar: BusinessCalendar = Field(default_factory=BusinessCalendar)
    parent_incident_id: str | None = None
    # Carried by continue-as-new; None on the first run.
    state: IncidentState | None = None
    # Set when a closed incident is reopened: the state it closed with continues in a new run.
    reopen: ReopenRequest | None = None
    # Tests force continue-as-new past this many history events (the server suggests it at 4,096).
    continue_as_new_after_events: int | None = None
    # Signed messages (workflows/signatures.py): key id -> base64 raw Ed25519 public key. Empty
    # (every incident opened before the API, every recorded history): nothing is verified.
    trusted_keys: dict[str, str] = Field(default_factory=dict, max_length=TRUSTED_KEYS_MAX)
    # Person -> the roles they held when the incident opened (the API fills it); when given, a
    # message in a role its actor did not hold is refused (role_not_held).
    roster: dict[Name, list[Role]] = Field(default_factory=dict, max_length=ROSTER_MAX)
    # The engine's own calls (records, the roster, its notifications and pages, the archiver's
    # start) as local activities inside the workflow task (issue 11). Only for workers that keep
    # a workflow cache: the SDK cancels a run's local activities whenever it evicts the run, and
    # with no cache that is any task that overlaps another (the front door sets it from
    # Settings.incident_options, off by default: see settings.local_calls).
    local_calls: bool = False
    # The roster's on-call answer alone as a local activity (set by the front door whenever its
    # workers keep a cache): a read with no side effect, so a run rebuilt for a lone query may
    # run it harmlessly, and it saves the approval and each page a workflow task.
    local_reads: bool = False
    # At close, the calls that need nothing of each other go out in one workflow task (the pages'
    # resolutions, the closing message, the parent's news, the archiver's start), then the last
    # records batch: set by the front door; False in every history recorded before it.
    close_together: bool = False
    # A triage suggestion and the person's choice, recorded after ``opened`` (workflows/triage.py).
    triage: TriageNote | None = None


class IncidentOutcome(BaseModel):
    incident_id: str
    status: IncidentStatusName
    resolution: str | None
    sla_breached: bool
    time_to_acknowledge: timedelta | None
    time_to_resolve: timedelta | None


# --- Messages -----------------------------------------------------------------------------


class Signature(BaseModel):
    """The API's signature on one message (the ``signature`` field of every request model; made
    and checked in ``workflows/signatures.py``, whose cryptography the model never needs).

    Loosely typed on purpose: a malformed value is a refusal recorded in the timeline
    (``verify``), not a decoding error."""

    key_id: str = Field(max_length=64)
    issued_at: datetime
    nonce: str = Field(max_length=128)
    value: str = Field(max_length=256)  # base64 (standard, padded) of the 64-byte signature


class ApprovalRequest(BaseModel):
    """Sent by Update (``approve``/``reject``) or signal (``approve_signal``/``reject_signal``)."""

    step_id: Ident
    actor: Name
    role: Role
    reason: Text = Field(min_length=1)
    request_id: Ident | None = None  # lets a signal's sender find the verdict in the timeline
    signature: Signature | None = None  # the API's (workflows/signatures.py)


class ApprovalResult(BaseModel):
    step_id: str
    outcome: Literal["approved", "rejected", "awaiting_second_approver"]


class CommanderRequest(BaseModel):
    """The commander's actions: ack, assign, escalate, note, close (all Updates)."""

    actor: Name
    role: Role = "ic"
    to: Name | None = None  # assign
    severity: Severity | None = None  # escalate
    reason: Text = ""  # escalate, note text, close resolution
    confirm: bool = False  # close: even with linked incidents still open
    signature: Signature | None = None


class ExternalEvent(BaseModel):
    """A named outside event (signal ``event``), e.g. ``law_enforcement_response``."""

    name: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    actor: Name = "system"
    data: EventData = Field(default_factory=dict)
    request_id: Ident | None = None  # lets the sender find the verdict in the timeline
    role: Role | None = None  # the sender's role, checked against the roster when given
    signature: Signature | None = None


class ClockView(BaseModel):
    name: str
    kind: str
    state: SlaStateName
    due_at: datetime | None
    warn_at: datetime | None
    remaining: timedelta | None  # counted time left (negative once breached)
    paused_total: timedelta


class IncidentStatus(BaseModel):
    """Answer of the ``status`` query."""

    incident_id: str
    playbook: str
    playbook_version: int
    playbook_hash: str
    summary: str
    severity: Severity
    status: IncidentStatusName
    owner: str
    opened_at: datetime
    acknowledged_at: datetime | None
    closed_at: datetime | None
    active_steps: list[StepState]
    pending_approvals: list[PendingApproval]
    clocks: list[ClockView]
    sla_breached: bool
    fields: dict[str, str]
    as_of: datetime
    run: int
    walk: str = "running"  # running, complete, halted
    trusted_key_ids: list[str] = Field(default_factory=list)  # keys its messages must be signed by
    failed_steps: list[StepState] = Field(default_factory=list)  # awaiting retry or skip
    attention: list[str] = Field(default_factory=list)
    parent_incident_id: str | None = None  # the incident that opened this one
    linked: dict[str, str] = Field(default_factory=dict)  # incidents it opened -> their status


class StepRequest(BaseModel):
    """A commander's decision on a failed step: ``retry_step`` or ``skip_step`` (Updates)."""

    step_id: Ident
    actor: Name
    role: Role = "ic"
    reason: Text = ""
    signature: Signature | None = None


# --- Activity contract ----------------------------------------------------------------------


class ActionRequest(BaseModel):
    """Input of every integration activity: the operation's args plus who/why for idempotency."""

    incident_id: str
    step_id: str
    operation: str
    args: dict[str, Any] = Field(default_factory=dict)
    severity: Severity = "sev2"
    playbook: str = ""
    # Stable across retries and replays: (incident, step, purpose). APIs without idempotency
    # of their own keep a delivery ledger keyed by it.
    idempotency_key: str


class ActionResult(BaseModel):
    ok: bool = True
    detail: str = ""
    data: dict[str, str] = Field(default_factory=dict)


class RecordBatch(BaseModel):
    """Timeline entries for the records activity to mirror into the database."""

    incident_id: str
    workflow_id: str
    run_id: str
    playbook: str
    playbook_hash: str
    entries: list[TimelineEntry]
    snapshot: IncidentState | None = None
