"""The on-call activity: how the incident asks the roster (``roster/service.py``) who holds a role.

The interpreter calls it when an approval is requested and when a page goes out for a
``<role>-oncall`` policy (``workflows/on_call.py``), on the incident's own queue, beside the records
activities: the roster lives in the records database. The answer is bounded (at most
``ON_CALL_MAX`` people a role). A roster that cannot be read fails the attempt with a one-line
error that names no server, path or person; after its few retries the workflow goes on naming
nobody, because a page or a decision request must still go out.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeats
from activities.log import activity_logger
from activities.salesforce import parse_args
from playbooks.operations import MEMBERS_MAX, ON_CALL_MAX, OnCallArgs
from roster.service import holders, members
from workflows.models import ActionRequest, ActionResult
from workflows.names import ON_CALL_ACTIVITY
from workflows.on_call import MEMBERS


@activity.defn(name=ON_CALL_ACTIVITY)
@heartbeats
async def on_call(req: ActionRequest) -> ActionResult:
    """Who holds each of the requested roles at ``at``: ``data`` maps a role to its holders'
    handles, comma-separated (empty: nobody holds it)."""
    args = parse_args(OnCallArgs, req)
    at = args.at or datetime.now(UTC)
    roles = list(dict.fromkeys(args.roles))
    log = activity_logger(step_id=req.step_id)

    def lookup() -> dict[str, str]:
        found = {role: ",".join(holders(role, at)[:ON_CALL_MAX]) for role in roles}
        if args.members:  # everyone who may decide, not only who is on call
            found |= {MEMBERS + role: ",".join(members(role)[:MEMBERS_MAX]) for role in roles}
        return found

    try:
        found = await asyncio.to_thread(lookup)
    except Exception as err:  # noqa: BLE001 - any failure to read the roster is the same to the caller
        # Its message may name a host, a file or a query: the history gets only its type.
        log.warning("roster.on_call_failed", error=type(err).__name__)
        raise ApplicationError(
            f"the roster could not be read ({type(err).__name__})", type="RosterUnavailable"
        ) from None
    log.info("roster.on_call", roles=len(roles), named=sum(bool(v) for v in found.values()))
    named = "; ".join(
        f"{role}: {people or 'nobody'}" for role, people in found.items() if role in roles
    )
    return ActionResult(detail=f"on call: {named}", data=found)


ACTIVITIES = [on_call]
