"""SLA arithmetic: wall and business clocks, DST, pause/resume, thresholds, views."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from playbooks.schema import Sla
from workflows import sla
from workflows.models import BusinessCalendar

LA = ZoneInfo("America/Los_Angeles")
CAL = BusinessCalendar()  # America/Los_Angeles, Monday-Friday 09:00-17:00


def la(*args: int) -> datetime:
    """A Los Angeles wall time as an aware UTC datetime (what the workflow passes in)."""
    return datetime(*args, tzinfo=LA).astimezone(UTC)


def h(hours: float) -> timedelta:
    return timedelta(hours=hours)


def m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


T0 = datetime(2024, 3, 4, 17, 0, tzinfo=UTC)  # Monday 09:00 PST


# --- counted / add_counted ----------------------------------------------------------------


def test_wall_add_and_count():
    assert sla.add_counted("wall", T0, h(4), CAL) == datetime(2024, 3, 4, 21, 0, tzinfo=UTC)
    assert sla.counted("wall", T0, T0 + h(30), CAL) == h(30)
    assert sla.counted("wall", T0 + h(1), T0, CAL) == timedelta(0)
    assert sla.add_counted("wall", T0, timedelta(0), CAL) == T0


def test_wall_clock_ignores_dst():
    # Saturday before spring-forward, noon PST; 24 real hours later it is 13:00 PDT.
    start = la(2024, 3, 9, 12, 0)
    assert sla.add_counted("wall", start, h(24), CAL) == la(2024, 3, 10, 13, 0)
    assert sla.counted("wall", la(2024, 3, 9, 12, 0), la(2024, 3, 10, 12, 0), CAL) == h(23)


def test_business_friday_afternoon_is_due_monday():
    start = la(2024, 3, 1, 15, 0)  # Friday 15:00 PST
    due = sla.add_counted("business", start, h(4), CAL)
    assert due == la(2024, 3, 4, 11, 0) == datetime(2024, 3, 4, 19, 0, tzinfo=UTC)
    assert sla.counted("business", start, due, CAL) == h(4)


def test_business_counts_only_hours_and_weekdays():
    assert sla.counted("business", la(2024, 3, 1, 16, 0), la(2024, 3, 4, 10, 0), CAL) == h(2)
    assert sla.counted("business", la(2024, 3, 4, 0, 0), la(2024, 3, 18, 0, 0), CAL) == h(80)
    assert sla.counted("business", la(2024, 3, 2, 9, 0), la(2024, 3, 3, 17, 0), CAL) == h(0)
    assert sla.counted("business", la(2024, 3, 4, 20, 0), la(2024, 3, 5, 8, 0), CAL) == h(0)


def test_business_amount_filling_the_day_ends_at_closing():
    assert sla.add_counted("business", la(2024, 3, 4, 13, 0), h(4), CAL) == la(2024, 3, 4, 17, 0)
    assert sla.add_counted("business", la(2024, 3, 4, 13, 0), h(4) + m(1), CAL) == la(
        2024, 3, 5, 9, 1
    )


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (la(2024, 3, 5, 7, 0), la(2024, 3, 5, 10, 0)),  # Tuesday before opening
        (la(2024, 3, 5, 20, 0), la(2024, 3, 6, 10, 0)),  # Tuesday evening
        (la(2024, 3, 2, 11, 0), la(2024, 3, 4, 10, 0)),  # Saturday
        (la(2024, 3, 4, 17, 0), la(2024, 3, 5, 10, 0)),  # Monday at closing time
    ],
)
def test_business_start_outside_hours_begins_at_next_opening(start, expected):
    assert sla.add_counted("business", start, h(1), CAL) == expected


def test_business_spring_forward_week():
    # DST starts Sunday 2024-03-10: Friday opens at 17:00 UTC, Monday at 16:00 UTC.
    start = la(2024, 3, 8, 15, 0)
    assert start == datetime(2024, 3, 8, 23, 0, tzinfo=UTC)
    due = sla.add_counted("business", start, h(4), CAL)
    assert due == la(2024, 3, 11, 11, 0) == datetime(2024, 3, 11, 18, 0, tzinfo=UTC)
    assert sla.counted("business", la(2024, 3, 8, 9, 0), la(2024, 3, 11, 17, 0), CAL) == h(16)


def test_business_fall_back_week():
    # DST ends Sunday 2024-11-03: Friday opens at 16:00 UTC, Monday at 17:00 UTC.
    friday, monday_close = la(2024, 11, 1, 9, 0), la(2024, 11, 4, 17, 0)
    assert friday == datetime(2024, 11, 1, 16, 0, tzinfo=UTC)
    assert sla.counted("business", friday, monday_close, CAL) == h(16)
    assert monday_close - friday == timedelta(days=3, hours=9)
    assert sla.add_counted("business", friday, h(9), CAL) == datetime(
        2024, 11, 4, 18, 0, tzinfo=UTC
    )


def test_round_the_clock_calendar_counts_local_day_length_across_dst():
    cal = BusinessCalendar(days=list(range(7)), start=time(0), end=time(0))
    assert sla.counted("business", la(2024, 3, 10, 0, 0), la(2024, 3, 11, 0, 0), cal) == h(23)
    assert sla.counted("business", la(2024, 11, 3, 0, 0), la(2024, 11, 4, 0, 0), cal) == h(25)


def test_overnight_calendar():
    cal = BusinessCalendar(days=list(range(7)), start=time(22), end=time(6))
    assert sla.counted("business", la(2024, 3, 4, 23, 0), la(2024, 3, 5, 7, 0), cal) == h(7)
    assert sla.add_counted("business", la(2024, 3, 5, 12, 0), h(9), cal) == la(2024, 3, 6, 23, 0)


def test_other_timezone():
    cal = BusinessCalendar(timezone="Europe/Dublin")
    start = datetime(2024, 7, 5, 14, 0, tzinfo=UTC)  # Friday 15:00 IST
    assert sla.add_counted("business", start, h(3), cal) == datetime(2024, 7, 8, 9, 0, tzinfo=UTC)


def test_refuses_naive_datetimes_and_unknown_kinds():
    with pytest.raises(ValueError, match="naive"):
        sla.counted("wall", datetime(2024, 1, 1), T0, CAL)
    with pytest.raises(ValueError, match="kind"):
        sla.add_counted("sidereal", T0, h(1), CAL)
    with pytest.raises(ValueError, match="weekdays"):
        sla.add_counted("business", T0, h(1), BusinessCalendar(days=[]))


def test_non_utc_input_comes_back_as_utc():
    due = sla.add_counted("wall", T0.astimezone(LA), h(1), CAL)
    assert due.tzinfo is UTC and due == T0 + h(1)


# --- clocks ---------------------------------------------------------------------------------


def test_start_clock_projects_deadline():
    clock = sla.start_clock("triage", Sla(due="4h", clock="business"), la(2024, 3, 1, 15, 0), CAL)
    assert clock.kind == "business"
    assert clock.running_since == clock.started_at == la(2024, 3, 1, 15, 0)
    assert clock.due_at == la(2024, 3, 4, 11, 0)
    assert clock.state == "on_track"


def test_wall_pause_resume_shifts_deadline_by_paused_time():
    clock = sla.start_clock("s", Sla(due="1h"), T0, CAL)
    assert clock.due_at == T0 + h(1)
    paused = sla.pause(clock, T0 + m(10), CAL)
    assert paused.state == "paused"
    assert paused.banked == m(10) and paused.due_at is None
    assert sla.elapsed(paused, T0 + m(35), CAL) == m(10)
    resumed = sla.resume(paused, T0 + m(40), CAL)
    assert resumed.due_at == T0 + h(1) + m(30)
    assert resumed.paused_total == m(30)
    assert sla.elapsed(resumed, T0 + m(50), CAL) == m(20)
    assert clock.running_since == T0 and clock.banked == timedelta(0)  # original untouched


def test_business_pause_resume_shifts_deadline_by_business_time_lost():
    clock = sla.start_clock("s", Sla(due="8h", clock="business"), la(2024, 3, 4, 9, 0), CAL)
    assert clock.due_at == la(2024, 3, 4, 17, 0)
    paused_at, resumed_at = la(2024, 3, 4, 16, 0), la(2024, 3, 5, 10, 0)
    resumed = sla.resume(sla.pause(clock, paused_at, CAL), resumed_at, CAL)
    lost = sla.counted("business", paused_at, resumed_at, CAL)
    assert lost == h(2)
    assert resumed.due_at == la(2024, 3, 5, 11, 0)
    assert resumed.due_at == sla.add_counted("business", clock.due_at, lost, CAL)
    assert resumed.banked == h(7)
    assert resumed.paused_total == h(18)


def test_pause_and_resume_are_idempotent():
    clock = sla.start_clock("s", Sla(due="1h"), T0, CAL)
    assert sla.resume(clock, T0 + m(5), CAL) == clock
    paused = sla.pause(clock, T0 + m(10), CAL)
    assert sla.pause(paused, T0 + m(20), CAL) == paused


def test_paused_clock_has_no_instant_or_threshold():
    clock = sla.start_clock("s", Sla(due="1h", warn_at="30m"), T0, CAL)
    paused = sla.pause(clock, T0 + m(10), CAL)
    assert sla.instant_of(paused, h(1), CAL) is None
    assert sla.next_threshold(paused, CAL) is None
    shown = sla.view(paused, T0 + h(3), CAL)
    assert shown.state == "paused"
    assert shown.due_at is None and shown.warn_at is None
    assert shown.remaining == m(50)


def test_next_threshold_warn_then_due_then_none():
    clock = sla.start_clock("s", Sla(due="1h", warn_at="30m"), T0, CAL)
    assert sla.next_threshold(clock, CAL) == ("warn", T0 + m(30))
    warned = sla.mark_warned(clock, T0 + m(30))
    assert warned.state == "warned"
    assert sla.next_threshold(warned, CAL) == ("due", T0 + h(1))
    breached = sla.mark_breached(warned, T0 + h(1))
    assert breached.state == "breached"
    assert sla.next_threshold(breached, CAL) is None
    assert sla.mark_breached(breached, T0 + h(2)).breached_at == T0 + h(1)
    assert sla.mark_warned(warned, T0 + h(2)).warned_at == T0 + m(30)


def test_next_threshold_without_warning_and_after_resume():
    clock = sla.start_clock("s", Sla(due="1h"), T0, CAL)
    assert sla.next_threshold(clock, CAL) == ("due", T0 + h(1))
    resumed = sla.resume(sla.pause(clock, T0 + m(50), CAL), T0 + h(2), CAL)
    assert sla.next_threshold(resumed, CAL) == ("due", T0 + h(2) + m(10))


def test_threshold_already_banked_fires_at_resume():
    clock = sla.start_clock("s", Sla(due="1h", warn_at="30m"), T0, CAL)
    resumed = sla.resume(sla.pause(clock, T0 + m(40), CAL), T0 + h(5), CAL)
    assert sla.instant_of(resumed, m(30), CAL) == T0 + h(5)
    assert sla.next_threshold(resumed, CAL) == ("warn", T0 + h(5))
    # A breached clock never asks for its overdue warning.
    breached = sla.mark_breached(resumed, T0 + h(5) + m(20))
    assert sla.next_threshold(breached, CAL) is None


def test_stop_freezes_the_clock():
    clock = sla.start_clock("s", Sla(due="1h", warn_at="30m"), T0, CAL)
    stopped = sla.stop(clock, T0 + m(20), CAL)
    assert stopped.state == "met"
    assert stopped.stopped_at == T0 + m(20)
    assert stopped.due_at is None
    assert sla.elapsed(stopped, T0 + h(5), CAL) == m(20)
    assert sla.next_threshold(stopped, CAL) is None
    assert sla.instant_of(stopped, h(1), CAL) is None
    assert sla.resume(stopped, T0 + h(5), CAL) == stopped
    assert sla.pause(stopped, T0 + h(5), CAL) == stopped
    assert sla.stop(stopped, T0 + h(5), CAL) == stopped
    assert sla.view(stopped, T0 + h(5), CAL).remaining == m(40)


def test_stop_while_paused_counts_the_pause():
    clock = sla.start_clock("s", Sla(due="1h"), T0, CAL)
    stopped = sla.stop(sla.pause(clock, T0 + m(10), CAL), T0 + m(25), CAL)
    assert stopped.paused_since is None and stopped.running_since is None
    assert stopped.paused_total == m(15)
    assert stopped.banked == m(10)


def test_stop_after_breach_is_met_late():
    clock = sla.start_clock("s", Sla(due="1h"), T0, CAL)
    late = sla.stop(sla.mark_breached(clock, T0 + h(1)), T0 + h(2), CAL)
    assert late.state == "met_late"


def test_view_remaining_goes_negative_after_breach():
    clock = sla.start_clock("ack", Sla(due="1h", warn_at="45m"), T0, CAL)
    on_track = sla.view(clock, T0 + m(15), CAL)
    assert on_track.remaining == m(45)
    assert on_track.due_at == T0 + h(1) and on_track.warn_at == T0 + m(45)
    assert sla.format_remaining(on_track.remaining) == "45m left"
    breached = sla.mark_breached(sla.mark_warned(clock, T0 + m(45)), T0 + h(1))
    late = sla.view(breached, T0 + h(1) + m(12), CAL)
    assert late.state == "breached"
    assert late.remaining == -m(12)
    assert late.due_at == T0 + h(1)
    assert sla.format_remaining(late.remaining) == "12m overdue"


def test_business_view_counts_business_time_only():
    clock = sla.start_clock("s", Sla(due="4h", clock="business"), la(2024, 3, 1, 15, 0), CAL)
    shown = sla.view(clock, la(2024, 3, 2, 12, 0), CAL)  # Saturday: 2h counted on Friday
    assert shown.remaining == h(2)
    assert shown.due_at == la(2024, 3, 4, 11, 0)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (h(1) + m(5), "1h 05m left"),
        (-m(12), "12m overdue"),
        (None, "paused"),
        (timedelta(0), "due now"),
        (timedelta(seconds=30), "1m left"),
        (m(59) + timedelta(seconds=1), "1h 00m left"),
        (-(h(3) + m(7)), "3h 07m overdue"),
        (timedelta(days=2, hours=3, minutes=4), "2d 03h 04m left"),
    ],
)
def test_format_remaining(delta, text):
    assert sla.format_remaining(delta) == text


class _OpaqueZone:
    """Like the Temporal sandbox's restriction proxy: ZoneInfo's methods, but not a tzinfo."""

    def __init__(self, key: str) -> None:
        self._zone = ZoneInfo(key)

    def __getattr__(self, name: str):
        return getattr(self._zone, name)


def test_works_when_zoneinfo_is_proxied(monkeypatch):
    monkeypatch.setattr(sla, "ZoneInfo", _OpaqueZone)
    with pytest.raises(TypeError):
        datetime(2024, 3, 1, tzinfo=_OpaqueZone("UTC"))  # what sla.py must never do
    assert sla.add_counted("business", la(2024, 3, 8, 15, 0), h(4), CAL) == la(2024, 3, 11, 11, 0)
    assert sla.counted("business", la(2024, 11, 1, 9, 0), la(2024, 11, 4, 17, 0), CAL) == h(16)
