"""The roster as a YAML file: ``export`` writes everything, ``import_roster`` makes the database match
the file for what the file names (people, their roles and groups, rotations, overrides) and leaves
the rest alone, so importing the same file twice changes nothing the second time.

    people:
      - {handle: lena, name: Lena Ruiz, email: lena@example.org, active: true,
         roles: [ic, legal], groups: [child-safety]}
    rotations:
      - {role: ic, name: primary, people: [lena, omar], shift: 7d,
         start: "2026-03-02T09:00:00+01:00", timezone: Europe/Berlin}
    overrides:
      - {role: ic, person: omar, from: "...", to: "...", reason: lena on leave}
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from playbooks.durations import format_duration, parse_duration
from records.tables import utc
from roster import service
from roster.service import RosterError
from roster.tables import Person


def person_row(person: Person, *, url: str | None = None) -> dict[str, Any]:
    """One person as the file, `incident people list` and the API show them."""
    return {
        "handle": person.handle,
        "name": person.display_name,
        "email": person.email,
        "active": person.active,
        "roles": sorted(service.roles_of(person.handle, url=url)),
        "groups": sorted(service.groups_of(person.handle, url=url)),
    }


def people_rows(*, url: str | None = None) -> list[dict[str, Any]]:
    """Everyone, active or not, by handle."""
    return [person_row(p, url=url) for p in service.list_people(url=url)]


def export_roster(*, url: str | None = None) -> dict[str, Any]:
    """The whole roster as plain data (what ``import_roster`` reads)."""
    people = people_rows(url=url)
    rotations = [
        {
            "role": r.role,
            "name": r.name,
            "people": service.rotation_people(r),
            "shift": format_duration(timedelta(seconds=r.shift_seconds)),
            "start": utc(r.start).astimezone(ZoneInfo(r.timezone)).isoformat(),
            "timezone": r.timezone,
        }
        for r in service.list_rotations(url=url)
    ]
    overrides = [
        {
            "role": o.role,
            "person": o.person,
            "from": utc(o.start).isoformat(),
            "to": utc(o.end).isoformat(),
            "reason": o.reason,
        }
        for o in service.list_overrides(url=url)
    ]
    return {"people": people, "rotations": rotations, "overrides": overrides}


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def load(text: str) -> dict[str, Any]:
    """Parse a roster file; anything but a mapping of the three known lists is a RosterError."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise RosterError(f"not YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise RosterError("a roster file is a mapping with people, rotations and overrides")
    unknown = set(data) - {"people", "rotations", "overrides"}
    if unknown:
        raise RosterError(f"unknown section(s) {', '.join(sorted(map(str, unknown)))}")
    for key in ("people", "rotations", "overrides"):
        if not isinstance(data.get(key) or [], list):
            raise RosterError(f"{key}: a list")
    return data


def _field(item: Any, key: str, where: str, default: Any = ...) -> Any:
    if not isinstance(item, dict):
        raise RosterError(f"{where}: a mapping")
    if key not in item or item[key] is None:
        if default is ...:
            raise RosterError(f"{where}: {key} is missing")
        return default
    return item[key]


def _time(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise RosterError(f"{where}: {value!r} is not an ISO time") from None


def _names(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RosterError(f"{where}: a list of names")
    return value


def import_roster(data: dict[str, Any], *, actor: str, url: str | None = None) -> int:
    """Make the database match ``data`` for everything it names; returns the number of changes."""
    changes = 0
    for i, item in enumerate(data.get("people") or []):
        where = f"people[{i}]"
        handle = str(_field(item, "handle", where))
        name = str(_field(item, "name", where))
        email = _field(item, "email", where, None)
        active = bool(_field(item, "active", where, True))
        existing = service.get_person(handle, url=url)
        if existing is None:
            service.add_person(handle, display_name=name, email=email, actor=actor, url=url)
            changes += 1
        changes += len(
            service.update_person(
                handle, display_name=name, email=email, active=active, actor=actor, url=url
            )
        )
        for key, held, add, drop in (
            ("roles", service.roles_of, service.grant_role, service.revoke_role),
            ("groups", service.groups_of, service.join_group, service.leave_group),
        ):
            if key not in item:
                continue
            wanted = set(_names(item[key], f"{where}.{key}"))
            current = held(handle, url=url)
            for value in sorted(wanted - current):
                changes += add(handle, value, actor=actor, url=url)
            for value in sorted(current - wanted):
                changes += drop(handle, value, actor=actor, url=url)
    current_rotations = {(r.role, r.name): r for r in service.list_rotations(url=url)}
    for i, item in enumerate(data.get("rotations") or []):
        where = f"rotations[{i}]"
        role, name = str(_field(item, "role", where)), str(_field(item, "name", where))
        people = _names(_field(item, "people", where), f"{where}.people")
        try:
            shift = parse_duration(_field(item, "shift", where))
        except ValueError as err:
            raise RosterError(f"{where}.shift: {err}") from None
        zone = service.check_zone(str(_field(item, "timezone", where, "UTC")))
        start = _time(_field(item, "start", where), f"{where}.start")
        if start.tzinfo is None:
            start = start.replace(tzinfo=ZoneInfo(zone))
        had = current_rotations.get((role, name))
        if (
            had is not None
            and service.rotation_people(had) == people
            and had.shift_seconds == shift.total_seconds()
            and utc(had.start) == utc(start)
            and had.timezone == zone
        ):
            continue
        service.add_rotation(
            role,
            name=name,
            people=people,
            shift=shift,
            start=start,
            timezone=zone,
            actor=actor,
            url=url,
        )
        changes += 1
    known = {(o.role, o.person, utc(o.start), utc(o.end)) for o in service.list_overrides(url=url)}
    for i, item in enumerate(data.get("overrides") or []):
        where = f"overrides[{i}]"
        role, person = str(_field(item, "role", where)), str(_field(item, "person", where))
        start = utc(_time(_field(item, "from", where), f"{where}.from"))
        end = utc(_time(_field(item, "to", where), f"{where}.to"))
        if (role, person, start, end) in known:
            continue
        reason = str(_field(item, "reason", where))
        service.add_override(
            role, person, start=start, end=end, reason=reason, actor=actor, url=url
        )
        known.add((role, person, start, end))
        changes += 1
    return changes
