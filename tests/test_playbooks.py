"""The shipped playbooks: they lint clean, follow domain.md section 4, and hash by content only."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from playbooks.loader import (
    PLAYBOOK_DIR,
    content_hash,
    lint_file,
    list_playbooks,
    load_playbook,
    load_playbook_file,
)
from playbooks.schema import (
    ROLES,
    ActionStep,
    ApprovalStep,
    BranchStep,
    ParallelStep,
    Playbook,
    StepModel,
    TimerStep,
    WaitForStep,
)

NAMES = [
    "account-takeover",
    "child-safety",
    "emergency-disclosure",
    "legal-process",
    "physical-safety",
    "preservation",
    "product-recall",
    "threat-self-harm",
]


def steps_of(name: str) -> list[StepModel]:
    return load_playbook(name).playbook.iter_steps()


def step(name: str, step_id: str) -> Any:
    return next(s for s in steps_of(name) if s.id == step_id)


@pytest.mark.parametrize("path", sorted(PLAYBOOK_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_playbook_lints_clean(path: Path) -> None:
    assert [str(e) for e in lint_file(path)] == []


def test_all_eight_domain_playbooks_ship() -> None:
    assert [p.playbook.name for p in list_playbooks()] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_playbook_basics(name: str) -> None:
    loaded = load_playbook(name)
    playbook = loaded.playbook
    assert loaded.path == PLAYBOOK_DIR / f"{name}.yaml"
    assert (playbook.version, playbook.name) == (1, name)
    assert playbook.title and playbook.fields and playbook.events
    assert playbook.sla.acknowledge is not None
    # legal-process lasts until dates from the document (return date, NDO expiry): no resolve SLA.
    assert (playbook.sla.resolve is None) == (name == "legal-process")
    assert all(s.owner in ROLES for s in playbook.iter_steps())
    first = playbook.steps[0]
    if name == "physical-safety":  # a parallel comes first; the case opens inside it
        first = step(name, "open-case")
    assert isinstance(first, ActionStep) and first.activity == "salesforce.upsert_case"


def test_incident_acknowledge_clocks_follow_the_severity_tiers() -> None:
    expected = {
        "sev0": (timedelta(minutes=5), "wall"),
        "sev1": (timedelta(minutes=15), "wall"),
        "sev2": (timedelta(hours=4), "business"),
    }
    for loaded in list_playbooks():
        sla = loaded.playbook.sla
        assert sla.acknowledge
        got = (sla.acknowledge.due, sla.acknowledge.clock)
        assert got == expected[loaded.playbook.default_severity], loaded.playbook.name


RESOLVE = {
    "physical-safety": timedelta(days=14),
    "threat-self-harm": timedelta(days=3),
    "account-takeover": timedelta(days=4),
    "product-recall": timedelta(days=3),
    "emergency-disclosure": timedelta(days=33),
    "preservation": timedelta(days=195),
    "child-safety": timedelta(days=372),
}


def test_no_incident_resolves_later_than_its_steps_and_timers_allow() -> None:
    """Issue 8 item 9: a resolve SLA shorter than its own steps' SLAs breached every incident."""
    for loaded in list_playbooks():
        playbook, resolve = loaded.playbook, loaded.playbook.sla.resolve
        if resolve is None:
            continue
        assert resolve.clock == "wall" and resolve.due == RESOLVE[playbook.name]
        for s in playbook.iter_steps():
            if s.sla is not None:
                step_due = s.sla.due * (4.2 if s.sla.clock == "business" else 1)
                assert step_due <= resolve.due, (playbook.name, s.id)
            if isinstance(s, TimerStep) and s.duration is not None:
                assert s.duration < resolve.due, (playbook.name, s.id)


def test_physical_safety_resolves_after_the_decision_and_the_review() -> None:
    sla = load_playbook("physical-safety").playbook.sla
    assert sla.acknowledge and sla.acknowledge.due == timedelta(minutes=5)
    assert sla.resolve and sla.resolve.due >= timedelta(hours=72) + timedelta(days=7)
    assert step("physical-safety", "contain").sla.due == timedelta(hours=1)  # contain 1 h


# --- Declared events and fields ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_awaited_event_is_declared_and_sets_declared_fields(name: str) -> None:
    playbook = load_playbook(name).playbook
    awaited = {s.event for s in playbook.iter_steps() if isinstance(s, WaitForStep)}
    assert awaited <= set(playbook.events)
    for event, spec in playbook.events.items():
        assert set(spec.sets) <= set(playbook.fields), event
        assert spec.description, event
        assert event in awaited or spec.sets, event
    assert playbook.check_event("no_such_event", {}) is not None


