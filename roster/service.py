"""The roster's one door: people, role grants, groups, rotations and overrides, and who holds a role
at a time. Pure functions over a database URL (default: settings); every change is committed, then
appended to the audit log as one ``roster_changed`` entry naming the actor (``roster/journal.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel import Session, col, select

from records.tables import utc
from roster import journal
from roster.tables import GroupMember, Override, Person, RoleGrant, Rotation, roster_engine

HANDLE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")  # roles, groups, rotation names
MAX_TEXT = 200


class RosterError(ValueError):
    """A refused roster change or query: one line saying what and why."""


class RosterConflict(RosterError):
    """Refused by the roster's state, not by its input (a handle taken): 409 at the API."""


def check_handle(handle: str) -> str:
    if not HANDLE.fullmatch(handle or ""):
        raise RosterError(
            f"{handle!r} is not a handle (lowercase letters, digits, . _ -; up to 64)"
        )
    return handle


def check_name(value: str, what: str) -> str:
    if not NAME.fullmatch(value or ""):
        raise RosterError(f"{value!r} is not a {what} name (lowercase letters, digits, _ -)")
    return value


def check_text(value: str, what: str, limit: int = MAX_TEXT) -> str:
    if not value.strip():
        raise RosterError(f"{what} is empty")
    if len(value) > limit:
        raise RosterError(f"{what}: {len(value)} characters, at most {limit}")
    if any(not (ch.isprintable() or ch == " ") for ch in value):
        raise RosterError(f"{what} contains control characters")
    return value


