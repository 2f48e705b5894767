"""The operations a playbook ``action`` step may name, and the arguments each one takes.

This is the contract between playbooks (checked by ``incident lint``), the interpreter (which calls an
activity by this name with an ``ActionRequest``) and the activity implementations in
``activities/salesforce.py`` and ``activities/notify.py``, and which task queue runs each. Pure: no
I/O, safe to import anywhere. ``OnCallArgs`` is the one operation here no playbook may name: the
interpreter itself asks the roster who is on call (``roster.on_call``, on the incident's own queue).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ON_CALL_ROLES_MAX = 8  # roles one on-call question may name (an approval step's roles)
ON_CALL_MAX = 3  # people named per role: with no rotation the roster answers every grantee
ON_CALL_TEXT_MAX = 1_000
MEMBERS_MAX = 50  # people a decision request names as eligible, per role


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UpsertCaseArgs(_Args):
    subject: str
    description: str = ""
    priority: str = "High"
    status: str = "New"
    origin: str = "Web"
    type: str = ""


class UpdateCaseArgs(_Args):
    status: str | None = None
    priority: str | None = None
    owner_id: str | None = None


class AddCommentArgs(_Args):
    body: str
    public: bool = False


class CreateTaskArgs(_Args):
    subject: str
    description: str = ""
    owner_id: str | None = None
    priority: str = "High"


class SlackArgs(_Args):
    text: str
    channel: str | None = None


class PagerDutyArgs(_Args):
    summary: str = ""
    action: Literal["trigger", "acknowledge", "resolve"] = "trigger"
    escalation_policy: str | None = None
    severity: Literal["critical", "error", "warning", "info"] = "critical"
    # Who holds the role the policy pages (``lena (ic)``), as the incident asked the roster: the
    # interpreter fills it for ``<role>-oncall`` policies; it goes out in the event's details.
    on_call: str | None = Field(default=None, max_length=ON_CALL_TEXT_MAX)


class EmailArgs(_Args):
    to: str
    subject: str
    body: str


class SmsArgs(_Args):
    to: str
    body: str = Field(max_length=1600)


class OnCallArgs(_Args):
    """``roster.on_call``: who holds each of ``roles`` at ``at`` (default: when it runs). Asked by
    the interpreter when a decision is requested or a page goes out, never by a playbook step."""

    roles: list[str] = Field(min_length=1, max_length=ON_CALL_ROLES_MAX)
    at: datetime | None = None
    members: bool = False  # also everyone holding each role (who may decide a request)


OPERATIONS: dict[str, type[_Args]] = {
    "salesforce.upsert_case": UpsertCaseArgs,
    "salesforce.update_case": UpdateCaseArgs,
    "salesforce.add_comment": AddCommentArgs,
    "salesforce.create_task": CreateTaskArgs,
    "notify.slack": SlackArgs,
    "notify.pagerduty": PagerDutyArgs,
    "notify.email": EmailArgs,
    "notify.sms": SmsArgs,
}


def is_salesforce(operation: str) -> bool:
    """Salesforce operations run on their own rate-limited task queue."""
    return operation.startswith("salesforce.")


def salesforce_queue(task_queue: str) -> str:
    """The Salesforce queue beside ``task_queue``: the fleet shares one org-wide rate limit."""
    return f"{task_queue}-salesforce"


def task_queue_for(operation: str, task_queue: str) -> str:
    """Which queue runs ``operation`` when the incident runs on ``task_queue``."""
    return salesforce_queue(task_queue) if is_salesforce(operation) else task_queue