EVENTS = {
    "physical-safety": {
        "safety_call_made": ["call_outcome"],
        "accused_on_hold": ["accused_id"],
        "evidence_preserved": [],
        "classified": ["category"],
        "art18_report_sent": [],
        "parties_updated": [],
        "retailer_identified": ["retailer_involved", "retailer_contact_email"],
        "review_done": [],
    },
    "preservation": {
        "legal_hold_taken": ["snapshot_ref"],
        "preservation_renewed": ["requester_reference"],
    },
    "emergency-disclosure": {"data_produced": ["disclosure"]},
    "legal-process": {
        "service_checked": ["return_date", "ndo_expiry", "issuer_email"],
        "user_notified": [],
        "production_sent": ["disclosure"],
    },
    "account-takeover": {
        "safety_plan_made": [],
        "account_secured": [],
        "exposure_checked": ["wider_compromise", "aware_at"],
        "evidence_preserved": [],
        "art18_report_sent": [],
    },
}


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_events_and_what_they_may_set(name: str) -> None:
    events = load_playbook(name).playbook.events
    assert {event: spec.sets for event, spec in events.items()} == EVENTS[name]


def test_the_readme_safety_call_is_the_playbooks_event() -> None:
    """The README's walk-through sends `safety_call_made --data call_outcome=reached`."""
    playbook = load_playbook("physical-safety").playbook
    assert playbook.check_event("safety_call_made", {"call_outcome": "reached"}) is None
    assert playbook.check_event("safety_call_done", {}) == (
        "event safety_call_done is not declared by playbook physical-safety; expected one of: "
        "accused_on_hold, art18_report_sent, classified, evidence_preserved, parties_updated, "
        "retailer_identified, review_done, safety_call_made"
    )
    assert playbook.check_event("safety_call_made", {"outcome": "reached"}) == (
        "event safety_call_made may set only: call_outcome (not outcome)"
    )


def test_an_event_cannot_redirect_the_retailer_notice() -> None:
    """Issue 8 item 11: an event redirected retailer_contact_email to an outside address."""
    playbook = load_playbook("physical-safety").playbook
    hijack = {"retailer_contact_email": "attacker@example.org"}
    assert playbook.check_event("parties_updated", hijack) == (
        "event parties_updated sets no fields (not retailer_contact_email)"
    )
    assert playbook.check_event("retailer_identified", {"retailer_contact_email": "nope"}) == (
        "event retailer_identified: field retailer_contact_email is not an email address; "
        "expected one address like name@example.org"
    )


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("legal-process", {"return_date": "datetime", "ndo_expiry": "datetime"}),
        ("account-takeover", {"aware_at": "datetime", "account_id": "id"}),
        ("preservation", {"received_at": "datetime", "requester_email": "email"}),
        ("threat-self-harm", {"at_risk_phone": "phone", "jurisdiction": "choice"}),
        ("physical-safety", {"retailer_contact_email": "email", "category": "choice"}),
        ("product-recall", {"retailer_contact_email": "email", "upc": "id"}),
    ],
)
def test_fields_that_reach_a_vendor_or_a_clock_are_typed(name: str, fields: dict[str, str]):
    specs = load_playbook(name).playbook.fields
    assert {f: specs[f].type for f in fields} == fields


# --- Statutory clocks from the right moment ----------------------------------------------------


ANCHORED = {
    ("account-takeover", "breach-notification"): "field:aware_at",  # GDPR Art. 33, from awareness
    ("preservation", "legal-hold-snapshot"): "field:received_at",  # from the request's receipt
    ("child-safety", "cybertip-report"): "incident",  # from actual knowledge
    ("product-recall", "rfr-report"): "incident",  # from learning of the problem
    ("product-recall", "send-notices"): "incident",  # within 24 h of the recall
    ("legal-process", "art10-acknowledgement"): "incident",  # DSA Art. 10, from receipt
    ("emergency-disclosure", "legal-determination"): "incident",  # 1 h to a decision
}


def test_clocks_that_start_before_their_step_are_anchored() -> None:
    anchored = {
        (loaded.playbook.name, s.id): s.sla.anchor
        for loaded in list_playbooks()
        for s in loaded.playbook.iter_steps()
        if s.sla is not None and s.sla.anchor != "step"
    }
    assert anchored == ANCHORED
    gdpr = step("account-takeover", "breach-notification").sla
    assert gdpr.legal and gdpr.due == timedelta(hours=48) < timedelta(hours=72)


def test_emergency_disclosure_verifies_then_legal_decides() -> None:
    verify = step("emergency-disclosure", "verify-requester")
    assert isinstance(verify, ParallelStep) and len(verify.branches) == 3
    assert verify.sla and verify.sla.due == timedelta(minutes=20)
    legal = step("emergency-disclosure", "legal-determination")
    assert isinstance(legal, ApprovalStep) and legal.roles == ["legal"]
    rejected = step("emergency-disclosure", "if-rejected")
    assert isinstance(rejected, BranchStep)
    when = rejected.cases[0].when
    assert when and when.evaluate({"decision.legal-determination": "rejected"})
    assert rejected.cases[0].goto == "close-out"


