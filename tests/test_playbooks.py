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
    assert playbook.title and playbook.fields
    assert playbook.sla.acknowledge is not None and playbook.sla.resolve is not None
    assert all(s.owner in ROLES for s in playbook.iter_steps())
    first = playbook.steps[0]
    if name == "physical-safety":  # a parallel comes first; the case opens inside it
        first = step(name, "open-case")
    assert isinstance(first, ActionStep) and first.activity == "salesforce.upsert_case"


def test_incident_clocks_follow_the_severity_tiers() -> None:
    expected = {
        "sev0": (timedelta(minutes=5), timedelta(minutes=30), "wall"),
        "sev1": (timedelta(minutes=15), timedelta(hours=2), "wall"),
        "sev2": (timedelta(hours=4), timedelta(hours=8), "business"),
    }
    for loaded in list_playbooks():
        sla = loaded.playbook.sla
        assert sla.acknowledge and sla.resolve
        got = (sla.acknowledge.due, sla.resolve.due, sla.acknowledge.clock)
        assert got == expected[loaded.playbook.default_severity], loaded.playbook.name


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
