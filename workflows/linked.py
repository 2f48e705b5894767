"""Linked incidents (issue 14): a playbook step opens another playbook's incident, the child
tells its parent when it closes, and the parent asks for confirmation before closing while a
child is open.

Closing a parent while a child is open needs ``confirm`` (``workflows/messages.py``'s close
validator). The child is opened by the ``incidents.open_linked`` activity, which calls the front door
(``incidents/service.py``) like any other open: the child is a normal top-level incident with its
own id, in list, status and export, that outlives its parent, reopens and archives as every
incident does (a Temporal child workflow would be cancelled or abandoned with its parent and
answer to it). Its id comes from the parent's and the step's (``linked_incident_id``), so a retry
or a replayed step finds the one already open. The parent keeps ``state.linked`` (child id ->
its last known status) and records ``linked_opened`` and ``linked_state`` entries; a
``linked_state`` signal for an incident this one never opened, or with an unknown status, is
refused and recorded like any bad message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from playbooks.schema import OpenIncidentStep
    from workflows import rules
    from workflows.failures import StepFailed
    from workflows.limits import ID_MAX
    from workflows.messages import IncidentMessages
    from workflows.names import (
        LINKED_ACTIVITY,
        SIGNAL_LINKED,
        linked_incident_id,
        workflow_id_for,
    )
    from workflows.outbound import reraise_cancellation

LINKED_STATE = "linked-state"  # a child tells its parent it closed (a new signal it sends)
LINKED_MAX = 20  # children one incident may open


class LinkedState(BaseModel):
    """Signal ``linked_state``: a child incident's status, sent by the child itself."""

    child_id: str = Field(max_length=ID_MAX)
    status: Literal["open", "acknowledged", "playbook_complete", "closed"]
    at: datetime


class IncidentLinks(IncidentMessages):
    """The ``open_incident`` step (dispatched from ``workflows/steps.py``), the children's news
    (from ``workflows/signals.py``) and the child's own news to its parent."""

    async def _open_linked(self, step: OpenIncidentStep) -> str:
        if len(self.state.linked) >= LINKED_MAX:
            raise StepFailed(f"an incident opens at most {LINKED_MAX} linked incidents")
        facts = rules.facts(self.inp, self.state, step.id)
        child = linked_incident_id(self.inp.incident_id, step.id)
        args = {
            "child_id": child,
            "playbook": step.playbook,
            "severity": step.severity or "",
            "summary": rules.render(step.summary, facts) or step.title or step.playbook,
            "fields": rules.render(dict(step.fields), facts),
            "trust": "yes" if self.inp.trusted_keys else "no",
        }
        try:
            result = await self._activity(LINKED_ACTIVITY, step.id, args, step.id)
        except ActivityError as err:
            reraise_cancellation(err)
            cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err)
            raise StepFailed(
                f"opening the linked {step.playbook} incident failed: {cause}"
            ) from None
        status = result.data.get("status", "open")
        self.state.linked[child] = status
        verb = "opened" if result.data.get("created") == "yes" else "found (already opened)"
        self._record("linked_opened", f"{step.playbook} incident {child} {verb}", step=step.id,
                     data={"child": child, "playbook": step.playbook, "status": status})  # fmt: skip
        return f"linked {step.playbook} incident {child} ({status})"

    def _on_linked_state(self, news: LinkedState) -> None:
        if news.child_id not in self.state.linked:
            self._record("message_refused", f"{news.child_id[:100]} is no incident this one opened",
                         data={"message": SIGNAL_LINKED, "code": "unknown_linked_incident"})  # fmt: skip
            return
        self.state.linked[news.child_id] = news.status
        self._record("linked_state", f"linked incident {news.child_id} is {news.status}",
                     actor=f"incident:{news.child_id}"[:100],
                     data={"child": news.child_id, "status": news.status})  # fmt: skip

    async def _tell_parent(self) -> None:
        """A child closing tells its parent (once per close; a parent gone is recorded)."""
        parent = self.inp.parent_incident_id
        if not parent or not self._patched(LINKED_STATE):
            return
        news = LinkedState(child_id=self.inp.incident_id, status="closed", at=workflow.now())
        try:
            await workflow.get_external_workflow_handle(workflow_id_for(parent)).signal(
                SIGNAL_LINKED, news
            )
        except Exception as err:  # noqa: BLE001 - a parent gone never fails the child's close
            self._record("linked_state_undelivered", f"parent {parent}: {type(err).__name__}")
