"""Who is on call, in the incident's words: the roster's answer turned into the names a decision
request and a page carry.

The interpreter asks the roster (the ``roster.on_call`` activity, ``activities/on_call.py``) when an
approval is requested and when a page goes out, and records the answer in the timeline, so the
history says whom each request and page named. This module holds the rules around that answer:
which role a PagerDuty escalation policy pages, who is left out (the requester of an approval), how
many people are named, and the text. Pure: safe in workflow code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from playbooks.operations import MEMBERS_MAX, ON_CALL_MAX, ON_CALL_TEXT_MAX

PATCH = "route-to-on-call"  # workflow.patched: incidents started before ask nobody
PAGED_ROLE_SUFFIX = "-oncall"
NOBODY = "nobody on call"
MEMBERS = "members:"  # the answer's key prefix for everyone holding a role (``members: true``)


def paged_role(policy: str) -> str | None:
    """The role an escalation policy pages: ``<role>-oncall`` pages whoever holds ``role`` (so
    ``ic-oncall`` names the incident commander on call); any other policy names nobody."""
    role = policy.removesuffix(PAGED_ROLE_SUFFIX)
    return role if role and role != policy else None


@dataclass(frozen=True)
class OnCall:
    """The roster's answer for some roles: (person, role) pairs, in the order of the roles asked;
    ``reached`` is False when the roster could not answer (the request or page still goes out)."""

    holders: list[tuple[str, str]] = field(default_factory=list)
    reached: bool = True
    # role -> everyone holding it now (asked with ``members``; empty when not asked or unreached)
    members: dict[str, list[str]] = field(default_factory=dict)

    @property
    def people(self) -> list[str]:
        return [person for person, _ in self.holders]

    @property
    def text(self) -> str:
        """``lena (legal), sam (comms)``, or ``nobody on call``; bounded (a page must go out)."""
        named = ", ".join(f"{person} ({role})" for person, role in self.holders) or NOBODY
        return named if len(named) <= ON_CALL_TEXT_MAX else named[: ON_CALL_TEXT_MAX - 3] + "..."

    @property
    def data(self) -> dict[str, str]:
        """What the timeline entry records about it."""
        return {"on_call": self.text} | ({} if self.reached else {"roster": "unreachable"})


def answer(found: dict[str, str], roles: Sequence[str], exclude: str | None = None) -> OnCall:
    """The activity's answer (role -> comma-separated handles) for ``roles``: each person once,
    at most ``ON_CALL_MAX`` a role, never ``exclude`` (the requester, who may not decide)."""
    holders: list[tuple[str, str]] = []
    for role in dict.fromkeys(roles):
        named = [p for p in found.get(role, "").split(",") if p and p != exclude]
        for person in named[:ON_CALL_MAX]:
            if all(person != seen for seen, _ in holders):
                holders.append((person, role))
    members = {
        role: [p for p in found[MEMBERS + role].split(",") if p][:MEMBERS_MAX]
        for role in dict.fromkeys(roles)
        if MEMBERS + role in found
    }
    return OnCall(holders, members=members)


def decision_needed(
    roles: Sequence[str], step_id: str, eligible: Sequence[str], on_call: OnCall | None
) -> str:
    """The decision-needed message: the people on call first, then the others who may decide.
    ``on_call`` None: an incident started before on-call routing (its words are kept as they were)."""
    asked = "/".join(roles)
    if on_call is None:
        who = f" ({', '.join(eligible)})" if eligible else ""
        return f"decision needed from {asked}{who} on {step_id}"
    head = f"decision needed from {asked} on {step_id}: "
    if not on_call.holders:
        return head + NOBODY + (f"; eligible: {', '.join(eligible)}" if eligible else "")
    others = [p for p in eligible if p not in on_call.people]
    tail = f"; also eligible: {', '.join(others)}" if others else ""
    return f"{head}on call {on_call.text}{tail}"
