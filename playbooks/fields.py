"""What a playbook lets people tell an incident: its fields (typed) and the events it accepts.

``FieldSpec`` types an incident field and checks one value (``validate``); ``EventSpec`` names the
fields an event may set. ``check_event`` and ``check_fields`` apply them to an event or to the
fields given at open, and ``Playbook`` (``playbooks/schema.py``) exposes both. Pure (no I/O, no
clock): the workflow sandbox and the front door call the same code, so they refuse the same things.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FieldType = Literal["text", "choice", "email", "phone", "datetime", "number", "id"]
FIELD_TYPES: tuple[str, ...] = ("text", "choice", "email", "phone", "datetime", "number", "id")
MAX_FIELD_LENGTH = 2000  # characters, for every field; a playbook may set a lower limit

_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_PHONE_SEPARATORS = re.compile(r"[\s().-]")
_PHONE = re.compile(r"\+[1-9]\d{6,14}")  # E.164: +, country code, at most 15 digits
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_ID = r"[A-Za-z0-9][A-Za-z0-9._:/#@+-]*"
_IDS = re.compile(rf"{_ID}(\s*[,;]\s*{_ID})*")  # one id, or several separated by commas


class StrictModel(BaseModel):
    """Base of every playbook model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def parse_datetime(value: str) -> datetime | None:
    """An ISO 8601 date or date-time, with or without a zone (``2025-03-01``,
    ``2025-03-01T14:30``, ``2025-03-01T14:30:00Z``, ``2025-03-01 14:30+02:00``); None if not."""
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


class FieldSpec(StrictModel):
    """An incident field the playbook expects at open (e.g. ``jurisdiction``), and its type.

    ``choices`` implies ``type: choice``. ``validate`` says what is wrong with a value, if anything.
    """

    description: str = ""
    required: bool = False
    choices: list[str] | None = None
    type: FieldType = "text"
    max_length: int = Field(default=MAX_FIELD_LENGTH, ge=1, le=MAX_FIELD_LENGTH)

    @model_validator(mode="before")
    @classmethod
    def _choices_imply_choice(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("choices") and "type" not in data:
            return {**data, "type": "choice"}
        return data

    @model_validator(mode="after")
    def _type_fits_choices(self) -> FieldSpec:
        if self.type == "choice" and not self.choices:
            raise ValueError("a field of type choice lists its choices")
        if self.choices and self.type != "choice":
            raise ValueError(f"choices go with type choice, not {self.type}")
        return self

    def validate(self, value: str, name: str = "value") -> str | None:  # type: ignore[override]
        """None if ``value`` fits this field, else one line naming ``name``, the problem and what
        is expected. An empty value clears an optional field; a required one cannot be empty."""
        if not isinstance(value, str):
            return f"field {name} must be text, not {type(value).__name__}"
        if value == "":
            return f"field {name} is required and cannot be empty" if self.required else None
        if len(value) > self.max_length:
            return (
                f"field {name} is {len(value)} characters long; at most {self.max_length} allowed"
            )
        problem = _problem(self, value.strip())
        return f"field {name} {problem}" if problem else None


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _problem(spec: FieldSpec, value: str) -> str | None:
    """What is wrong with a non-empty value for its type (personal data is never echoed)."""
    kind = spec.type
    if kind == "choice" and spec.choices is not None and value not in spec.choices:
        return f"must be one of {', '.join(spec.choices)}, not {_shown(value)}"
    if kind == "email" and not _EMAIL.fullmatch(value):
        return "is not an email address; expected one address like name@example.org"
    if kind == "phone" and not _PHONE.fullmatch(_PHONE_SEPARATORS.sub("", value)):
        return (
            "is not an international phone number; expected + and the country code, "
            "like +14155550123"
        )
    if kind == "datetime" and parse_datetime(value) is None:
        return (
            f"is not an ISO date or date-time ({_shown(value)}); expected e.g. 2025-03-01, "
            "2025-03-01T14:30 or 2025-03-01T14:30:00+00:00"
        )
    if kind == "number" and not (_NUMBER.fullmatch(value) and math.isfinite(float(value))):
        return f"is not a number ({_shown(value)}); expected e.g. 12 or 3.5"
    if kind == "id" and not _IDS.fullmatch(value):
        return (
            f"is not an identifier ({_shown(value)}); expected letters, digits and . _ - : / "
            "(several separated by commas)"
        )
    return None


class EventSpec(StrictModel):
    """An outside event the playbook accepts (``incident event ID NAME --data k=v``).

    ``sets`` names the incident fields the event's data may set; any other key is refused.
    ``roles``, when given, names the roles that may send it (e.g. only Legal says a legal review
    is done); checked on incidents whose messages are signed, where a role is authenticated.
    """

    description: str = ""
    sets: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)

    def refuses_role(self, name: str, role: str | None) -> str | None:
        """Why a sender in ``role`` may not send this event (``name``), or None."""
        if not self.roles or (role or "").lower() in {r.lower() for r in self.roles}:
            return None
        return f"event {name} is sent by {'/'.join(self.roles)} only, not {role or 'no role'}"


def check_event(
    playbook: str,
    events: Mapping[str, EventSpec],
    fields: Mapping[str, FieldSpec],
    name: str,
    data: Mapping[str, str],
) -> str | None:
    """Why event ``name`` with ``data`` is refused, or None. No declared events: all accepted."""
    if not events:
        return None  # a playbook snapshot from before events were declared
    spec = events.get(name)
    if spec is None:
        return (
            f"event {name} is not declared by playbook {playbook}; "
            f"expected one of: {', '.join(sorted(events))}"
        )
    extra = sorted(k for k in data if k not in spec.sets)
    if extra:
        allowed = f"may set only: {', '.join(spec.sets)}" if spec.sets else "sets no fields"
        return f"event {name} {allowed} (not {', '.join(extra)})"
    for key, value in data.items():
        field = fields.get(key)
        reason = field.validate(value, key) if field is not None else f"field {key} is unknown"
        if reason:
            return f"event {name}: {reason}"
    return None


def check_fields(
    playbook: str, specs: Mapping[str, FieldSpec], given: Mapping[str, str]
) -> list[str]:
    """Every problem with the fields given at open: unknown, missing required, invalid values."""
    declared = ", ".join(specs) or "no fields"
    problems = [
        f"unknown field {key}; playbook {playbook} declares: {declared}"
        for key in given
        if key not in specs
    ]
    for key, spec in specs.items():
        value = given.get(key)
        if value is None or (value == "" and spec.required):
            if spec.required:
                problems.append(f"field {key} is required by playbook {playbook}")
            continue
        reason = spec.validate(value, key)
        if reason:
            problems.append(reason)
    return problems
