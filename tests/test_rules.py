"""Unit tests of workflows/rules.py: approval decisions, templating, branch facts, severities."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from playbooks.schema import Playbook
from workflows import rules
from workflows.models import (
    ApprovalRequest,
    Decision,
    IncidentInput,
    IncidentState,
    PendingApproval,
    StepState,
)

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)

PLAYBOOK = Playbook.model_validate(
    {
        "name": "rules-test",
        "version": 1,
        "title": "Rules",
        "steps": [
            {"id": "ask", "kind": "approval", "roles": ["legal", "Privacy"]},
            {
                "id": "two",
                "kind": "approval",
                "roles": ["legal"],
                "second_approver": {"roles": ["director"]},
            },
            {"id": "later", "kind": "approval", "roles": ["legal"]},
            {"id": "act", "kind": "action", "activity": "case.note"},
        ],
    }
)
STEPS = {s.id: s for s in PLAYBOOK.iter_steps()}


def state(**extra) -> IncidentState:
    """Steps ``ask`` and ``two`` are running and awaiting decisions; ``alice`` requested both."""
    values = {
        "severity": "sev1",
        "owner": "alice",
        "opened_at": T0,
        "steps": {
            sid: StepState(step_id=sid, kind="approval", status="running", started_at=T0)
            for sid in ("ask", "two")
        },
        "approvals": {
            "ask": PendingApproval(
                step_id="ask", roles=["legal", "Privacy"], requested_by="alice", requested_at=T0
            ),
            "two": PendingApproval(
                step_id="two",
                roles=["legal"],
                second_roles=["director"],
                requested_by="alice",
                requested_at=T0,
            ),
        },
    }
    values.update(extra)
    return IncidentState(**values)


def request(step: str = "ask", actor: str = "lena", role: str = "legal") -> ApprovalRequest:
    return ApprovalRequest(step_id=step, actor=actor, role=role, reason="because")


def refused(st: IncidentState, req: ApprovalRequest) -> str:
    with pytest.raises(rules.DecisionRefused) as caught:
        rules.check_decision(st, STEPS, req)
    assert caught.value.message == str(caught.value)
    return caught.value.code


def decided(pending: PendingApproval, actor: str, role: str, outcome=None) -> PendingApproval:
    decision = Decision(actor=actor, role=role, reason="r", decision="approve", at=T0)
    return pending.model_copy(update={"decisions": [decision], "outcome": outcome})


# --- check_decision -------------------------------------------------------------------------


def test_the_right_role_gets_the_pending_approval_back():
    st = state()
    assert rules.check_decision(st, STEPS, request()) is st.approvals["ask"]
    # Roles compare case-insensitively, both ways.
    assert rules.check_decision(st, STEPS, request(role="LEGAL")).step_id == "ask"
    assert rules.check_decision(st, STEPS, request(role="privacy")).step_id == "ask"


def test_unknown_step():
    assert refused(state(), request("nope")) == "unknown_step"


def test_not_an_approval():
    assert refused(state(), request("act")) == "not_an_approval"


def test_incident_closed_comes_before_anything_about_the_approval():
    st = state(status="closed")
    assert refused(st, request()) == "incident_closed"
    assert refused(st, request(role="comms")) == "incident_closed"


def test_not_awaiting_decision_before_the_step_starts():
    assert refused(state(), request("later")) == "not_awaiting_decision"


@pytest.mark.parametrize("status", ["cancelled", "failed"])
def test_not_awaiting_decision_once_the_step_stopped_without_one(status):
    st = state()
    st.steps["ask"] = st.steps["ask"].model_copy(update={"status": status})
    assert refused(st, request()) == "not_awaiting_decision"


@pytest.mark.parametrize("outcome", ["approved", "rejected"])
def test_already_decided(outcome):
    st = state()
    st.approvals["ask"] = decided(st.approvals["ask"], "lena", "legal", outcome)
    st.steps["ask"] = st.steps["ask"].model_copy(update={"status": "completed"})
    # Even the right person with the right role, or the requester, is told it is decided.
    assert refused(st, request(actor="lou")) == "already_decided"
    assert refused(st, request(actor="alice")) == "already_decided"


def test_role_not_allowed():
    assert refused(state(), request(role="comms")) == "role_not_allowed"


def test_role_not_allowed_names_the_second_approver_roles():
    st = state()
    st.approvals["two"] = decided(st.approvals["two"], "lena", "legal")
    with pytest.raises(rules.DecisionRefused) as caught:
        rules.check_decision(st, STEPS, request("two", "lou", "legal"))
    assert caught.value.code == "role_not_allowed"
    assert "second approver" in caught.value.message and "director" in caught.value.message
    assert rules.check_decision(st, STEPS, request("two", "dora", "Director")).step_id == "two"


def test_self_approval_by_the_requester_in_any_case():
    assert refused(state(), request(actor="alice")) == "self_approval"
    assert refused(state(), request(actor="ALICE")) == "self_approval"
    # The requester is fixed when the step starts: a new owner may decide.
    assert rules.check_decision(state(owner="bob"), STEPS, request(actor="bob"))


def test_same_approver_cannot_be_the_second_person():
    st = state()
    st.approvals["two"] = decided(st.approvals["two"], "lena", "legal")
    assert refused(st, request("two", "Lena", "director")) == "same_approver"


def test_refusal_codes_are_either_stale_or_authorization():
    assert set(rules.STALE_REFUSALS).isdisjoint(rules.AUTHORIZATION_REFUSALS)
    assert set(rules.STALE_REFUSALS) | set(rules.AUTHORIZATION_REFUSALS) == {
        "unknown_step",
        "not_an_approval",
        "not_awaiting_decision",
        "already_decided",
        "incident_closed",
        "role_not_allowed",
        "self_approval",
        "same_approver",
    }


# --- render ---------------------------------------------------------------------------------


def test_render_fills_placeholders_recursively():
    context = {"incident_id": "CR-1", "severity": "sev0", "decision.ask": "approved"}
    value = {
        "subject": "[{{severity}}] {{ incident_id }}",
        "lines": ["{{ decision.ask }}", {"deep": "{{   incident_id   }}!"}],
        "count": 3,
        "flag": True,
        "none": None,
    }
    assert rules.render(value, context) == {
        "subject": "[sev0] CR-1",
        "lines": ["approved", {"deep": "CR-1!"}],
        "count": 3,
        "flag": True,
        "none": None,
    }


def test_render_unknown_names_render_empty_and_other_braces_stay():
    assert rules.render("a{{ missing }}b", {}) == "ab"
    assert rules.render("{ x } {{ bad-name }} {{}}", {"x": "1"}) == "{ x } {{ bad-name }} {{}}"


def test_render_does_not_render_substituted_values_again():
    assert rules.render("{{ a }}", {"a": "{{ b }}", "b": "secret"}) == "{{ b }}"


def test_render_leaves_keys_alone():
    assert rules.render({"{{ a }}": "{{ a }}"}, {"a": "x"}) == {"{{ a }}": "x"}


# --- facts ----------------------------------------------------------------------------------


def incident(**fields: str) -> IncidentInput:
    return IncidentInput(
        incident_id="CR-7",
        playbook=PLAYBOOK,
        playbook_hash="sha256:x",
        severity="sev2",
        summary="threat to school",
        fields=fields,
        opened_by="alice",
    )


def test_facts_hold_fields_built_ins_and_decisions():
    st = state(fields={"jurisdiction": "us", "severity": "forged"}, owner="bob", severity="sev0")
    st.approvals["ask"] = decided(st.approvals["ask"], "lena", "legal", "rejected")
    facts = rules.facts(incident(), st, "act")
    assert facts == {
        "jurisdiction": "us",
        "incident_id": "CR-7",
        "summary": "threat to school",
        "severity": "sev0",  # built-ins win over a field of the same name; state, not input
        "playbook": "rules-test",
        "opened_by": "alice",
        "owner": "bob",
        "step_id": "act",
        "decision.ask": "rejected",  # "two" is undecided, so it has no decision fact
    }


def test_facts_read_the_state_fields_not_the_input_fields():
    st = state(fields={"le_case": "LE-9"})
    facts = rules.facts(incident(le_case="old"), st)
    assert (facts["le_case"], facts["step_id"]) == ("LE-9", "")


# --- severities -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "levels", "expected"),
    [
        ("sev3", 1, "sev2"),
        ("sev3", 3, "sev0"),
        ("sev2", 1, "sev1"),
        ("sev1", 3, "sev0"),  # capped at the top
        ("sev0", 1, "sev0"),
        ("sev2", 0, "sev2"),
    ],
)
def test_raised(severity, levels, expected):
    assert rules.raised(severity, levels) == expected


def test_is_more_urgent():
    assert rules.is_more_urgent("sev0", "sev1")
    assert rules.is_more_urgent("sev1", "sev3")
    assert not rules.is_more_urgent("sev1", "sev1")
    assert not rules.is_more_urgent("sev2", "sev1")
