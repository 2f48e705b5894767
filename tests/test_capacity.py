"""Capacity per person and declared work (SQLite and PostgreSQL), on the roster of
tests/test_coverage.py plus declared work, over the week from Monday 2026-03-16 00:00 UTC:

- lers rotation ann 00-12 / ben 12-24, ben's override 03-16 10-11: ann 7 x 12 - 1 = 83 h on
  call, ben 85 h less the 12 h of his shift on 03-18 that his leave (03-18 12:00 to 03-19 12:00)
  takes him off call: 73 h; nobody holds lers then (ann is not on shift: a coverage gap);
- cal on cr from 03-20: 72 h; lena (legal, no rotation): 0 h;
- ann declared 10 h of project work (03-17 13:00-23:00): reactive share 83 / 93;
- handled: ann answered a page at 05:10 on 03-16 (on call), lena decided at 14:30 on 03-17.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from insights.capacity import build_capacity, capacity_csv, capacity_table
from insights.coverage import build_coverage
from roster.service import RosterError
from roster.work import add_work, list_work, remove_work
from starter import run
from tests.records_db import both_backends, records_url
from tests.test_coverage import ADMIN, _write, seed

pytestmark = [both_backends, pytest.mark.usefixtures(records_url.__name__)]
MONDAY = datetime(2026, 3, 16, tzinfo=UTC)


def seed_week() -> None:
    seed()
    add_work("ann", "project", start=MONDAY + timedelta(days=1, hours=13),
             end=MONDAY + timedelta(days=1, hours=23), note="tooling", actor=ADMIN)  # fmt: skip
    add_work("ben", "leave", start=MONDAY + timedelta(days=2, hours=12),
             end=MONDAY + timedelta(days=3, hours=12), actor=ADMIN)  # fmt: skip
    _write("W1", MONDAY + timedelta(hours=5), [(5, "system", "paged", None, None),
                                               (10, "ann", "acknowledged", "lers", None)])  # fmt: skip
    tuesday = MONDAY + timedelta(days=1, hours=14)
    _write("W2", tuesday, [(0, "system", "approval_requested", "legal", "legal-review"),
                           (30, "lena", "approved", "legal", "legal-review")])  # fmt: skip


def test_capacity_per_person():
    seed_week()
    report = build_capacity(MONDAY, MONDAY + timedelta(weeks=1))
    rows = {r.person: r for r in report.rows}
    ann, ben, cal, lena = rows["ann"], rows["ben"], rows["cal"], rows["lena"]
    assert (ann.on_call_hours, ann.declared_hours["project"], ann.handled, ann.handled_on_call) == (
        83, 10.0, 1, 1)  # fmt: skip
    assert ann.reactive_share == round(83 / 93, 4)
    assert (ben.on_call_hours, ben.declared_hours["leave"], ben.reactive_share) == (73, 24.0, 1.0)
    assert (cal.on_call_hours, cal.reactive_share) == (72, 1.0)
    assert (lena.on_call_hours, lena.handled, lena.handled_on_call, lena.reactive_share) == (
        0, 1, 0, None)  # fmt: skip
    assert "Reactive share" in capacity_table(report)
    assert capacity_csv(report).splitlines()[1].startswith("ann,lers,83,10.0,0.0,0.0,1,1,")


def test_leave_takes_people_off_call_and_declared_work_is_checked():
    seed_week()
    cov = build_coverage("UTC", hours=24, lookback=4, now=MONDAY + timedelta(days=2, hours=11))
    lers = [g for g in cov.gaps if g.role == "lers"]
    assert [(g.status, g.start.astimezone(UTC), g.hours) for g in lers] == [
        ("nobody_on_call", MONDAY + timedelta(days=2, hours=12), 12)]  # fmt: skip
    with pytest.raises(RosterError, match="kind 'vacation' is not one of project, training"):
        add_work("ann", "vacation", start=MONDAY, end=MONDAY + timedelta(hours=1), actor=ADMIN)
    with pytest.raises(RosterError, match="no person 'zed'"):
        add_work("zed", "leave", start=MONDAY, end=MONDAY + timedelta(hours=1), actor=ADMIN)
    assert [w.person for w in list_work(MONDAY, MONDAY + timedelta(days=3))] == ["ann", "ben"]
    assert [w.person for w in list_work(MONDAY, MONDAY + timedelta(days=2))] == ["ann"]
    assert remove_work(list_work()[0].id or 0, actor=ADMIN) and len(list_work()) == 1


def test_the_commands(capsys):
    seed_week()
    assert run(["roster", "work", "add", "cal", "--kind", "training", "--from",
                "2026-03-21T09:00", "--to", "2026-03-21T17:00"]) == 0  # fmt: skip
    assert "on training" in capsys.readouterr().out
    assert run(["roster", "work", "add", "cal", "--kind", "nap", "--from", "2026-03-21",
                "--to", "2026-03-22"]) == 1  # fmt: skip
    assert "kind 'nap' is not one of" in capsys.readouterr().err
    assert run(["capacity", "--since", "3650d", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("person,roles,on_call_hours")
