"""The post-incident review draft from the records (SQLite and PostgreSQL): every fact in it comes
from the seeded timeline, projection and SLA outcomes below (minutes after the opening)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from insights import review as review_module
from insights.review import ReviewUnavailable, build_review, to_markdown
from records.chain import write_batch
from records.purge import Purge
from starter import run
from tests.records_db import batch, both_backends, clock, entry, records_url, state

pytestmark = [both_backends, pytest.mark.usefixtures(records_url.__name__)]
BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def seed() -> None:
    rows = [
        (0, "intake:portal", None, "opened", None, "Emergency request from a police department"),
        (1, "system", None, "paged", None, "lers-oncall: ann (lers)"),
        (3, "ann", "lers", "acknowledged", None, ""),
        (4, "system", "legal", "step_started", "legal-determination", "Good-faith determination"),
        (5, "ann", "legal", "approval_requested", "legal-determination", "Approve only if ..."),
        (50, "system", None, "sla_warning", "legal-determination", "due at 10:00"),
        (60, "system", None, "sla_breach", "legal-determination", "missed its 1h SLA"),
        (60, "system", None, "escalation", "legal-determination", '{"page":"legal-backup"}'),
        (61, "system", None, "severity_changed", None, "sev1 -> sev0"),
        (70, "lena", "legal", "approved", "legal-determination", "Imminent | scope: location"),
        (120, "ann", "ic", "closed", None, "Disclosed the location only"),
    ]
    timeline = [
        entry(n, minutes, actor, kind, role=role, step=step, detail=detail, base=BASE)
        for n, (minutes, actor, role, kind, step, detail) in enumerate(rows)
    ]
    snapshot = state(
        timeline,
        base=BASE,
        severity="sev0",
        severity_history=[(BASE, "sev1"), (BASE + timedelta(minutes=61), "sev0")],
        status="closed",
        owner="ann",
        acknowledged_at=BASE + timedelta(minutes=3),
        closed_at=BASE + timedelta(minutes=120),
        resolution="Disclosed the location only",
        clocks={
            "incident.acknowledge": clock("incident.acknowledge", 5, BASE, stopped=3),
            "legal-determination": clock(
                "legal-determination", 60, BASE, warn=45, warned=50, breached=60, stopped=70
            ),  # fmt: skip
        },
    )
    write_batch(batch("R1", timeline, snapshot, playbook="emergency-disclosure"))


def test_the_draft_holds_the_timeline_decisions_slas_and_escalations():
    seed()
    review = build_review("R1", now=BASE + timedelta(days=1))
    assert [line.kind for line in review.timeline][:3] == ["opened", "paged", "acknowledged"]
    assert (
        review.timeline[-1].elapsed_s == 7200 and review.resolution == "Disclosed the location only"
    )
    [decision] = review.decisions
    assert (decision.step, decision.decision, decision.actor, decision.role) == (
        "legal-determination", "approved", "lena", "legal")  # fmt: skip
    assert decision.waited_s == 65 * 60 and decision.reason == "Imminent | scope: location"
    assert {c.clock: c.outcome for c in review.clocks} == {
        "incident.acknowledge": "met", "legal-determination": "breached"}  # fmt: skip
    assert [x.kind for x in review.escalations] == [
        "paged", "sla_warning", "sla_breach", "escalation", "severity_changed"]  # fmt: skip
    assert review.people == ["ann (ic)", "ann (lers)", "lena (legal)"]  # asked, not acting: no role
    text = to_markdown(review)
    assert text.startswith("# Post-incident review: R1 (draft)")
    assert "- Severity: sev0; history: sev1 (2026-03-02 09:00) → sev0 (2026-03-02 10:01)" in text
    assert "acknowledged 2026-03-02 09:03:00 (after 3m)" in text and "(after 2h)" in text
    assert "| Imminent \\| scope: location |" in text  # a pipe in a detail stays in its cell
    assert (
        "- **legal-determination**: approved by lena (legal) at 2026-03-02 10:10:00, 1h5m" in text
    )
    assert "| legal-determination | 2026-03-02 09:00:00 | 1h | breached |" in text
    assert '- 2026-03-02 10:00:00 escalation (legal-determination): {"page":"legal-backup"}' in text
    assert text.count("_To complete._") == 6


def test_the_command_and_its_refusals(tmp_path, capsys, monkeypatch):
    seed()
    out = tmp_path / "review.md"
    assert run(["review", "R1", "--output", str(out)]) == 0
    assert "## What escalated and why" in out.read_text()
    assert run(["review", "R1", "--format", "json"]) == 0
    assert '"incident_id": "R1"' in capsys.readouterr().out
    assert run(["review", "nope"]) == 1
    assert capsys.readouterr().err == "error: incident nope is not in the records\n"
    shredded = Purge("R1", BASE + timedelta(minutes=5), "admin", "retention", 2)
    monkeypatch.setattr(review_module, "purged", lambda incident_id, url=None: shredded)
    with pytest.raises(ReviewUnavailable, match="^incident R1 was purged at 2026-03-02 09:05"):
        build_review("R1")
