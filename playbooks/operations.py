"""The operations a playbook ``action`` step may name, and the arguments each one takes.

This is the contract between playbooks (checked by ``incident lint``), the interpreter (which calls an
activity by this name with an ``ActionRequest``) and the activity implementations in
``activities/salesforce.py`` and ``activities/notify.py``, and which task queue runs each. Pure: no
I/O, safe to import anywhere.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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


class EmailArgs(_Args):
    to: str
    subject: str
    body: str


class SmsArgs(_Args):
    to: str
    body: str = Field(max_length=1600)


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
