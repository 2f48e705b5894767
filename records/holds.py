"""Legal holds: whether an incident's data must still be kept, whatever its retention says.

A running incident is never purged (its timers, the playbooks' preservation periods among them, are
active); this module decides for an incident that is over. A hold starts when a playbook's hold field
is set (at open, or by the event that sets it) and runs its statutory period from then
(``../shared/domain.md``):

- ``cybertip_report_id`` (child-safety, set by ``cybertip_submitted``): a NCMEC CyberTipline
  report counts as a preservation request for 1 year from submission (18 U.S.C. §2258A as amended
  by the REPORT Act).
- ``snapshot_ref`` (preservation, set by ``legal_hold_taken``): §2703(f) preservation for 90 days,
  extended by 90 days from the end of the period on ``preservation_renewed``; ended earlier only
  by Legal's approved release (the ``release-task`` or ``final-release-task`` step completed).
- ``legal_hold`` (a field any playbook may declare, e.g. for litigation): a hold with no end while
  its latest value is anything but empty, ``no``, ``none``, ``false`` or ``released``.

The fields come from the incident's start input (its archived or Temporal history) and from the
``event`` entries of its audit log, opened with its data key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from records.tables import AuditRow, utc


@dataclass(frozen=True)
class HoldRule:
    field: str  # the field whose being set starts the hold
    days: int
    law: str
    renewed_by: tuple[str, ...] = ()  # events that add ``days`` to the period's end
    released_by: tuple[str, ...] = ()  # steps whose completion ends it (Legal approved)


HOLD_RULES = (
    HoldRule("cybertip_report_id", 365, "NCMEC CyberTipline report (18 U.S.C. §2258A): 1 year"),
    HoldRule(
        "snapshot_ref",
        90,
        "§2703(f) preservation: 90 days",
        renewed_by=("preservation_renewed",),
        released_by=("release-task", "final-release-task"),
    ),
)
OPEN_HOLD_FIELD = "legal_hold"
NO_HOLD = frozenset({"", "no", "none", "false", "released"})


@dataclass(frozen=True)
class FieldSet:
    """A field given a value at a time (at open, or by an event)."""

    name: str
    value: str
    at: datetime


def field_history(
    opened_at: datetime, open_fields: dict[str, str], rows: list[AuditRow]
) -> list[FieldSet]:
    """Every value every field was given, oldest first: the start input's at ``opened_at``, then
    each ``event`` row's data (``rows``: audit rows with their detail and data in clear)."""
    found = [FieldSet(k, v, utc(opened_at)) for k, v in open_fields.items()]
    for row in rows:
        if row.action == "event":
            values = json.loads(row.data or "{}")
            found += [FieldSet(k, str(v), utc(row.at)) for k, v in values.items()]
    return sorted(found, key=lambda f: f.at)


def _ends(rule: HoldRule, sets: list[FieldSet], rows: list[AuditRow]) -> datetime | None:
    """When ``rule``'s hold ends (None: it never started). An ``event`` row's detail is the
    event's name."""
    started = [f.at for f in sets if f.name == rule.field and f.value.strip()]
    if not started:
        return None
    end = started[0] + timedelta(days=rule.days)
    for row in rows:
        if row.action == "event" and row.detail in rule.renewed_by:
            end = max(end, utc(row.at)) + timedelta(days=rule.days)
    released = [
        utc(row.at)
        for row in rows
        if row.action == "step_completed" and row.step in rule.released_by
    ]
    if released and min(released) >= started[0]:
        end = min(end, min(released))
    return end


def active_holds(sets: list[FieldSet], rows: list[AuditRow], now: datetime) -> list[str]:
    """Every hold still running at ``now``, one phrase each (empty: none)."""
    holds = []
    for rule in HOLD_RULES:
        end = _ends(rule, sets, rows)
        if end is not None and end > now:
            holds.append(f"{rule.law} (field {rule.field}), until {end:%Y-%m-%d %H:%M} UTC")
    latest = [f for f in sets if f.name == OPEN_HOLD_FIELD]
    if latest and latest[-1].value.strip().lower() not in NO_HOLD:
        holds.append(f"legal hold (field {OPEN_HOLD_FIELD} = {latest[-1].value[:40]!r})")
    return holds
