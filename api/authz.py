"""Who may do what, in one table: an action and the roles that may take it.

The API checks this table before it forwards anything; the workflow then checks what only it can
know (which roles a step accepts, the two-person and self-approval rules). A decision is also
checked against the roles the person holds: nobody decides in a role they were not granted.
Restricted playbooks (child safety) are visible only to their group: for everyone else such an
incident does not exist (404), in every listing, status, timeline, export and report.
"""

from __future__ import annotations

from typing import Protocol

COMMANDERS = frozenset({"ic", "cr", "cr_lead", "mgr", "admin"})
# Everyone a shipped playbook names as a step's owner or approver works the incident
# (tests/test_api.py keeps this list and the playbooks in step).
SPECIALISTS = frozenset({"lers", "legal", "privacy", "sec", "comms", "child_safety", "data",
                         "food_safety", "catalog_ops", "retail_mgr"})  # fmt: skip
RESPONDERS = COMMANDERS | SPECIALISTS
READERS = RESPONDERS | {"auditor"}

# action -> roles that may take it ("decide" is special: see ``check_decision``).
ACTIONS: dict[str, frozenset[str]] = {
    "open": COMMANDERS | {"intake"},
    "ack": COMMANDERS,
    "assign": COMMANDERS,
    "escalate": COMMANDERS,
    "note": RESPONDERS,
    "close": COMMANDERS,
    "reopen": COMMANDERS,
    "retry": COMMANDERS,
    "skip": COMMANDERS | {"legal"},
    "event": RESPONDERS | {"intake"},
    "read": READERS,
    "list": READERS,
    "export": frozenset({"auditor", "legal", "admin"}),
    "report": frozenset({"mgr", "auditor", "admin"}),
    "oncall": READERS,
    "roster_admin": frozenset({"admin"}),
    # destroying an incident's data keys for good: a privacy and legal decision
    "purge": frozenset({"admin", "privacy", "legal"}),
    # a triage suggestion for a case's text: the machine suggests, a commander decides
    "suggest": RESPONDERS | {"intake"},
    # recording a suggestion and one's choice on an open incident: a commander's act
    "triage": COMMANDERS,
}

# playbook -> the group whose members alone may see its incidents
RESTRICTED_PLAYBOOKS: dict[str, str] = {"child-safety": "child-safety"}


class Caller(Protocol):
    """The signed-in person, as any identity provider describes them (read-only)."""

    @property
    def person(self) -> str: ...
    @property
    def roles(self) -> frozenset[str]: ...
    @property
    def groups(self) -> frozenset[str]: ...


class Forbidden(Exception):
    """403: the caller lacks a role the action needs (the message names them)."""

    def __init__(self, action: str, needed: frozenset[str], why: str | None = None) -> None:
        if why is None:
            roles = ", ".join(sorted(needed))
            why = f"needs one of the roles: {roles}" if needed else "is not allowed"
        super().__init__(f"{action} {why}")
        self.action = action
        self.needed = needed


def check(caller: Caller, action: str) -> None:
    needed = ACTIONS[action]
    if not caller.roles & needed:
        raise Forbidden(action, needed)


def check_decision(caller: Caller, role: str) -> None:
    """A person decides only in a role they hold (the workflow checks the step accepts it)."""
    if role not in caller.roles:
        raise Forbidden(f"deciding as {role}", frozenset({role}))


def may_see(caller: Caller, playbook: str | None) -> bool:
    group = RESTRICTED_PLAYBOOKS.get(playbook or "")
    return group is None or group in caller.groups


# Every endpoint and the row of ``ACTIONS`` that guards it (``_NOT_ROWS``: those guarded
# otherwise); README's list is ``endpoint_table()``, checked by the tests.
ENDPOINTS: list[tuple[str, str, str]] = [
    ("POST", "/incidents", "open"),
    ("GET", "/incidents", "list"),
    ("GET", "/incidents/{incident_id}", "read"),
    ("GET", "/incidents/{incident_id}/timeline", "read"),
    ("GET", "/incidents/{incident_id}/summary", "read"),
    ("POST", "/suggest", "suggest"),
    ("POST", "/incidents/{incident_id}/triage", "triage"),
    *[
        ("POST", f"/incidents/{{incident_id}}/actions/{a}", a)
        for a in ("ack", "assign", "escalate", "note", "close")
    ],
    ("POST", "/incidents/{incident_id}/decisions", "decide"),
    *[("POST", f"/incidents/{{incident_id}}/steps/{{step}}/{m}", m) for m in ("retry", "skip")],
    ("POST", "/incidents/{incident_id}/events", "event"),
    ("POST", "/incidents/{incident_id}/reopen", "reopen"),
    ("GET", "/incidents/{incident_id}/export", "export"),
    ("POST", "/incidents/{incident_id}/purge", "purge"),
    ("GET", "/reports/sla", "report"),
    ("GET", "/metrics", "report"),
    ("GET", "/oncall/{role}", "oncall"),
    ("GET", "/people", "roster_admin"),
    ("POST", "/people", "roster_admin"),
    ("POST", "/people/{handle}/deactivate", "roster_admin"),
    ("GET", "/tokens", "roster_admin"),
    ("POST", "/tokens", "roster_admin"),
    ("DELETE", "/tokens/{token_id}", "roster_admin"),
    ("POST", "/codec/decode", "read"),
    ("POST", "/codec/encode", "read"),
    ("OPTIONS", "/codec/{operation}", "public"),
    ("GET", "/codec/signin", "public"),
    ("POST", "/codec/signin", "read"),
    ("GET", "/authz", "signed-in"),
    ("GET", "/me", "signed-in"),
    ("POST", "/me/tokens", "personal"),
    ("DELETE", "/me/token", "signed-in"),
    ("GET", "/healthz", "public"),
]
_NOT_ROWS = {
    "decide": "the role decided in, if the caller holds it (the step says which it accepts)",
    "signed-in": "anyone signed in",
    "personal": "anyone signed in with a personal token (not a service account's)",
    "public": "anyone, no token",
}


def endpoint_table() -> str:
    """The endpoints and who may call each, as a Markdown table (README's "HTTP API" list)."""
    lines = ["| endpoint | action | who may call it |", "|---|---|---|"]
    for method, path, action in ENDPOINTS:
        who = _NOT_ROWS.get(action) or ", ".join(sorted(ACTIONS[action]))
        lines.append(f"| `{method} {path}` | {action} | {who} |")
    return "\n".join(lines) + "\n"


def table() -> list[tuple[str, str]]:
    """The role matrix as rows (action, roles), for docs and tests."""
    return [(action, ", ".join(sorted(roles))) for action, roles in ACTIONS.items()]
