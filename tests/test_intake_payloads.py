"""Intake accepts every body shape the README documents, bounds what it forwards to the incident
(summary, field values, number of fields), and refuses anything else naming the field and the
expected shape. Over real HTTP with the injected opener of tests/test_intake.py."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from intake import routing
from settings import PROJECT_ROOT
from tests.test_intake import endpoint, env, opener, post, signed
from workflows.limits import FIELD_VALUE_MAX, FIELDS_MAX, SUMMARY_MAX

__all__ = ["endpoint", "env", "opener"]  # fixtures used by name

CASE = {"type": "salesforce.case.created", "data": {"id": "500A", "category": "preservation"}}


def readme_intake_examples() -> list[dict[str, Any]]:
    """The JSON bodies quoted in the README's Intake paragraph."""
    text = (PROJECT_ROOT / "README.md").read_text()
    start = text.index("- Intake:")
    paragraph = text[start : text.index("\n- ", start + 1)]
    bodies = [json.loads(m) for m in re.findall(r"`(\{\"type\": .*?\})`", paragraph, re.DOTALL)]
    assert len(bodies) == 2, paragraph
    return bodies


def test_the_readme_examples_open_what_they_say(endpoint, opener):
    case, alert = readme_intake_examples()
    assert post(endpoint, case).status_code == 201
    assert post(endpoint, alert, msg_id="msg_2").status_code == 201
    first, second = opener.calls
    assert first["incident_id"] == "sf-5003000000D8cuI" and first["playbook"] == "preservation"
    assert first["summary"] == "2703(f) request" and first["severity"] == "sev2"
    assert second["incident_id"] == "alert-al-42" and second["summary"] == "Credible threat"
    assert second["playbook"] == "emergency-disclosure" and second["severity"] == "sev0"


def test_the_documented_examples_in_errors_are_accepted(endpoint, opener):
    for n, body in enumerate(routing.EXAMPLES):
        assert post(endpoint, body, msg_id=f"msg_{n}").status_code == 201, body


@pytest.mark.parametrize(
    ("data", "incident_id"),
    [
        ({"id": "500A"}, "sf-500A"),
        ({"case_id": "500B"}, "sf-500B"),
        ({"alert_id": "500C"}, "sf-500C"),
        ({"id": 5004}, "sf-5004"),
        ({"incident_id": "SF-00042", "id": "500D"}, "SF-00042"),
        ({"id": "", "case_id": "500E"}, "sf-500E"),
    ],
)
def test_every_documented_id_key(endpoint, opener, data, incident_id):
    body = {**CASE, "data": {"category": "preservation", **data}}
    response = post(endpoint, body)
    assert response.status_code == 201 and response.json()["incident_id"] == incident_id


def test_summary_comes_from_subject_then_summary_then_type(endpoint, opener):
    post(endpoint, {**CASE, "data": {**CASE["data"], "subject": "S", "summary": "long text"}})
    post(endpoint, {**CASE, "data": {**CASE["data"], "id": "2", "summary": "from summary"}})
    post(endpoint, {**CASE, "data": {**CASE["data"], "id": "3"}, "timestamp": "2026-01-01"})
    subject, summary, bare = opener.calls
    assert subject["summary"] == "S" and subject["fields"]["summary"] == "long text"
    assert "subject" not in subject["fields"]
    assert summary["summary"] == "from summary" and "summary" not in summary["fields"]
    assert bare["summary"] == "salesforce.case.created"


def test_a_huge_summary_is_cut_and_not_copied_into_fields(endpoint, opener):
    """The 999,000-character data.summary of issue 8: 500 characters reach the incident."""
    huge = "x" * 999_000
    body = {"type": "safety.alert", "data": {"id": "al-1", "kind": "self_harm", "summary": huge}}
    assert post(endpoint, body).status_code == 201
    (call,) = opener.calls
    assert len(call["summary"]) == SUMMARY_MAX and call["summary"].endswith("…")
    assert "summary" not in call["fields"]
    assert sum(len(v) for v in call["fields"].values()) < 200


