"""Routing rules of case intake: which playbook and severity a case or alert opens, its id, and
what of the webhook body is forwarded to the incident.

First match wins; the rules come from a YAML/JSON file named by ``CR_INTAKE_RULES_FILE``, else
``DEFAULT_RULES``. The body shape is ``EXPECTED_SHAPE`` (README, "Intake"); anything intake forwards
is bounded by ``workflows/limits.py`` (summary cut to 500 characters, each field at most 2,000,
at most 50 fields), and a body it cannot use is refused with ``IntakeRefused``, which names the
field. Pure functions over the parsed webhook body, tested without a server.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from playbooks.schema import SEVERITIES, Severity
from settings import Settings
from workflows.limits import FIELD_VALUE_MAX, FIELDS_MAX, KEY_PATTERN, SUMMARY_MAX, too_long

SOURCE_PREFIX = {"salesforce.case": "sf", "safety.alert": "alert"}
PLAYBOOK_CATEGORIES = (
    "emergency-disclosure", "preservation", "legal-process", "threat-self-harm", "child-safety",
    "account-takeover", "physical-safety", "product-recall",
)  # fmt: skip
# A case's ``category`` (or an alert's ``kind``) names the playbook; severity comes from the
# payload or else the playbook's default. Safety alerts about a threat to life are always SEV0.
DEFAULT_RULES: list[dict[str, Any]] = [
    {"match": {"type": "safety.alert", "data.kind": ["threat_to_life", "self_harm"]},
     "playbook": "threat-self-harm", "severity": "sev0"},
    *({"match": {"data.category": [name, name.replace("-", "_")]}, "playbook": name}
      for name in PLAYBOOK_CATEGORIES),
    *({"match": {"type": "safety.alert", "data.kind": [name, name.replace("-", "_")]},
       "playbook": name} for name in PLAYBOOK_CATEGORIES),
]  # fmt: skip


ID_KEYS = ("incident_id", "id", "case_id", "alert_id")  # the first present names the incident
SUMMARY_KEYS = ("subject", "summary")  # the first present is the incident's summary
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
EXPECTED_SHAPE = (
    '{"type": "salesforce.case.created" | "safety.alert" | ..., "timestamp"?: ISO 8601, '
    '"data": {"id" (or "case_id", "alert_id", or "incident_id" to name the incident): '
    'record id [A-Za-z0-9._-], "category" (cases) or "kind" (alerts): what to open, '
    '"subject" or "summary"?: text (first 500 characters kept), '
    f'"severity"?: {"|".join(SEVERITIES)}, other keys [A-Za-z0-9_]{{1,64}}: '
    f"text, number or boolean up to {FIELD_VALUE_MAX} characters, at most {FIELDS_MAX} fields "
    "in all; nested objects, lists and other keys are not copied}}"
)
EXAMPLES: list[dict[str, Any]] = [
    {"type": "salesforce.case.created", "timestamp": "2026-01-01T00:00:00Z",
     "data": {"id": "5003000000D8cuI", "category": "preservation", "subject": "2703(f) request",
              "severity": "sev2", "requester_agency": "Springfield PD"}},
    {"type": "safety.alert",
     "data": {"alert_id": "al-42", "kind": "threat_to_life", "summary": "Credible threat"}},
]  # fmt: skip


class IntakeRefused(ValueError):
    """A webhook body intake cannot use; ``field`` names the offending part (``data.id``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class RoutingRule(BaseModel):
    """Route events whose dotted paths equal (or are one of) the given values to a playbook."""

    match: dict[str, str | list[str]] = Field(default_factory=dict)
    playbook: str
    severity: Severity | None = None


class IntakeEvent(BaseModel):
    """The webhook body (Standard Webhooks convention: ``type``, ``timestamp``, ``data``)."""

    type: str = Field(min_length=1, max_length=100)
    timestamp: str | None = None
    data: dict[str, Any]


def parse_event(raw: Any) -> IntakeEvent:
    """The body as an ``IntakeEvent``, or IntakeRefused naming the first field that is wrong."""
    try:
        return IntakeEvent.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in err["loc"]) or "body"
        problem = "required" if err["type"] == "missing" else err["msg"]
        raise IntakeRefused(field, f"{field}: {problem}") from None


