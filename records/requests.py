"""The transparency facts of an incident: what kind of request it answered, where from, how it
ended, how many accounts it named, when it was answered, whether user notice was delayed and on
what basis, and when a child-safety report was sent.

Derived from the state the workflow already sends with every batch (its declared fields, step
states and approval outcomes), inside the append transaction, next to the projection
(``records/projection.py``); the workflow records nothing new for it. Only kinds, declared
choices, counts and times are kept (``request_records``), never a field's text: the account ids,
agencies and addresses stay in the sealed timeline. ``insights/transparency.py`` counts them.

Which playbook answers which request, and which of its steps mean "answered" or "rejected", is
the table ``RULES`` below: a new law-enforcement playbook adds a line here.

Outcomes: ``rejected`` when an approval named in ``rejected_by`` was rejected; ``disclosed`` (or
``partially`` when the answering event set ``disclosure: partial``) or ``preserved`` /
``reported`` when a step of ``answered_by`` completed; ``withdrawn`` when the incident closed
with neither; ``pending`` while it is open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from records.tables import RequestRecord, utc
from workflows.models import IncidentState

JURISDICTIONS = ("us", "eu", "uk", "other")
PROCESS_TYPES = ("subpoena", "court_order", "warrant")
OUTCOMES = ("disclosed", "partially", "rejected", "withdrawn", "preserved", "reported", "pending")
REQUEST_TYPES = ("emergency_disclosure", "preservation", "legal_process")
CHILD_SAFETY = "child_safety_report"
NOTICE_BASES = {
    "ndo": "non-disclosure order (18 U.S.C. §2705(b))",
    "emergency": "emergency: notice after it passed (§2702(b)(8))",
    "legal_bar": "Legal withheld notice (legal bar)",
}
_IDS = re.compile(r"\s*[,;]\s*")


@dataclass(frozen=True)
class RequestRule:
    """How one playbook's state reads as a transparency row."""

    request_type: str
    accounts_field: str
    answered_by: tuple[str, ...]  # steps whose completion answers the request
    answered: str  # the outcome then: disclosed (or partially), preserved, reported
    rejected_by: tuple[str, ...] = ()  # approvals whose rejection rejects it
    type_field: str | None = None


RULES = {
    "emergency-disclosure": RequestRule(
        "emergency_disclosure", "account_id", ("produce-data",), "disclosed",
        ("verify-callback", "verify-domain", "verify-officer", "legal-determination"),
    ),
    "preservation": RequestRule(
        "preservation", "account_id", ("legal-hold-snapshot",), "preserved"
    ),
    "legal-process": RequestRule(
        "legal_process", "account_id", ("produce",), "disclosed", ("legal-review",),
        type_field="process_type",
    ),
    "child-safety": RequestRule(CHILD_SAFETY, "account_ids", ("cybertip-report",), "reported"),
}  # fmt: skip


def count_ids(value: str | None) -> int:
    """How many identifiers an ``id`` field holds (one, or several separated by , or ;)."""
    return len([v for v in _IDS.split(value or "") if v.strip()])


def _choice(value: str | None, allowed: tuple[str, ...], fallback: str) -> str:
    value = (value or "").strip().lower()
    return value if value in allowed else fallback


def _rejection(state: IncidentState, rule: RequestRule) -> datetime | None:
    """When the first rejecting decision was taken, if any approval of ``rejected_by`` was."""
    times = [
        max((d.at for d in a.decisions), default=a.requested_at)
        for name in rule.rejected_by
        if (a := state.approvals.get(name)) is not None and a.outcome == "rejected"
    ]
    return min(times) if times else None


def _answer(state: IncidentState, rule: RequestRule) -> datetime | None:
    times = [
        st.finished_at
        for name in rule.answered_by
        if (st := state.steps.get(name)) is not None
        and st.status == "completed"
        and st.finished_at is not None
    ]
    return min(times) if times else None


def _notice_basis(playbook: str, state: IncidentState, outcome: str) -> str | None:
    """Why user notice was delayed, when it was and on a legal basis."""
    notice = state.approvals.get("user-notice-decision")
    if notice is not None and notice.outcome == "rejected":
        return "legal_bar"
    if playbook == "legal-process" and (state.fields.get("ndo_expiry") or "").strip():
        return "ndo"
    if playbook == "emergency-disclosure" and outcome in ("disclosed", "partially"):
        return "emergency"
    return None


def derive(incident_id: str, playbook: str, state: IncidentState) -> RequestRecord | None:
    """The transparency row of an incident of ``playbook`` in ``state``; None for a playbook
    that answers no request."""
    rule = RULES.get(playbook)
    if rule is None:
        return None
    rejected, answered = _rejection(state, rule), _answer(state, rule)
    if rejected is not None:
        outcome, responded = "rejected", rejected
    elif answered is not None:
        partial = state.fields.get("disclosure", "").strip().lower() == "partial"
        outcome = "partially" if rule.answered == "disclosed" and partial else rule.answered
        responded = answered
    else:
        outcome, responded = ("withdrawn" if state.status == "closed" else "pending"), None
    return RequestRecord(
        incident_id=incident_id,
        playbook=playbook,
        request_type=rule.request_type,
        process_type=_choice(state.fields.get(rule.type_field), PROCESS_TYPES, "other")
        if rule.type_field
        else None,
        jurisdiction=_choice(state.fields.get("jurisdiction"), JURISDICTIONS, "unknown"),
        outcome=outcome,
        accounts=count_ids(state.fields.get(rule.accounts_field)),
        opened_at=utc(state.opened_at),
        responded_at=utc(responded),
        notice_basis=_notice_basis(playbook, state, outcome),
        report_sent_at=utc(answered) if rule.request_type == CHILD_SAFETY else None,
    )


def project_request(s: Session, incident_id: str, playbook: str, state: IncidentState) -> None:
    """Upsert the incident's transparency row (called by ``records.projection.project``)."""
    row = derive(incident_id, playbook, state)
    if row is None:
        return
    stored = s.get(RequestRecord, incident_id)
    if stored is None:
        s.add(row)
        return
    for key, value in row.model_dump(exclude={"incident_id"}).items():
        setattr(stored, key, value)
    s.add(stored)
