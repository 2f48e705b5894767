"""Routing rules of case intake: which playbook and severity a case or alert opens, and its id.

First match wins; the rules come from a YAML/JSON file named by ``CR_INTAKE_RULES_FILE``, else
``DEFAULT_RULES``. Pure functions over the parsed webhook body, tested without a server.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from playbooks.schema import SEVERITIES, Severity
from settings import Settings

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


def incident_id_for(event: IntakeEvent) -> str:
    """Stable id from the source record, so redelivery and replays hit the same incident."""
    given = event.data.get("incident_id")
    if given:
        return str(given)
    source_id = event.data.get("id") or event.data.get("case_id") or event.data.get("alert_id")
    if not source_id:
        raise ValueError("data.id is required")
    prefix = next((p for t, p in SOURCE_PREFIX.items() if event.type.startswith(t)), "ext")
    return f"{prefix}-{source_id}"


def incident_fields(event: IntakeEvent) -> dict[str, str]:
    out = {"source_type": event.type}
    for key, value in event.data.items():
        if isinstance(value, str | int | float | bool) and re.fullmatch(r"[A-Za-z0-9_]{1,64}", key):
            out[key] = str(value)
    return out


def severity_for(event: IntakeEvent, rule: RoutingRule) -> str | None:
    if rule.severity:
        return rule.severity
    given = str(event.data.get("severity") or "").lower()
    return given if given in SEVERITIES else None
