"""The ``incidents.open_linked`` activity: an ``open_incident`` step's child, opened through the
front door (``incidents/service.py``) as any incident is, with its parent named in its input.

Idempotent: the child's id comes from the parent's and the step's (``linked_incident_id``, made
in the workflow), and the front door reports an incident already open instead of opening it
again; a child that already closed is reported closed. A child of an incident that trusts the
API's keys trusts them too (and the roster as it stands), as intake's incidents do. A request the
child's playbook refuses (an unknown playbook, a missing required field) fails for good with the
front door's one line, so the parent's step fails under its ``on_failure`` policy.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeats
from identity.keys import load_or_create
from identity.signing import trusting
from incidents.service import IncidentClosed, InvalidRequest, build_input, start_incident
from playbooks.loader import PlaybookError
from settings import get_settings
from workflows.models import ActionRequest, ActionResult
from workflows.names import LINKED_ACTIVITY


@activity.defn(name=LINKED_ACTIVITY)
@heartbeats
async def open_linked(request: ActionRequest) -> ActionResult:
    """Open (or find) the linked incident ``request.args['child_id']``."""
    settings = get_settings()
    args: dict[str, Any] = request.args
    child = str(args["child_id"])
    fields = {str(k): str(v) for k, v in dict(args.get("fields") or {}).items() if str(v) != ""}
    try:
        inp = build_input(
            playbook=str(args["playbook"]), severity=str(args.get("severity") or "") or None,
            summary=str(args.get("summary") or args["playbook"])[:500], fields=fields,
            incident_id=child, opened_by=f"incident:{request.incident_id}"[:100],
            settings=settings,
        )  # fmt: skip
    except (InvalidRequest, PlaybookError) as err:
        raise ApplicationError(" ".join(str(err).split())[:300], type="linked_refused",
                               non_retryable=True) from None  # fmt: skip
    inp = inp.model_copy(update={"parent_incident_id": request.incident_id})
    if args.get("trust") == "yes":
        inp = trusting(inp, load_or_create(settings.data_dir), settings.effective_database_url)
    try:
        result = await start_incident(activity.client(), inp, activity.info().task_queue)
    except IncidentClosed:
        return ActionResult(detail=f"linked incident {child} is closed",
                            data={"child_id": child, "created": "no", "status": "closed"})  # fmt: skip
    verb = "opened" if result.created else "already open"
    return ActionResult(detail=f"linked incident {child} {verb}",
                        data={"child_id": child, "created": "yes" if result.created else "no",
                              "status": "open"})  # fmt: skip


ACTIVITIES = [open_linked]