def check_zone(zone: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise RosterError(f"{zone!r} is not an IANA time zone") from None
    return zone


def _now() -> datetime:
    return datetime.now(UTC)


def _session(url: str | None) -> Session:
    return Session(roster_engine(url), expire_on_commit=False)


def _require(s: Session, handle: str) -> Person:
    person = s.get(Person, check_handle(handle))
    if person is None:
        raise RosterError(f"no such person {handle!r} (add them with `incident people add`)")
    return person


# --- people ------------------------------------------------------------------------------------


def add_person(
    handle: str,
    *,
    display_name: str,
    email: str | None = None,
    roles: Iterable[str] = (),
    groups: Iterable[str] = (),
    actor: str,
    url: str | None = None,
) -> Person:
    """Add a person (with roles and groups); a handle already taken is refused."""
    check_handle(handle)
    check_text(display_name, "name")
    if email is not None:
        check_text(email, "email")
    roles, groups = [check_name(r, "role") for r in roles], [check_name(g, "group") for g in groups]
    with _session(url) as s:
        if s.get(Person, handle) is not None:
            raise RosterConflict(f"person {handle!r} already exists")
        person = Person(handle=handle, display_name=display_name, email=email, created_at=_now())
        s.add(person)
        s.commit()
    journal.record(actor, f"person {handle} added ({display_name})", url)
    for role in dict.fromkeys(roles):
        grant_role(handle, role, actor=actor, url=url)
    for group in dict.fromkeys(groups):
        join_group(handle, group, actor=actor, url=url)
    return person


def update_person(
    handle: str,
    *,
    display_name: str | None = None,
    email: str | None = None,
    active: bool | None = None,
    actor: str,
    url: str | None = None,
) -> list[str]:
    """Change what is given; returns what changed (nothing changed: nothing audited)."""
    if display_name is not None:
        check_text(display_name, "name")
    if email is not None:
        check_text(email, "email")
    with _session(url) as s:
        person = _require(s, handle)
        changes = []
        if display_name is not None and display_name != person.display_name:
            person.display_name = display_name
            changes.append(f"name {display_name}")
        if email is not None and email != person.email:
            person.email = email
            changes.append(f"email {email}")
        if active is not None and active != person.active:
            person.active = active
            changes.append("reactivated" if active else "deactivated")
        if changes:
            s.add(person)
            s.commit()
    if changes:
        journal.record(actor, f"person {handle} " + ", ".join(changes), url)
    return changes


def deactivate_person(handle: str, *, actor: str, url: str | None = None) -> bool:
    """Deactivate: they hold no role and no token of theirs authenticates. True if it changed."""
    return bool(update_person(handle, active=False, actor=actor, url=url))


def get_person(handle: str, *, url: str | None = None) -> Person | None:
    with _session(url) as s:
        return s.get(Person, handle)


def list_people(*, include_inactive: bool = True, url: str | None = None) -> list[Person]:
    with _session(url) as s:
        query = select(Person).order_by(Person.handle)  # type: ignore[arg-type]
        if not include_inactive:
            query = query.where(Person.active == True)  # noqa: E712
        return list(s.exec(query).all())


# --- roles and groups --------------------------------------------------------------------------


def grant_role(person: str, role: str, *, actor: str, url: str | None = None) -> bool:
    """Grant ``role`` to ``person``; True if they did not hold it."""
    check_name(role, "role")
    with _session(url) as s:
        _require(s, person)
        if s.get(RoleGrant, (person, role)) is not None:
            return False
        s.add(RoleGrant(person=person, role=role))
        s.commit()
    journal.record(actor, f"role {role} granted to {person}", url)
    return True


def revoke_role(person: str, role: str, *, actor: str, url: str | None = None) -> bool:
    """Take ``role`` from ``person``; True if they held it."""
    with _session(url) as s:
        grant = s.get(RoleGrant, (person, role))
        if grant is None:
            return False
        s.delete(grant)
        s.commit()
    journal.record(actor, f"role {role} revoked from {person}", url)
    return True


def join_group(person: str, group: str, *, actor: str, url: str | None = None) -> bool:
    check_name(group, "group")
    with _session(url) as s:
        _require(s, person)
        if s.get(GroupMember, (group, person)) is not None:
            return False
        s.add(GroupMember(group=group, person=person))
        s.commit()
    journal.record(actor, f"{person} joined group {group}", url)
    return True


def leave_group(person: str, group: str, *, actor: str, url: str | None = None) -> bool:
    with _session(url) as s:
        member = s.get(GroupMember, (group, person))
        if member is None:
            return False
        s.delete(member)
        s.commit()
    journal.record(actor, f"{person} left group {group}", url)
    return True


def roles_of(person: str, *, url: str | None = None) -> set[str]:
    """The roles granted to ``person`` (empty for someone unknown)."""
    with _session(url) as s:
        return set(s.exec(select(RoleGrant.role).where(RoleGrant.person == person)).all())


def groups_of(person: str, *, url: str | None = None) -> set[str]:
    with _session(url) as s:
        return set(s.exec(select(GroupMember.group).where(GroupMember.person == person)).all())


# --- rotations and overrides -------------------------------------------------------------------


def rotation_people(rotation: Rotation) -> list[str]:
    return [p for p in rotation.people.split(",") if p]


def on_shift(rotation: Rotation, at: datetime) -> str | None:
    """Who of ``rotation`` is on shift at ``at`` (None before its start). Shifts are counted in the
    rotation's local wall-clock time, so a weekly 09:00 hand-over stays at 09:00 across DST."""
    people = rotation_people(rotation)
    start, at = utc(rotation.start), utc(at)
    if not people or at < start or rotation.shift_seconds <= 0:
        return None
    zone = ZoneInfo(rotation.timezone)
    elapsed = at.astimezone(zone).replace(tzinfo=None) - start.astimezone(zone).replace(tzinfo=None)
    shift = int(elapsed.total_seconds() // rotation.shift_seconds)
    return people[max(shift, 0) % len(people)]


def add_rotation(
    role: str,
    *,
    name: str,
    people: Sequence[str],
    shift: timedelta,
    start: datetime,
    timezone: str = "UTC",
    actor: str,
    url: str | None = None,
) -> Rotation:
    """Add (or replace) rotation ``name`` of ``role``; everyone in it must hold the role."""
    check_name(role, "role")
    check_name(name, "rotation")
    check_zone(timezone)
    if not people:
        raise RosterError(f"rotation {name} of {role}: no people")
    if shift <= timedelta(0):
        raise RosterError(f"rotation {name} of {role}: the shift must be longer than zero")
    if start.tzinfo is None:
        start = start.replace(tzinfo=ZoneInfo(timezone))
    with _session(url) as s:
        for handle in people:
            _require(s, handle)
            if s.get(RoleGrant, (handle, role)) is None:
                raise RosterError(f"{handle} does not hold role {role} (grant it first)")
        existing = s.get(Rotation, (role, name))
        if existing is not None:
            s.delete(existing)
            s.flush()
        rotation = Rotation(
            role=role,
            name=name,
            people=",".join(people),
            shift_seconds=shift.total_seconds(),
            start=utc(start),
            timezone=timezone,
            created_at=_now(),
        )
        s.add(rotation)
        s.commit()
    verb = "replaced" if existing is not None else "added"
    journal.record(
        actor,
        f"rotation {name} of {role} {verb}: {','.join(people)} every {shift}, "
        f"from {utc(start).isoformat()} ({timezone})",
        url,
    )
    return rotation


def remove_rotation(role: str, name: str, *, actor: str, url: str | None = None) -> bool:
    with _session(url) as s:
        rotation = s.get(Rotation, (role, name))
        if rotation is None:
            return False
        s.delete(rotation)
        s.commit()
    journal.record(actor, f"rotation {name} of {role} removed", url)
    return True


def list_rotations(role: str | None = None, *, url: str | None = None) -> list[Rotation]:
    with _session(url) as s:
        query = select(Rotation).order_by(Rotation.role, Rotation.name)  # type: ignore[arg-type]
        if role is not None:
            query = query.where(Rotation.role == role)
        return list(s.exec(query).all())


def add_override(
    role: str,
    person: str,
    *,
    start: datetime,
    end: datetime,
    reason: str,
    actor: str,
    url: str | None = None,
) -> Override:
    """``person`` holds ``role`` from ``start`` to ``end``, ahead of any rotation."""
    check_name(role, "role")
    check_text(reason, "reason")
    start, end = utc(start), utc(end)
    if end <= start:
        raise RosterError(f"override of {role} by {person}: it ends before it starts")
    with _session(url) as s:
        _require(s, person)
        if s.get(RoleGrant, (person, role)) is None:
            raise RosterError(f"{person} does not hold role {role} (grant it first)")
        override = Override(
            role=role, person=person, start=start, end=end, reason=reason, created_at=_now()
        )
        s.add(override)
        s.commit()
    journal.record(
        actor,
        f"override {override.id}: {person} holds {role} from {start.isoformat()} "
        f"to {end.isoformat()} ({reason})",
        url,
    )
    return override


def remove_override(override_id: int, *, actor: str, url: str | None = None) -> bool:
    with _session(url) as s:
        override = s.get(Override, override_id)
        if override is None:
            return False
        s.delete(override)
        s.commit()
    journal.record(
        actor, f"override {override_id} removed ({override.person} for {override.role})", url
    )
    return True


def list_overrides(role: str | None = None, *, url: str | None = None) -> list[Override]:
    with _session(url) as s:
        query = select(Override).order_by(Override.role, Override.start)  # type: ignore[arg-type]
        if role is not None:
            query = query.where(Override.role == role)
        return list(s.exec(query).all())


def members(role: str, *, url: str | None = None) -> list[str]:
    """Every active person granted ``role`` now, by handle."""
    with _session(url) as s:
        active = set(s.exec(select(Person.handle).where(Person.active == True)).all())  # noqa: E712
        granted = set(s.exec(select(RoleGrant.person).where(RoleGrant.role == role)).all())
    return sorted(granted & active)


def holders(role: str, at: datetime | None = None, *, url: str | None = None) -> list[str]:
    """Who holds ``role`` at ``at`` (default now): the active people of an override covering
    ``at``; else whoever is on shift in the role's rotations; else every active person granted it."""
    at = utc(at) if at is not None else _now()
    with _session(url) as s:
        active = set(s.exec(select(Person.handle).where(Person.active == True)).all())  # noqa: E712
        granted = set(s.exec(select(RoleGrant.person).where(RoleGrant.role == role)).all())
        overrides = s.exec(
            select(Override)
            .where(Override.role == role)
            .order_by(col(Override.start), col(Override.id))
        ).all()
        rotations = s.exec(
            select(Rotation).where(Rotation.role == role).order_by(col(Rotation.name))
        ).all()
    covering = [o.person for o in overrides if utc(o.start) <= at < utc(o.end)]
    for candidates in (covering, [on_shift(r, at) for r in rotations]):
        found = [p for p in dict.fromkeys(candidates) if p in active and p in granted]
        if found:
            return found
    return sorted(granted & active)
