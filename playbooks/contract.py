"""Lint of a playbook's contract with the people and the clocks around it, for ``playbooks.loader``.

- **Fields and events**: field names never shadow a built-in fact; every awaited event (``wait_for``,
  ``pauses_on``, ``resumes_on``) is declared under ``events``, each event sets declared fields only,
  and a playbook that waits for events must declare them.
- **Clock anchors**: ``field:<name>`` names a declared datetime field, ``step:<id>`` an existing other
  step; incident clocks start at the incident or at a field.
- **The incident's resolve SLA** is never shorter than one of its own steps' SLAs or fixed timers, or
  every incident would breach it with every step on time.

Works on the parsed YAML (not the validated model), so these problems are reported together with
any schema error in the same file. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from playbooks.durations import format_duration, parse_duration
from playbooks.schema import ANCHOR_PATTERN, parse_anchor

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]
Steps = list[tuple[dict[str, Any], Loc, list[Any], int]]  # what ``loader._walk`` yields

# Facts every incident has (``workflows.rules.facts``), usable in templates and conditions next to
# the playbook's declared fields and ``decision.<approval step id>``.
BUILTIN_FIELDS = frozenset(
    {"incident_id", "summary", "severity", "playbook", "opened_by", "owner", "step_id"}
)
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_EVENT_NAME = re.compile(r"^[a-z0-9_]+$")  # ``workflows.models.ExternalEvent.name``
# When a business clock meets a wall clock, a business hour counts as 4.2 wall hours: the default
# calendar's 40-hour working week in a 168-hour week.
_WALL_PER_BUSINESS_HOUR = 168 / 40


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def field_type(spec: Any) -> str:
    """A raw field's type as ``FieldSpec`` reads it (``choices`` imply ``choice``)."""
    spec = _dict(spec)
    return str(spec.get("type") or ("choice" if spec.get("choices") else "text"))


def contract_problems(data: dict[str, Any], steps: Steps) -> list[Problem]:
    """Every contract problem of one parsed playbook; ``steps`` from ``loader._walk``."""
    fields = _dict(data.get("fields"))
    return (
        _field_problems(fields, steps)
        + _event_problems(data, steps, fields)
        + _anchor_problems(data, steps, fields)
        + _resolve_problems(data, steps)
    )


# --- Fields and events ------------------------------------------------------------------------


def _field_problems(fields: dict[str, Any], steps: Steps) -> list[Problem]:
    problems: list[Problem] = []
    for name in fields:
        if not isinstance(name, str) or not _FIELD_NAME.match(name):
            message = f"field name {name!r}: use lower-case letters, digits and _"
            problems.append((("fields", str(name)), message))
        elif name in BUILTIN_FIELDS:
            message = f"field {name!r} would hide the built-in fact {name}; choose another name"
            problems.append((("fields", name), message))
    for step, loc, _, _ in steps:
        until = step.get("until_field")
        if step.get("kind") == "timer" and isinstance(until, str) and until in fields:
            kind = field_type(fields[until])
            if kind != "datetime":
                message = f"until_field {until!r} is a {kind} field; a timer needs type: datetime"
                problems.append(((*loc, "until_field"), message))
    return problems


def _awaited(data: dict[str, Any], steps: Steps) -> Iterator[tuple[str, Loc]]:
    """Every event the playbook waits for, pauses or resumes a clock on, with its place."""
    slas: list[tuple[Loc, Any]] = [(("sla", k), v) for k, v in _dict(data.get("sla")).items()]
    for step, loc, _, _ in steps:
        if step.get("kind") == "wait_for" and isinstance(step.get("event"), str):
            yield step["event"], (*loc, "event")
        slas.append(((*loc, "sla"), step.get("sla")))
    for loc, sla in slas:
        for key in ("pauses_on", "resumes_on"):
            for i, name in enumerate(_list(_dict(sla).get(key))):
                if isinstance(name, str):
                    yield name, (*loc, key, i)


def _event_problems(data: dict[str, Any], steps: Steps, fields: dict[str, Any]) -> list[Problem]:
    events = _dict(data.get("events"))
    awaited = list(_awaited(data, steps))
    if not events:
        if not awaited:
            return []
        names = ", ".join(sorted({name for name, _ in awaited}))
        message = f"the playbook waits for events ({names}) but declares none: list them under"
        return [(("events",), message + " `events:` with the fields each may set (`sets`)")]
    problems: list[Problem] = []
    declared = ", ".join(sorted(events))
    for name, loc in awaited:
        if name not in events:
            problems.append((loc, f"event {name!r} is not declared under events ({declared})"))
    awaited_names = {name for name, _ in awaited}
    for name, spec in events.items():
        if not isinstance(name, str) or not _EVENT_NAME.match(name):
            message = f"event name {name!r}: use lower-case letters, digits and _"
            problems.append((("events", str(name)), message))
            continue
        sets = _list(_dict(spec).get("sets"))
        for i, field in enumerate(sets):
            if isinstance(field, str) and field not in fields:
                known = ", ".join(fields) or "none"
                message = f"event {name} sets {field!r}, which is not a declared field ({known})"
                problems.append((("events", name, "sets", i), message))
        if name not in awaited_names and not sets:
            message = f"event {name} is awaited by no step and sets no field: it would do nothing"
            problems.append((("events", name), message))
    return problems