def load_rules(settings: Settings) -> list[RoutingRule]:
    """The routing rules from ``CR_INTAKE_RULES_FILE`` (YAML or JSON: a list, or {rules: [...]})."""
    raw: Any = DEFAULT_RULES
    if settings.intake_rules_file is not None:
        raw = yaml.safe_load(Path(settings.intake_rules_file).read_text())
        raw = raw.get("rules", []) if isinstance(raw, dict) else raw
    return [RoutingRule.model_validate(rule) for rule in raw]


def _lookup(event: dict[str, Any], path: str) -> Any:
    value: Any = event
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def route(event: dict[str, Any], rules: list[RoutingRule]) -> RoutingRule | None:
    """The first rule all of whose conditions hold (case-insensitive string comparison)."""
    for rule in rules:
        ok = True
        for path, expected in rule.match.items():
            options = expected if isinstance(expected, list) else [expected]
            actual = str(_lookup(event, path) or "").casefold()
            ok = ok and actual in {o.casefold() for o in options}
        if ok:
            return rule
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(value: Any) -> str | None:
    """A scalar's text (what a field can hold); None for null, objects and lists."""
    return str(value) if isinstance(value, str | int | float | bool) else None


def incident_id_for(event: IntakeEvent) -> str:
    """Stable id from the source record, so redelivery and replays hit the same incident."""
    key = next((k for k in ID_KEYS if event.data.get(k) not in (None, "")), None)
    if key is None:
        raise IntakeRefused("data.id", "data.id: required (or data.case_id, data.alert_id, "
                            "data.incident_id): the source record's id")  # fmt: skip
    value = event.data[key]
    source = _text(value)
    if key == "incident_id":
        incident_id = source or ""
    else:
        prefix = next((p for t, p in SOURCE_PREFIX.items() if event.type.startswith(t)), "ext")
        incident_id = f"{prefix}-{source}"
    if source is None or not ID_RE.match(incident_id):
        raise IntakeRefused(
            f"data.{key}",
            f"data.{key}: expected a record id of letters, digits, '.', '_' or '-' "
            f"(the incident id at most 100 characters), got {_shown(value)}",
        )
    return incident_id


def summary_key(event: IntakeEvent) -> str | None:
    """The data key whose text is the incident's summary (None: the event type is)."""
    return next((k for k in SUMMARY_KEYS if (_text(event.data.get(k)) or "").strip()), None)


def summary_for(event: IntakeEvent) -> str:
    """The incident's summary, cut to ``SUMMARY_MAX`` characters (marked with an ellipsis)."""
    key = summary_key(event)
    text = (_text(event.data[key]) or "").strip() if key else event.type
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def incident_fields(event: IntakeEvent) -> dict[str, str]:
    """The incident's fields: ``source_type`` and every scalar data value under a field-shaped key
    (not the one that became the summary). Over-long values or too many fields are refused."""
    out = {"source_type": event.type}
    skip = summary_key(event)
    for key, value in event.data.items():
        text = _text(value)
        if text is None or key == skip or not re.fullmatch(KEY_PATTERN, key):
            continue
        if problem := too_long(f"data.{key}", text, FIELD_VALUE_MAX):
            raise IntakeRefused(f"data.{key}", problem)
        out[key] = text
    if len(out) > FIELDS_MAX:
        raise IntakeRefused("data", f"data: {len(out) - 1} fields to copy, at most "
                            f"{FIELDS_MAX - 1} (the incident also gets source_type)")  # fmt: skip
    return out


def severity_for(event: IntakeEvent, rule: RoutingRule) -> str | None:
    if rule.severity:
        return rule.severity
    given = str(event.data.get("severity") or "").lower()
    return given if given in SEVERITIES else None
