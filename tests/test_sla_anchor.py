"""Clocks anchored before their step (issue 8 item 14): where ``anchor_start`` starts a clock, the
fallbacks it explains, and a clock that starts in the past (warned, or already breached)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from playbooks.schema import Sla
from workflows import sla
from workflows.models import BusinessCalendar

CAL = BusinessCalendar()  # America/Los_Angeles, Monday-Friday 09:00-17:00
OPENED = datetime(2024, 3, 4, 17, 0, tzinfo=UTC)  # Monday 09:00 PST
NOW = OPENED + timedelta(hours=30)  # the step starts 30 hours after the opening


def start(anchor: str, fields: dict[str, str] | None = None, **started: datetime):
    return sla.anchor_start(
        anchor,
        own_start=NOW,
        opened_at=OPENED,
        fields=fields or {},
        started=started,
        calendar=CAL,
    )


def test_step_and_incident_anchors():
    assert start("step") == (NOW, None)
    assert start("incident") == (OPENED, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-03T10:00:00Z", datetime(2024, 3, 3, 10, 0, tzinfo=UTC)),
        ("2024-03-03T10:00:00+02:00", datetime(2024, 3, 3, 8, 0, tzinfo=UTC)),
        # No zone: the team's time zone (Los Angeles, PST = UTC-8).
        ("2024-03-03T10:00", datetime(2024, 3, 3, 18, 0, tzinfo=UTC)),
        ("2024-03-03", datetime(2024, 3, 3, 8, 0, tzinfo=UTC)),
    ],
)
def test_field_anchor_reads_an_iso_datetime(value: str, expected: datetime):
    assert start("field:aware_at", {"aware_at": value}) == (expected, None)


def test_a_naive_datetime_follows_the_calendars_daylight_saving_time():
    summer = start("field:aware_at", {"aware_at": "2024-07-01T10:00"})[0]
    assert summer == datetime(2024, 7, 1, 17, 0, tzinfo=UTC)  # PDT = UTC-7


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "field aware_at is not set"),
        ({"aware_at": "  "}, "field aware_at is not set"),
        ({"aware_at": "last tuesday"}, "field aware_at is not an ISO date-time ('last tuesday')"),
    ],
)
def test_field_anchor_falls_back_to_the_steps_start(fields: dict[str, str], reason: str):
    assert start("field:aware_at", fields) == (NOW, reason)


def test_step_anchor_reads_when_the_other_step_started():
    earlier = OPENED + timedelta(minutes=20)
    assert start("step:intake", intake=earlier) == (earlier, None)
    assert start("step:intake", other=earlier) == (NOW, "step intake has not started")


def test_a_clock_anchored_in_the_past_has_counted_since():
    gdpr = Sla.model_validate(
        {"due": "72h", "warn_at": "48h", "legal": True, "anchor": "field:aware_at"}
    )
    aware = OPENED - timedelta(hours=20)  # aware the day before the incident opened
    clock = sla.start_clock("breach-notification", gdpr, aware, CAL)
    assert (clock.started_at, clock.due_at) == (aware, aware + timedelta(hours=72))
    assert sla.elapsed(clock, NOW, CAL) == timedelta(hours=50)
    view = sla.view(clock, NOW, CAL)
    assert view.remaining == timedelta(hours=22)
    assert view.warn_at == aware + timedelta(hours=48) < NOW  # the warning is already due
    assert sla.next_threshold(clock, CAL, NOW) == ("warn", aware + timedelta(hours=48))


def test_a_clock_that_starts_after_its_deadline_goes_straight_to_the_breach():
    legal = Sla.model_validate({"due": "24h", "warn_at": "12h", "anchor": "incident"})
    clock = sla.start_clock("rfr-report", legal, OPENED, CAL)
    # Without ``now`` (every clock anchored at its step) the order is warning, then breach.
    assert sla.next_threshold(clock, CAL) == ("warn", OPENED + timedelta(hours=12))
    # Started 30 h after its anchor: no late warning, the breach at once (its instant is past).
    assert sla.next_threshold(clock, CAL, NOW) == ("due", OPENED + timedelta(hours=24))
    breached = sla.mark_breached(clock, NOW)
    assert sla.next_threshold(breached, CAL, NOW) is None
    assert sla.view(breached, NOW, CAL).remaining == timedelta(hours=-6)


def test_a_business_clock_anchored_in_the_past_counts_business_hours_only():
    business = Sla.model_validate({"due": "8h", "clock": "business", "anchor": "incident"})
    friday_4pm = datetime(2024, 3, 1, 16, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
    clock = sla.start_clock("confirm", business, friday_4pm.astimezone(UTC), CAL)
    # One hour on Friday, seven on Monday: due Monday 16:00 PST.
    assert clock.due_at == datetime(2024, 3, 5, 0, 0, tzinfo=UTC)
    monday_noon = datetime(2024, 3, 4, 20, 0, tzinfo=UTC)
    assert sla.elapsed(clock, monday_noon, CAL) == timedelta(hours=4)


def test_a_paused_and_resumed_anchored_clock_keeps_what_it_counted():
    legal = Sla.model_validate(
        {"due": "10h", "anchor": "incident", "pauses_on": ["a"], "resumes_on": ["b"]}
    )
    clock = sla.start_clock("vendor", legal, OPENED, CAL)
    paused = sla.pause(clock, OPENED + timedelta(hours=4), CAL)
    assert paused.banked == timedelta(hours=4)
    resumed = sla.resume(paused, NOW, CAL)
    assert resumed.due_at == NOW + timedelta(hours=6)
