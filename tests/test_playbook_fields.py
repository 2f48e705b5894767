"""Typed fields and declared events (issue 8 item 11): what ``FieldSpec.validate``,
``Playbook.check_event`` and ``Playbook.check_fields`` accept and refuse, and that the snapshots
running incidents carry (decoded from ``tests/histories``) still validate and keep their hashes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from playbooks.fields import MAX_FIELD_LENGTH, EventSpec, FieldSpec
from playbooks.loader import content_hash, load_playbook
from playbooks.schema import Playbook, Sla

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def spec(**values: object) -> FieldSpec:
    return FieldSpec.model_validate(values)


# --- FieldSpec --------------------------------------------------------------------------------


def test_defaults_keep_the_old_behaviour() -> None:
    field = FieldSpec()
    assert (field.type, field.max_length, field.required) == ("text", MAX_FIELD_LENGTH, False)
    assert field.validate("anything at all\nover two lines") is None
    assert spec(choices=["us", "eu"]).type == "choice"  # choices imply the type


@pytest.mark.parametrize(
    ("kind", "good", "bad", "problem"),
    [
        ("email", ["lena@example.org", "a.b+c@sub.example.co.uk"],
         ["lena", "lena@", "a@b", "a b@example.org", "x@example.org, y@example.org"],
         "is not an email address; expected one address like name@example.org"),
        ("phone", ["+14155550123", "+44 20 7946 0958", "+1 (415) 555-0123"],
         ["4155550123", "+0123456789", "+1 415 CALL NOW", "+1234"],
         "is not an international phone number; expected + and the country code"),
        ("datetime", ["2025-03-01", "2025-03-01T14:30", "2025-03-01T14:30:00Z",
                      "2025-03-01 14:30:00+02:00", "2025-03-01T14:30:00.250-05:00"],
         ["tomorrow", "2025-13-01", "01/03/2025", "2025-03-01T25:00"],
         "is not an ISO date or date-time"),
        ("number", ["12", "-3.5", "1e3", ".5"], ["twelve", "nan", "inf", "1,000", "1_000"],
         "is not a number"),
        ("id", ["cust-1", "SF-00042", "acct-1, acct-2", "012345678905", "user@realm"],
         ["-leading", "two words", "a;;b"], "is not an identifier"),
    ],
)  # fmt: skip
def test_each_type_accepts_its_shape_and_names_the_problem(
    kind: str, good: list[str], bad: list[str], problem: str
) -> None:
    field = spec(type=kind)
    assert [v for v in good if field.validate(v, "contact") is not None] == []
    for value in bad:
        reason = field.validate(value, "contact")
        assert reason is not None and reason.startswith(f"field contact {problem}"), value
        assert "\n" not in reason


def test_personal_data_is_never_echoed_in_a_refusal() -> None:
    assert "987" not in str(spec(type="phone").validate("987-6543 call me", "phone"))
    assert "lena" not in str(spec(type="email").validate("lena at home", "email"))


def test_choices_name_what_is_expected() -> None:
    field = spec(choices=["us", "eu", "uk", "other"], required=True)
    assert field.validate("eu", "jurisdiction") is None
    assert field.validate("EU", "jurisdiction") == (
        "field jurisdiction must be one of us, eu, uk, other, not 'EU'"
    )
    assert field.validate("", "jurisdiction") == (
        "field jurisdiction is required and cannot be empty"
    )
    assert spec(choices=["a"]).validate("") is None  # clears an optional field


def test_length_is_bounded_at_2000_or_lower() -> None:
    assert FieldSpec().validate("x" * 2000) is None
    assert FieldSpec().validate("x" * 2001, "note") == (
        "field note is 2001 characters long; at most 2000 allowed"
    )
    assert spec(max_length=10).validate("x" * 11, "ref") == (
        "field ref is 11 characters long; at most 10 allowed"
    )
    with pytest.raises(ValidationError, match="less than or equal to 2000"):
        spec(max_length=2001)
    with pytest.raises(ValidationError, match="Input should be 'text', 'choice'"):
        spec(type="colour")


def test_a_value_that_is_not_text_is_refused_not_raised() -> None:
    assert FieldSpec().validate(12, "n") == "field n must be text, not int"  # type: ignore[arg-type]


# --- check_event / check_fields ---------------------------------------------------------------


def playbook(**extra: object) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "demo",
            "version": 1,
            "title": "Demo",
            "fields": {
                "jurisdiction": {"choices": ["us", "eu"], "required": True},
                "contact": {"type": "email"},
                "aware_at": {"type": "datetime"},
            },
            "steps": [{"id": "wait", "kind": "wait_for", "event": "evidence_in"}],
            **extra,
        }
    )


DECLARED = {
    "events": {
        "evidence_in": {"sets": ["contact", "aware_at"]},
        "vendor_waiting": {"description": "waiting on the vendor"},
    }
}


def test_a_playbook_without_events_accepts_every_event_as_before() -> None:
    legacy = playbook()
    assert legacy.events == {}
    assert legacy.check_event("anything", {"contact": "not an email", "other": "x"}) is None


def test_check_event_refuses_undeclared_events_fields_and_values() -> None:
    pb = playbook(**DECLARED)
    assert pb.check_event("evidence_in", {}) is None
    assert pb.check_event("evidence_in", {"contact": "a@b.org", "aware_at": "2025-03-01"}) is None
    assert pb.check_event("evidense_in", {}) == (
        "event evidense_in is not declared by playbook demo; expected one of: evidence_in, "
        "vendor_waiting"
    )
    assert pb.check_event("evidence_in", {"jurisdiction": "eu", "contact": "a@b.org"}) == (
        "event evidence_in may set only: contact, aware_at (not jurisdiction)"
    )
    assert pb.check_event("vendor_waiting", {"contact": "a@b.org"}) == (
        "event vendor_waiting sets no fields (not contact)"
    )
    assert pb.check_event("evidence_in", {"aware_at": "last tuesday"}).startswith(  # type: ignore[union-attr]
        "event evidence_in: field aware_at is not an ISO date or date-time"
    )


def test_check_fields_lists_every_problem_at_open() -> None:
    pb = playbook(**DECLARED)
    assert pb.check_fields({"jurisdiction": "us"}) == []
    assert pb.check_fields({"jurisdiction": "us", "contact": "", "aware_at": ""}) == []
    assert pb.check_fields({"jurisdicton": "us", "contact": "x", "summary": "s"}) == [
        "unknown field jurisdicton; playbook demo declares: jurisdiction, contact, aware_at",
        "unknown field summary; playbook demo declares: jurisdiction, contact, aware_at",
        "field jurisdiction is required by playbook demo",
        "field contact is not an email address; expected one address like name@example.org",
    ]
    assert pb.check_fields({"jurisdiction": ""}) == [
        "field jurisdiction is required by playbook demo"
    ]


def test_event_spec_defaults() -> None:
    assert EventSpec() == EventSpec(description="", sets=[])
    with pytest.raises(ValidationError):
        EventSpec.model_validate({"sets": ["a"], "who": ["legal"]})
    spec = EventSpec(sets=["a"], roles=["legal", "LERS"])
    assert spec.refuses_role("review_done", "lers") is None
    assert (
        spec.refuses_role("review_done", "ic")
        == "event review_done is sent by legal/LERS only, not ic"
    )
    assert (
        spec.refuses_role("review_done", None)
        == "event review_done is sent by legal/LERS only, not no role"
    )
    assert EventSpec(sets=["a"]).refuses_role("x", None) is None


# --- Old snapshots ----------------------------------------------------------------------------


def snapshot_of(history: Path) -> tuple[dict[str, object], str]:
    """The playbook a recorded incident was started with, and the hash its manifest names."""
    document = json.loads(history.read_text())
    started = document["histories"][0]["history"]["events"][0]
    payload = started["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    inp = json.loads(base64.b64decode(payload["data"]))
    return inp["playbook"], document["manifest"]["playbook_hash"]


@pytest.mark.parametrize("history", HISTORIES, ids=lambda p: p.stem)
def test_recorded_snapshots_validate_and_keep_their_hash(history: Path) -> None:
    raw, recorded = snapshot_of(history)
    old = Playbook.model_validate(raw)
    assert content_hash(old) == recorded
    if "events" in raw:  # recorded since playbooks declare their events
        return
    assert old.events == {}  # legacy: every event accepted
    assert old.check_event("anything_at_all", {"any_field": "x" * 5000}) is None
    assert all(s.sla is None or s.sla.anchor == "step" for s in old.iter_steps())


def test_new_keys_at_their_old_meaning_do_not_change_the_hash() -> None:
    current = load_playbook("preservation").playbook
    data = current.model_dump(mode="json", by_alias=True)
    data["steps"][0]["sla"]["anchor"] = "step"
    data["fields"]["requester_agency"]["type"] = "text"
    data["fields"]["jurisdiction"]["max_length"] = 2000
    assert content_hash(Playbook.model_validate(data)) == content_hash(current)
    data["steps"][0]["sla"]["anchor"] = "incident"
    assert content_hash(Playbook.model_validate(data)) != content_hash(current)


def test_sla_anchor_defaults_to_the_step_and_is_checked() -> None:
    assert Sla.model_validate({"due": "1h"}).anchor == "step"
    for anchor in ("incident", "field:aware_at", "step:open-case"):
        assert Sla.model_validate({"due": "1h", "anchor": anchor}).anchor == anchor
    for anchor in ("yesterday", "field:", "step:Bad Id", "field:a-b"):
        with pytest.raises(ValidationError):
            Sla.model_validate({"due": "1h", "anchor": anchor})
