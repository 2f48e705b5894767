"""How big anything a person or a system sends may be, checked at the door and again in the workflow.

The limits keep every message far below Temporal's 2 MB payload limit and keep what continue-as-new
carries small, whatever the incident's length. Used by the models (``workflows/models.py``), so a
payload over a limit fails validation with the field's name and the limit, and by the front door
(``incidents/service.py``), which says so before anything reaches Temporal.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, StringConstraints

SUMMARY_MAX = 500  # one line: what happened
TEXT_MAX = 4_000  # a note, a decision's reason, a resolution
FIELD_VALUE_MAX = 2_000  # one incident field's value
FIELDS_MAX = 50  # incident fields at open
EVENT_DATA_MAX = 20  # fields one event may carry
NAME_MAX = 100  # an actor, an assignee
ROLE_MAX = 32
ID_MAX = 100  # an incident id, a step id, a request id
LABEL_MAX = 100  # a triage note's playbook, severity, model, version or word (workflows/triage.py)
TRIAGE_WORDS_MAX = 8  # words a triage suggestion is explained by
KEY_PATTERN = r"^[A-Za-z0-9_]{1,64}$"
INCIDENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"

Summary = Annotated[str, StringConstraints(max_length=SUMMARY_MAX)]
Text = Annotated[str, StringConstraints(max_length=TEXT_MAX)]
Name = Annotated[str, StringConstraints(max_length=NAME_MAX)]
Role = Annotated[str, StringConstraints(max_length=ROLE_MAX)]
Ident = Annotated[str, StringConstraints(max_length=ID_MAX)]
FieldKey = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
FieldValue = Annotated[str, StringConstraints(max_length=FIELD_VALUE_MAX)]
Fields = Annotated[dict[FieldKey, FieldValue], Field(max_length=FIELDS_MAX)]
EventData = Annotated[dict[FieldKey, FieldValue], Field(max_length=EVENT_DATA_MAX)]


def too_long(name: str, value: str, limit: int) -> str | None:
    """``summary: 812 characters, at most 500`` when over the limit, else None."""
    if len(value) <= limit:
        return None
    return f"{name}: {len(value)} characters, at most {limit}"


def field_problems(fields: dict[str, str], *, limit: int = FIELDS_MAX) -> list[str]:
    """Every problem with a set of incident fields (names, sizes), one line each."""
    problems = [f"at most {limit} fields, got {len(fields)}"] if len(fields) > limit else []
    for key, value in fields.items():
        if not re.fullmatch(KEY_PATTERN, key):
            problems.append(f"field {key[:64]!r}: names are 1-64 letters, digits or _")
        elif problem := too_long(f"field {key}", value, FIELD_VALUE_MAX):
            problems.append(problem)
    return problems