# --- Clock anchors ------------------------------------------------------------------------------


def _anchor_problems(data: dict[str, Any], steps: Steps, fields: dict[str, Any]) -> list[Problem]:
    ids = {s.get("id") for s, *_ in steps if isinstance(s.get("id"), str)}
    problems: list[Problem] = []
    targets: list[tuple[Loc, Any, str | None]] = [
        (("sla", key), sla, None) for key, sla in _dict(data.get("sla")).items()
    ]
    targets += [((*loc, "sla"), s.get("sla"), s.get("id")) for s, loc, *_ in steps]
    for loc, sla, own_id in targets:
        anchor = _dict(sla).get("anchor")
        if not isinstance(anchor, str) or not re.match(ANCHOR_PATTERN, anchor):
            continue  # absent (the default), or the schema's to report
        kind, name = parse_anchor(anchor)
        where, incident_clock = (*loc, "anchor"), loc[0] == "sla"
        if kind == "field" and name not in fields:
            problems.append((where, f"anchor {anchor}: {name!r} is not a declared field"))
        elif kind == "field" and field_type(fields[name]) != "datetime":
            kind_of = field_type(fields[name])
            message = f"anchor {anchor}: {name!r} is a {kind_of} field; a clock needs a datetime"
            problems.append((where, message + " field (type: datetime)"))
        elif kind == "step" and name and incident_clock:
            message = f"anchor {anchor}: an incident clock starts at incident or field:<name>"
            problems.append((where, message))
        elif kind == "step" and name and name not in ids:
            problems.append((where, f"anchor {anchor}: no step has the id {name!r}"))
        elif kind == "step" and name and name == own_id:
            message = f"anchor {anchor} is this step itself; leave anchor out (step is the default)"
            problems.append((where, message))
    return problems


# --- The incident's resolve SLA against its steps -------------------------------------------------


def _duration(value: Any) -> timedelta | None:
    try:
        return parse_duration(value)
    except ValueError:
        return None


def _spelled(amount: timedelta, clock: Any) -> str:
    """``72h`` for a wall clock, ``40h business`` (not ``1d16h``) for a business clock."""
    if clock != "business":
        return format_duration(amount)
    return f"{amount / timedelta(hours=1):g}h business"


def _wall(amount: timedelta, clock: Any) -> timedelta:
    return amount * _WALL_PER_BUSINESS_HOUR if clock == "business" else amount


def _resolve_problems(data: dict[str, Any], steps: Steps) -> list[Problem]:
    resolve = _dict(_dict(data.get("sla")).get("resolve"))
    due = _duration(resolve.get("due"))
    if due is None:
        return []
    limit = _wall(due, resolve.get("clock"))
    longer: list[tuple[timedelta, str]] = []
    for step, _, _, _ in steps:
        sla = _dict(step.get("sla"))
        step_due = _duration(sla.get("due")) if "due" in sla else None
        if step_due is not None and _wall(step_due, sla.get("clock")) > limit:
            what = f"step {step.get('id')}'s SLA ({_spelled(step_due, sla.get('clock'))})"
            longer.append((_wall(step_due, sla.get("clock")), what))
        wait = _duration(step.get("duration")) if step.get("kind") == "timer" else None
        if wait is not None and wait > limit:
            longer.append((wait, f"timer step {step.get('id')} ({format_duration(wait)})"))
    if not longer:
        return []
    longest, what = max(longer, key=lambda pair: pair[0])
    others = f" and {len(longer) - 1} other step(s)" if len(longer) > 1 else ""
    clock = resolve.get("clock")
    need = longest / _WALL_PER_BUSINESS_HOUR if clock == "business" else longest
    need = timedelta(hours=-(-need // timedelta(hours=1)))  # whole hours, rounded up
    message = (
        f"the incident's resolve SLA ({_spelled(due, clock)}) is shorter than {what}{others}:"
        f" every incident would breach it with every step on time; make it at least"
        f" {_spelled(need, clock)}"
    )
    return [(("sla", "resolve", "due"), message)]
