"""What each endpoint accepts: the request bodies, bounded and validated at the door.

One home for them, shared by the API (``api/routes.py``) and its client (``client/``), so the
`incident` command refuses a malformed request before it connects, with the same rules the API
enforces. Nobody names themselves in a body: the actor is always the token's person.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from workflows.limits import INCIDENT_ID_PATTERN, EventData, Fields, Name, Role, Summary, Text
from workflows.models import Severity


class Body(BaseModel):
    """Unknown keys are refused, not ignored: a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


class OpenBody(Body):
    playbook: str = Field(min_length=1, max_length=64)
    summary: Summary
    severity: Severity | None = None
    fields: Fields = Field(default_factory=dict)
    id: str | None = Field(default=None, pattern=INCIDENT_ID_PATTERN)
    # Ask this triage provider about the summary and record its suggestion beside the person's
    # choice (the playbook and severity above) as the incident's ``triage`` entry (issue 14).
    triage: Literal["local", "chat"] | None = None


class SuggestBody(Body):
    """A case's text, for a triage suggestion (``POST /suggest``)."""

    text: Text = Field(min_length=1)
    provider: Literal["local", "chat"] = "local"


class TriageBody(Body):
    """Record a suggestion for an open incident's summary and the caller's choice of severity
    (``POST /incidents/{id}/triage``; default: the incident's severity as it stands)."""

    provider: Literal["local", "chat"] = "local"
    severity: Severity | None = None
    role: Role | None = None


class ActionBody(Body):
    to: Name | None = None
    severity: Severity | None = None
    reason: Text = ""
    confirm: bool = False  # close: even with linked incidents still open
    role: Role | None = None  # among the roles the caller holds; default: the first that may act


class DecisionBody(Body):
    step: str = Field(min_length=1, max_length=64)
    decision: Literal["approve", "reject"]
    role: Role
    reason: Text = Field(min_length=1)
    # Send as a signal (the answer is the entry the incident recorded) instead of an Update.
    signal: bool = False


class StepBody(Body):
    reason: Text = ""
    role: Role | None = None


class EventBody(Body):
    name: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    data: EventData = Field(default_factory=dict)
    role: Role | None = None  # among the roles the caller holds (a playbook may name who sends it)


class ReopenBody(Body):
    reason: Text = Field(min_length=1)


class PurgeBody(Body):
    """Why the incident's data may be destroyed now (kept in the audit log: no personal data)."""

    reason: str = Field(min_length=1, max_length=300)


class TokenBody(Body):
    """A personal token the caller mints for themselves (`incident login --renew`)."""

    name: str = Field(min_length=1, max_length=80)
    expires_in_days: int = Field(default=90, ge=1, le=365)


class PersonBody(Body):
    """A person an admin adds (the roster checks the handle, role and group names)."""

    handle: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=200)
    roles: list[Role] = Field(default_factory=list, max_length=32)
    groups: list[Role] = Field(default_factory=list, max_length=32)


class TokenCreateBody(Body):
    """A token an admin creates for someone: ``expires_in_days`` (default 90) or ``never``."""

    person: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=100)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    never: bool = False
    service: bool = False

    @field_validator("never")
    @classmethod
    def _one_lifetime(cls, never: bool, info: ValidationInfo) -> bool:
        if never and info.data.get("expires_in_days") is not None:
            raise ValueError("give expires_in_days or never, not both")
        return never

    @property
    def lifetime_days(self) -> int | None:
        """Days until it expires; None: never."""
        return None if self.never else (self.expires_in_days or 90)
