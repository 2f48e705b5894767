"""Plan scenarios that drive a playbook down every branch case, for ``record_histories.py``.

A target is one case of one branch step (or "no case matched" when a branch has no default). Its
requirement is what the incident's facts must hold to get there: the case's own condition, the
refutation of every earlier case, and the same for each enclosing branch case. Conditions read
incident fields, ``severity`` and ``decision.<step>``; a requirement therefore becomes field values
and approve/reject decisions. Targets whose requirements agree are packed into one scenario.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from playbooks.schema import BranchStep, Condition, Playbook, StepModel, TimerStep, child_lists

ABSENT = "\0absent"  # the field must not be set
SOME = "\0some"  # any non-empty value
Facts = dict[str, str]
Target = tuple[str, int]  # (branch step id, case index; -1 = no case matched)


@dataclass
class Scenario:
    name: str
    facts: Facts = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    continue_as_new_after: int | None = None


def _combine(a: str, b: str) -> str | None:
    """One value meeting both wishes, or None. ``\0not:x|y`` is any value but those."""
    if a == b:
        return a
    if b.startswith("\0not:") or b == SOME:
        a, b = b, a
    if a.startswith("\0not:"):
        avoid = set(a.removeprefix("\0not:").split("|"))
        if b.startswith("\0not:"):
            return "\0not:" + "|".join(sorted(avoid | set(b.removeprefix("\0not:").split("|"))))
        return b if b not in avoid and b != SOME else (a if b == SOME else None)
    if a == SOME:
        return b if b != ABSENT else None
    return None


def _merge(*parts: Facts | None) -> Facts | None:
    merged: Facts = {}
    for part in parts:
        if part is None:
            return None
        for key, value in part.items():
            combined = _combine(merged[key], value) if key in merged else value
            if combined is None:
                return None
            merged[key] = combined
    return merged


def satisfy(c: Condition) -> Facts | None:
    """Facts under which ``c`` holds (one way among many), or None if this solver cannot tell."""
    if c.all is not None:
        return _merge(*(satisfy(x) for x in c.all))
    if c.any is not None:
        return next((f for x in c.any if (f := satisfy(x)) is not None), None)
    if c.not_ is not None:
        return refute(c.not_)
    assert c.field is not None
    if c.exists is not None:
        return {c.field: SOME if c.exists else ABSENT}
    if c.equals is not None:
        return {c.field: c.equals}
    if c.not_equals is not None:
        return {c.field: f"\0not:{c.not_equals}"}
    return {c.field: c.in_[0]} if c.in_ else None


def refute(c: Condition) -> Facts | None:
    """Facts under which ``c`` is false."""
    if c.all is not None:
        return next((f for x in c.all if (f := refute(x)) is not None), None)
    if c.any is not None:
        return _merge(*(refute(x) for x in c.any))
    if c.not_ is not None:
        return satisfy(c.not_)
    assert c.field is not None
    if c.exists is not None:
        return {c.field: ABSENT if c.exists else SOME}
    if c.equals is not None:
        return {c.field: f"\0not:{c.equals}"}
    if c.not_equals is not None:
        return {c.field: c.not_equals}
    return {c.field: "\0not:" + "|".join(c.in_ or [])}


def _case_requirement(step: BranchStep, index: int) -> Facts | None:
    upto = index if index >= 0 else len(step.cases)
    earlier = [refute(c.when) for c in step.cases[:upto] if c.when is not None]
    if index < 0:
        return _merge(*earlier)
    own = step.cases[index].when
    return _merge(*earlier, satisfy(own) if own is not None else {})


def targets(playbook: Playbook) -> dict[Target, Facts | None]:
    """Every branch case with the facts that lead to it (None: not reachable by this solver)."""
    found: dict[Target, Facts | None] = {}

    def walk(steps: list[StepModel], path: Facts | None) -> None:
        for step in steps:
            if isinstance(step, BranchStep):
                indexes = list(range(len(step.cases)))
                if all(c.when is not None for c in step.cases):
                    indexes.append(-1)
                for i in indexes:
                    need = _merge(path, _case_requirement(step, i))
                    found[(step.id, i)] = need
                    if i >= 0:
                        walk(list(step.cases[i].steps), need)
            else:
                for nested in child_lists(step):
                    walk(nested, path)

    walk(list(playbook.steps), {})
    return found


def plan(playbook: Playbook, covered: set[Target]) -> list[Scenario]:
    """Greedily pack the uncovered reachable targets into as few scenarios as possible."""
    scenarios: list[Scenario] = []
    for target, need in targets(playbook).items():
        if target in covered or need is None:
            continue
        for scenario in scenarios:
            merged = _merge(scenario.facts, need)
            if merged is not None:
                scenario.facts, scenario.targets = merged, [*scenario.targets, target]
                break
        else:
            scenarios.append(Scenario(f"s{len(scenarios) + 1}", dict(need), [target]))
    return scenarios


def _date_fields(playbook: Playbook) -> set[str]:
    return {
        s.until_field for s in playbook.iter_steps() if isinstance(s, TimerStep) and s.until_field
    }


def concrete_fields(playbook: Playbook, facts: Facts, now: datetime) -> dict[str, str]:
    """Turn a requirement into incident fields: choices where the playbook lists them, dates for
    timer fields, and a neutral value for every other declared field."""
    dates = _date_fields(playbook)
    values: dict[str, str] = {}
    names = set(playbook.fields) | {k for k in facts if "." not in k and k != "severity"}
    for name in sorted(names):
        want = facts.get(name, "")
        spec = playbook.fields.get(name)
        choices = list(spec.choices or []) if spec else []
        if want == ABSENT or (not want and name in dates and not (spec and spec.required)):
            continue
        if name in dates:
            values[name] = (now + timedelta(days=10)).date().isoformat()
        elif want.startswith("\0not:"):
            avoid = set(want.removeprefix("\0not:").split("|"))
            values[name] = next((c for c in choices if c not in avoid), "other")
        elif want in ("", SOME):
            values[name] = choices[0] if choices else "yes"
        else:
            values[name] = want
    return values


def decisions(facts: Facts) -> dict[str, str]:
    """``decision.<step>`` requirements as approve/reject per approval step (default approve)."""
    chosen = {}
    for key, value in facts.items():
        if key.startswith("decision."):
            if value.startswith("\0not:"):
                value = "rejected" if "approved" in value else "approved"
            chosen[key.removeprefix("decision.")] = value
    return chosen


def case_of(detail: str) -> int:
    """The case index in a ``branch_taken`` entry's detail (``case 2 ...`` / ``no case matched``)."""
    found = re.match(r"case (\d+)", detail)
    return int(found.group(1)) - 1 if found else -1
