"""SLA clock arithmetic: pure functions over ``SlaClock`` for the incident workflow.

Imported inside the Temporal workflow sandbox, so everything here is deterministic: stdlib and
pydantic models only, no I/O, never a read of the wall clock; the caller always passes ``now``. A clock
counts either wall time or business time (the calendar's working hours, computed per local day so
that DST shifts land where the team's wall clock says). Functions return new models, never mutate.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from playbooks.fields import parse_datetime
from playbooks.schema import Sla, parse_anchor
from workflows.models import BusinessCalendar, ClockView, SlaClock

_ZERO = timedelta(0)
_DAY = timedelta(days=1)


def _utc(moment: datetime) -> datetime:
    """Normalise to aware UTC; a naive datetime would silently use the host's zone, so refuse it."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: SLA maths needs timezone-aware datetimes")
    return moment.astimezone(UTC)


def _local_to_utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    """A local wall time as aware UTC (``fold=0``: the earlier of a repeated hour).

    Only ``zone.utcoffset`` is called, never ``datetime(..., tzinfo=zone)``: inside the Temporal
    sandbox ``ZoneInfo`` instances are restriction proxies that the C ``datetime`` type rejects.
    """
    local = datetime.combine(day, at.replace(tzinfo=None))
    offset = zone.utcoffset(local)
    assert offset is not None
    return (local - offset).replace(tzinfo=UTC)


def _windows(since: datetime, calendar: BusinessCalendar) -> Iterator[tuple[datetime, datetime]]:
    """Business-hour windows in UTC, in order, from shortly before ``since`` onwards.

    Each window is built from local wall times for its own day, so a DST change between two days
    moves the UTC instants instead of stretching or shrinking the working day. ``end <= start``
    means the window runs past midnight into the next day.
    """
    if not calendar.days or any(d not in range(7) for d in calendar.days):
        raise ValueError(f"business calendar needs weekdays 0-6, got {calendar.days!r}")
    zone = ZoneInfo(calendar.timezone)
    overnight = calendar.end <= calendar.start
    # Two days back covers any UTC offset and an overnight window straddling ``since``;
    # callers skip windows that close before ``since``.
    day = since.date() - 2 * _DAY
    while True:
        if day.weekday() in calendar.days:
            closing_day = day + _DAY if overnight else day
            yield (
                _local_to_utc(day, calendar.start, zone),
                _local_to_utc(closing_day, calendar.end, zone),
            )
        day += _DAY


def _check_kind(kind: str) -> None:
    if kind not in ("wall", "business"):
        raise ValueError(f"unknown clock kind {kind!r} (wall or business)")


def counted(kind: str, start: datetime, end: datetime, calendar: BusinessCalendar) -> timedelta:
    """Counted time inside ``[start, end)``: all of it (wall) or only business hours; never < 0."""
    _check_kind(kind)
    start, end = _utc(start), _utc(end)
    if end <= start:
        return _ZERO
    if kind == "wall":
        return end - start
    total = _ZERO
    for opens, closes in _windows(start, calendar):
        if opens >= end:
            return total
        if closes > start:
            total += min(closes, end) - max(opens, start)
    raise AssertionError("unreachable: _windows never ends")


def add_counted(
    kind: str, start: datetime, amount: timedelta, calendar: BusinessCalendar
) -> datetime:
    """The earliest instant at which ``amount`` of counted time has elapsed since ``start``.

    For business clocks counting begins at the next opening when ``start`` is outside hours, and
    an amount that exactly fills a day lands on that day's closing time, not the next opening.
    A zero (or negative) amount is reached at ``start`` itself.
    """
    _check_kind(kind)
    start = _utc(start)
    if amount <= _ZERO:
        return start
    if kind == "wall":
        return start + amount
    left = amount
    for opens, closes in _windows(start, calendar):
        if closes <= start:
            continue
        begin = max(opens, start)
        if left <= closes - begin:
            return begin + left
        left -= closes - begin
    raise AssertionError("unreachable: _windows never ends")


def anchor_start(
    anchor: str,
    *,
    own_start: datetime,
    opened_at: datetime,
    fields: Mapping[str, str],
    started: Mapping[str, datetime],
    calendar: BusinessCalendar,
) -> tuple[datetime, str | None]:
    """When a clock anchored at ``anchor`` starts counting, and why it fell back, if it did.

    ``step`` (the default) is ``own_start`` (the step's start; the opening for an incident clock);
    ``incident`` is ``opened_at``; ``field:<name>`` is that incident field read as an ISO date-time
    (a date or a time without a zone is in the calendar's time zone); ``step:<id>`` is when that
    step started (``started`` holds the steps that did). A field that is missing or not a date-time,
    or a step that has not started, falls back to ``own_start`` with the reason.
    """
    kind, name = parse_anchor(anchor)
    if kind == "incident":
        return _utc(opened_at), None
    if kind == "field":
        raw = fields.get(name, "")
        if not raw.strip():
            return _utc(own_start), f"field {name} is not set"
        moment = parse_datetime(raw)
        if moment is None:
            return _utc(own_start), f"field {name} is not an ISO date-time ({raw[:40]!r})"
        if moment.tzinfo is None or moment.utcoffset() is None:
            return _local_to_utc(moment.date(), moment.time(), ZoneInfo(calendar.timezone)), None
        return _utc(moment), None
    if kind == "step" and name:
        at = started.get(name)
        if at is None:
            return _utc(own_start), f"step {name} has not started"
        return _utc(at), None
    return _utc(own_start), None