def test_field_values_over_the_limit_are_refused_naming_field_and_limit(endpoint, opener):
    at_limit = {**CASE, "data": {**CASE["data"], "note": "n" * FIELD_VALUE_MAX}}
    assert post(endpoint, at_limit).status_code == 201
    over = {**CASE, "data": {**CASE["data"], "id": "2", "note": "n" * (FIELD_VALUE_MAX + 1)}}
    response = post(endpoint, over)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_payload" and body["field"] == "data.note"
    assert body["detail"] == f"data.note: {FIELD_VALUE_MAX + 1} characters, at most 2000"
    assert body["expected"] == routing.EXPECTED_SHAPE and body["examples"] == routing.EXAMPLES
    assert len(opener.calls) == 1


def test_at_most_50_fields(endpoint, opener):
    extra = {f"f{n}": "v" for n in range(FIELDS_MAX - len(CASE["data"]) - 1)}
    fits = {**CASE, "data": {**CASE["data"], **extra}}
    assert post(endpoint, fits).status_code == 201
    assert len(opener.calls[0]["fields"]) == FIELDS_MAX  # with source_type
    too_many = {**CASE, "data": {**fits["data"], "id": "2", "one_more": "v"}}
    response = post(endpoint, too_many)
    assert response.status_code == 422 and response.json()["field"] == "data"
    assert "at most 49" in response.json()["detail"]


def test_keys_not_field_shaped_and_nested_values_are_not_copied(endpoint, opener):
    data = {**CASE["data"], "bad-key": "x" * 5000, "k" * 65: "v", "nested": {"a": "x" * 5000},
            "items": [1, 2], "none": None, "ok_key": True, "n": 1.5}  # fmt: skip
    assert post(endpoint, {**CASE, "data": data}).status_code == 201
    fields = opener.calls[0]["fields"]
    assert fields == {"source_type": "salesforce.case.created", "id": "500A",
                      "category": "preservation", "ok_key": "True", "n": "1.5"}  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "field", "detail"),
    [
        ({"type": "safety.alert"}, "data", "data: required"),
        ({"data": {"id": "1"}}, "type", "type: required"),
        ({"type": "", "data": {"id": "1"}}, "type", "type: String should have at least"),
        ({"type": "safety.alert", "data": []}, "data", "data: Input should be a valid dictionary"),
        ([CASE], "body", "body: Input should be a valid dictionary"),
        ({"type": "safety.alert", "data": {"kind": "self_harm"}}, "data.id", "data.id: required"),
        ({**CASE, "data": {"id": "../x"}}, "data.id", "data.id: expected a record id"),
        ({**CASE, "data": {"id": "a" * 98}}, "data.id", "data.id: expected a record id"),
        ({**CASE, "data": {"id": {"x": 1}}}, "data.id", "data.id: expected a record id"),
        ({**CASE, "data": {"incident_id": "bad id"}}, "data.incident_id",
         "data.incident_id: expected a record id"),
    ],
)  # fmt: skip
def test_refusals_name_the_field_and_the_expected_shape(endpoint, opener, payload, field, detail):
    response = post(endpoint, payload)
    body = response.json()
    assert response.status_code == 422 and body["error"] == "invalid_payload"
    assert body["field"] == field and body["detail"].startswith(detail)
    assert "\n" not in body["detail"] and len(body["detail"]) < 300
    assert body["expected"] == routing.EXPECTED_SHAPE
    assert opener.calls == []


def test_not_json_and_too_large(endpoint, opener):
    not_json = post(endpoint, "{nope")
    assert not_json.status_code == 400 and not_json.json()["field"] == "body"
    assert not_json.json()["expected"] == routing.EXPECTED_SHAPE
    big, headers = signed({**CASE, "data": {**CASE["data"], "pad": "x" * 1_000_001}})
    too_large = httpx.post(endpoint, content=big, headers=headers)
    assert too_large.status_code == 413 and too_large.json()["error"] == "too_large"
    assert opener.calls == []


def test_no_route_says_what_routes(endpoint, opener):
    response = post(endpoint, {"type": "safety.alert", "data": {"id": "1", "kind": "spam"}})
    body = response.json()
    assert response.status_code == 422 and body["error"] == "no_route"
    assert body["field"] == "data.kind" and "data.kind 'spam'" in body["detail"]
    assert {"match": {"type": "safety.alert", "data.kind": ["threat_to_life", "self_harm"]},
            "playbook": "emergency-disclosure"} in body["expected"]  # fmt: skip
    assert opener.calls == []