def test_preservation_runs_90_days_then_renewal_then_legal_release() -> None:
    ids = [s.id for s in load_playbook("preservation").playbook.steps]
    expiry, renewal, release = (
        step("preservation", i) for i in ("preservation-expiry", "renewal", "release-hold")
    )
    assert ids.index("preservation-expiry") < ids.index("renewal") < ids.index("release-hold")
    assert isinstance(expiry, TimerStep)
    assert (expiry.duration, expiry.remind_before) == (timedelta(days=90), timedelta(days=15))
    assert isinstance(renewal, WaitForStep) and renewal.timeout is not None
    assert isinstance(release, ApprovalStep) and release.roles == ["legal"]


def test_physical_safety_contains_in_parallel_first() -> None:
    contain = load_playbook("physical-safety").playbook.steps[0]
    assert isinstance(contain, ParallelStep)
    assert [b.name for b in contain.branches] == ["safety-call", "hold-accused", "preserve"]
    dues = [
        step("physical-safety", i).sla.due
        for i in ("safety-call", "hold-accused", "preserve-evidence")
    ]
    assert dues == [timedelta(minutes=5), timedelta(minutes=15), timedelta(minutes=60)]


@pytest.mark.parametrize(
    "name", ["physical-safety", "threat-self-harm", "child-safety", "account-takeover"]
)
def test_threat_playbooks_report_under_dsa_art_18_in_the_eu(name: str) -> None:
    branch = next(
        s
        for s in steps_of(name)
        if isinstance(s, BranchStep)
        and any(c.when and c.when.evaluate({"jurisdiction": "eu"}) for c in s.cases)
        and any(x.id == "dsa-art18-report" for c in s.cases for x in c.steps)
    )
    report = step(name, "dsa-art18-report")
    assert branch.cases[0].when and not branch.cases[0].when.evaluate({"jurisdiction": "us"})
    assert report.sla.legal and report.sla.clock == "wall" and not report.sla.pauses_on


def test_child_safety_preserves_a_year_and_never_notifies_the_user() -> None:
    expiry = step("child-safety", "preservation-expiry")
    assert isinstance(expiry, TimerStep) and expiry.duration == timedelta(days=365)
    assert expiry.remind_before == timedelta(days=30)  # reminder at 11 months
    for s in steps_of("child-safety"):
        assert "notice" not in s.id
        assert not (isinstance(s, ActionStep) and s.activity in ("notify.email", "notify.sms"))


def test_legal_process_timers_use_dates_from_the_document() -> None:
    timers = [s for s in steps_of("legal-process") if isinstance(s, TimerStep)]
    assert {t.until_field for t in timers} >= {"return_date", "ndo_expiry"}


def test_legal_clocks_run_on_the_wall_clock() -> None:
    legal = [
        s
        for loaded in list_playbooks()
        for s in loaded.playbook.iter_steps()
        if s.sla is not None and s.sla.legal
    ]
    assert len(legal) >= 6
    assert all(s.sla.clock == "wall" and not s.sla.pauses_on for s in legal if s.sla)


# --- Content hash ----------------------------------------------------------------------------


def reorder(value: Any) -> Any:
    """The same data with every mapping's keys in reverse order."""
    if isinstance(value, dict):
        return {k: reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reorder(v) for v in value]
    return value


def test_hash_ignores_key_order_comments_and_layout(tmp_path: Path) -> None:
    original = load_playbook("preservation")
    data = yaml.safe_load(original.path.read_text(encoding="utf-8"))
    text = yaml.safe_dump(reorder(data), sort_keys=False, default_flow_style=True, width=60)
    copy = tmp_path / "preservation.yaml"
    copy.write_text("# a comment the hash must not see\n" + text, encoding="utf-8")
    assert load_playbook_file(copy).content_hash == original.content_hash


def test_hash_ignores_explicit_defaults_and_duration_spelling() -> None:
    original = load_playbook("preservation").playbook
    data = original.model_dump(mode="json", by_alias=True)
    data["steps"][0]["sla"]["due"] = "480m"  # 8h
    assert content_hash(Playbook.model_validate(data)) == content_hash(original)


def test_hash_changes_with_content() -> None:
    original = load_playbook("preservation").playbook
    data = original.model_dump(mode="json", by_alias=True)
    data["steps"][0]["sla"]["due"] = "9h"
    changed = content_hash(Playbook.model_validate(data))
    assert changed != content_hash(original)
    assert changed.startswith("sha256:") and len(changed) == len("sha256:") + 64


def test_every_playbook_has_its_own_hash() -> None:
    hashes = {loaded.content_hash for loaded in list_playbooks()}
    assert len(hashes) == len(NAMES)


def test_sub_second_durations_survive_the_snapshot_and_whole_ones_print_as_before():
    from playbooks.schema import format_duration, parse_duration

    for text in ("0.05s", "1.5s", "2m0.25s", "90d", "1h30m", "15m", "0s"):
        assert format_duration(parse_duration(text)) == text
        assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)