def start_clock(name: str, sla: Sla, now: datetime, calendar: BusinessCalendar) -> SlaClock:
    """A clock running from ``now`` with its deadline projected.

    ``now`` may lie in the past (a clock anchored before its step: ``anchor_start``); the clock has
    then counted since, and may already be past its warning or its deadline.
    """
    now = _utc(now)
    clock = SlaClock(
        name=name,
        kind=sla.clock,
        started_at=now,
        due=sla.due,
        warn_at=sla.warn_at,
        running_since=now,
    )
    return clock.model_copy(update={"due_at": instant_of(clock, clock.due, calendar)})


def elapsed(clock: SlaClock, now: datetime, calendar: BusinessCalendar) -> timedelta:
    """Counted time so far: the banked segments plus the running one (if any) up to ``now``."""
    if clock.running_since is None:
        return clock.banked
    return clock.banked + counted(clock.kind, clock.running_since, now, calendar)


def pause(clock: SlaClock, now: datetime, calendar: BusinessCalendar) -> SlaClock:
    """Bank the running segment and stop counting; no-op if already paused or stopped."""
    if clock.stopped_at is not None or clock.running_since is None:
        return clock
    return clock.model_copy(
        update={
            "banked": elapsed(clock, now, calendar),
            "running_since": None,
            "paused_since": _utc(now),
            "due_at": None,
        }
    )


def resume(clock: SlaClock, now: datetime, calendar: BusinessCalendar) -> SlaClock:
    """Start a new running segment at ``now``; no-op if running or stopped."""
    if clock.stopped_at is not None or clock.running_since is not None:
        return clock
    now = _utc(now)
    paused_total = clock.paused_total
    if clock.paused_since is not None:
        paused_total += max(now - clock.paused_since, _ZERO)
    resumed = clock.model_copy(
        update={"running_since": now, "paused_since": None, "paused_total": paused_total}
    )
    return resumed.model_copy(update={"due_at": instant_of(resumed, resumed.due, calendar)})


def stop(
    clock: SlaClock, now: datetime, calendar: BusinessCalendar, *, met: bool = True
) -> SlaClock:
    """Freeze the clock when its step (or the incident) finishes; no-op if already stopped.
    ``met=False``: it stopped without its work done (recorded as not met)."""
    if clock.stopped_at is not None:
        return clock
    now = _utc(now)
    paused = pause(clock, now, calendar)
    paused_total = paused.paused_total
    if paused.paused_since is not None:
        paused_total += max(now - paused.paused_since, _ZERO)
    return paused.model_copy(
        update={
            "stopped_at": now,
            "paused_since": None,
            "paused_total": paused_total,
            "unmet": not met,
        }
    )


def instant_of(
    clock: SlaClock, threshold: timedelta, calendar: BusinessCalendar
) -> datetime | None:
    """When the running clock's counted time reaches ``threshold``; None while paused or stopped.

    A threshold already passed before the current segment is reported as ``running_since``.
    """
    if clock.stopped_at is not None or clock.running_since is None:
        return None
    return add_counted(clock.kind, clock.running_since, threshold - clock.banked, calendar)


def next_threshold(
    clock: SlaClock, calendar: BusinessCalendar, now: datetime | None = None
) -> tuple[Literal["warn", "due"], datetime] | None:
    """The next threshold to fire and when, so the workflow can sleep exactly until then.

    The warning is skipped once the clock has breached (a late warning is only noise), and, when
    ``now`` is given, once the deadline itself has passed: a clock that starts after its deadline
    (anchored in the past) goes straight to its breach.
    """
    if clock.stopped_at is not None or clock.running_since is None:
        return None
    if clock.warn_at is not None and clock.warned_at is None and clock.breached_at is None:
        at = instant_of(clock, clock.warn_at, calendar)
        due = instant_of(clock, clock.due, calendar)
        if now is not None and due is not None and due <= _utc(now):
            return ("due", due)
        return ("warn", at) if at is not None else None
    if clock.breached_at is None:
        at = instant_of(clock, clock.due, calendar)
        return ("due", at) if at is not None else None
    return None


def mark_warned(clock: SlaClock, at: datetime) -> SlaClock:
    """Record the warning (the first one wins, so a replayed timer cannot move it)."""
    if clock.warned_at is not None:
        return clock
    return clock.model_copy(update={"warned_at": _utc(at)})


def mark_breached(clock: SlaClock, at: datetime) -> SlaClock:
    """Record the breach (the first one wins)."""
    if clock.breached_at is not None:
        return clock
    return clock.model_copy(update={"breached_at": _utc(at)})


def view(clock: SlaClock, now: datetime, calendar: BusinessCalendar) -> ClockView:
    """What the status query shows: state, projected instants, and counted time left."""
    warn = instant_of(clock, clock.warn_at, calendar) if clock.warn_at is not None else None
    return ClockView(
        name=clock.name,
        kind=clock.kind,
        state=clock.state,
        due_at=instant_of(clock, clock.due, calendar),
        warn_at=warn,
        remaining=clock.due - elapsed(clock, now, calendar),
        paused_total=clock.paused_total,
    )


def format_remaining(delta: timedelta | None) -> str:
    """``1h 05m left`` / ``12m overdue`` / ``paused`` (None); partial minutes round up."""
    if delta is None:
        return "paused"
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "due now"
    minutes = -(-abs(seconds) // 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    if days:
        text = f"{days}d {hours:02d}h {minutes:02d}m"
    elif hours:
        text = f"{hours}h {minutes:02d}m"
    else:
        text = f"{minutes}m"
    return f"{text} {'left' if seconds > 0 else 'overdue'}"
