"""People, roles, groups, rotations and overrides (issue 9): who holds a role at a time, the YAML
file as desired state, every change in the audit log, and the commands' one-line errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import typer

import starter
from audit.verify import verify
from roster import journal, service, yamlfile
from roster.cli import oncall_app, people_app, roster_app, token_app
from roster.service import RosterError
from tests.records_db import both_backends, records_url  # noqa: F401 - the fixture

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
ADMIN = "admin"


pytestmark = both_backends


@pytest.fixture
def url(records_url):  # noqa: F811
    return records_url


def team(url: str) -> None:
    for handle, roles in (("lena", ["ic", "legal"]), ("omar", ["ic"]), ("kim", ["ic", "lers"])):
        service.add_person(handle, display_name=handle.title(), roles=roles, actor=ADMIN, url=url)


def test_holders_follow_the_rotation_across_a_shift_boundary(url):
    team(url)
    service.add_rotation(
        "ic", name="primary", people=["lena", "omar", "kim"], shift=timedelta(days=7),
        start=T0, actor=ADMIN, url=url,
    )  # fmt: skip
    assert service.holders("ic", T0, url=url) == ["lena"]
    assert service.holders("ic", T0 + timedelta(days=7) - timedelta(seconds=1), url=url) == ["lena"]
    assert service.holders("ic", T0 + timedelta(days=7), url=url) == ["omar"]
    assert service.holders("ic", T0 + timedelta(days=14), url=url) == ["kim"]
    assert service.holders("ic", T0 + timedelta(days=21), url=url) == ["lena"]
    # before the rotation starts, everyone active granted the role
    assert service.holders("ic", T0 - timedelta(hours=1), url=url) == ["kim", "lena", "omar"]
    # a role with no rotation: everyone granted it
    assert service.holders("legal", T0, url=url) == ["lena"]
    assert service.holders("comms", T0, url=url) == []


def test_hand_over_keeps_local_time_across_dst(url):
    team(url)
    service.add_rotation(
        "ic", name="eu", people=["lena", "omar"], shift=timedelta(days=7),
        start=datetime(2026, 3, 23, 9, 0), timezone="Europe/Berlin", actor=ADMIN, url=url,
    )  # fmt: skip
    # 2026-03-29 Berlin goes to summer time: the hand-over stays at 09:00 local (07:00 UTC)
    assert service.holders("ic", datetime(2026, 3, 30, 6, 59, tzinfo=UTC), url=url) == ["lena"]
    assert service.holders("ic", datetime(2026, 3, 30, 7, 0, tzinfo=UTC), url=url) == ["omar"]


def test_an_override_comes_first_and_ends_on_time(url):
    team(url)
    service.add_rotation(
        "ic", name="primary", people=["lena", "omar"], shift=timedelta(days=7), start=T0,
        actor=ADMIN, url=url,
    )  # fmt: skip
    o = service.add_override(
        "ic", "kim", start=T0 + timedelta(days=1), end=T0 + timedelta(days=2),
        reason="lena at a conference", actor=ADMIN, url=url,
    )  # fmt: skip
    assert service.holders("ic", T0 + timedelta(days=1), url=url) == ["kim"]
    assert service.holders("ic", T0 + timedelta(days=2), url=url) == ["lena"]
    assert service.remove_override(o.id, actor=ADMIN, url=url)
    assert service.holders("ic", T0 + timedelta(days=1, hours=1), url=url) == ["lena"]
    with pytest.raises(RosterError, match="does not hold role legal"):
        service.add_override("legal", "kim", start=T0, end=T0 + timedelta(hours=1), reason="r",
                             actor=ADMIN, url=url)  # fmt: skip
    with pytest.raises(RosterError, match="ends before it starts"):
        service.add_override("ic", "kim", start=T0, end=T0, reason="r", actor=ADMIN, url=url)


def test_deactivated_or_revoked_people_hold_nothing(url):
    team(url)
    service.add_rotation(
        "ic", name="primary", people=["lena", "omar"], shift=timedelta(days=7), start=T0,
        actor=ADMIN, url=url,
    )  # fmt: skip
    assert service.deactivate_person("lena", actor=ADMIN, url=url)
    assert not service.deactivate_person("lena", actor=ADMIN, url=url)
    assert service.holders("ic", T0, url=url) == ["kim", "omar"]  # fallback: active grantees
    assert service.revoke_role("omar", "ic", actor=ADMIN, url=url)
    assert service.holders("ic", T0 + timedelta(days=7), url=url) == ["kim"]


def test_roles_and_groups(url):
    team(url)
    assert service.roles_of("lena", url=url) == {"ic", "legal"}
    assert service.join_group("kim", "child-safety", actor=ADMIN, url=url)
    assert not service.join_group("kim", "child-safety", actor=ADMIN, url=url)
    assert service.groups_of("kim", url=url) == {"child-safety"}
    assert service.groups_of("lena", url=url) == set()
    assert service.leave_group("kim", "child-safety", actor=ADMIN, url=url)
    assert service.groups_of("kim", url=url) == set()
    assert service.roles_of("nobody", url=url) == set()
    with pytest.raises(RosterError, match="already exists"):
        service.add_person("lena", display_name="Again", actor=ADMIN, url=url)
    with pytest.raises(RosterError, match="not a handle"):
        service.add_person("Bad Handle", display_name="x", actor=ADMIN, url=url)
    with pytest.raises(RosterError, match="no such person"):
        service.grant_role("ghost", "ic", actor=ADMIN, url=url)


ROSTER = """
people:
  - {handle: lena, name: Lena Ruiz, email: lena@example.org, roles: [ic, legal], groups: [child-safety]}
  - {handle: omar, name: Omar Haddad, roles: [ic]}
  - {handle: kim, name: Kim Park, roles: [ic, lers], active: false}
rotations:
  - {role: ic, name: primary, people: [lena, omar], shift: 7d, start: "2026-03-02T09:00:00", timezone: Europe/Berlin}
overrides:
  - {role: ic, person: omar, from: "2026-03-03T00:00:00+00:00", to: "2026-03-04T00:00:00+00:00", reason: swap}
"""


def test_yaml_import_is_idempotent_and_export_round_trips(url, tmp_path):
    data = yamlfile.load(ROSTER)
    assert yamlfile.import_roster(data, actor=ADMIN, url=url) > 0
    logged = len(journal.entries(url))
    assert yamlfile.import_roster(data, actor=ADMIN, url=url) == 0
    assert len(journal.entries(url)) == logged
    assert service.holders("ic", datetime(2026, 3, 3, 12, tzinfo=UTC), url=url) == ["omar"]
    assert service.holders("ic", datetime(2026, 3, 2, 8, 30, tzinfo=UTC), url=url) == ["lena"]
    exported = yamlfile.export_roster(url=url)
    # the file is the desired state for what it names: dropping a role revokes it
    data["people"][0]["roles"] = ["ic"]
    assert yamlfile.import_roster(data, actor=ADMIN, url=url) == 1
    assert service.roles_of("lena", url=url) == {"ic"}
    # export -> import into an empty database -> the same export
    other = f"sqlite:///{tmp_path / 'other.db'}"
    text = yamlfile.dump(exported)
    assert yamlfile.import_roster(yamlfile.load(text), actor=ADMIN, url=other) > 0
    assert yamlfile.export_roster(url=other) == exported
    assert yamlfile.import_roster(yamlfile.load(text), actor=ADMIN, url=other) == 0


def test_a_bad_roster_file_is_one_clear_error(url):
    with pytest.raises(RosterError, match=r"people\[0\]: name is missing"):
        yamlfile.import_roster(yamlfile.load("people: [{handle: x}]"), actor=ADMIN, url=url)
    with pytest.raises(RosterError, match="unknown section"):
        yamlfile.load("peeple: []")
    with pytest.raises(RosterError, match="not a duration"):
        yamlfile.import_roster(
            yamlfile.load("rotations: [{role: ic, name: a, people: [x], shift: soon, start: x}]"),
            actor=ADMIN, url=url,
        )  # fmt: skip


def test_every_change_is_in_the_audit_log_and_the_chain_verifies(url):
    team(url)
    service.join_group("lena", "child-safety", actor="root", url=url)
    service.add_rotation("ic", name="p", people=["lena"], shift=timedelta(hours=12), start=T0,
                         actor="root", url=url)  # fmt: skip
    service.remove_rotation("ic", "p", actor="root", url=url)
    service.deactivate_person("omar", actor="root", url=url)
    rows = journal.entries(url)
    assert [r.seq for r in rows] == list(range(len(rows)))
    assert all(r.action == "roster_changed" and r.workflow_id == "roster" for r in rows)
    details = [r.detail for r in rows]
    assert "person lena added (Lena)" in details
    assert "role legal granted to lena" in details
    assert "lena joined group child-safety" in details
    assert "rotation p of ic removed" in details
    assert "person omar deactivated" in details
    assert {r.actor for r in rows} == {ADMIN, "root"}
    assert all("\n" not in d for d in details)
    verdict = verify()
    assert verdict.ok and verdict.rows == len(rows)


@pytest.fixture
def cli(url, monkeypatch):
    """``starter.run`` with the roster's command groups mounted as starter.py will mount them."""
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
    app.add_typer(people_app, name="people")
    app.add_typer(roster_app, name="roster")
    app.add_typer(token_app, name="token")
    app.add_typer(oncall_app)
    monkeypatch.setattr(starter, "app", app)
    monkeypatch.setenv("CR_ACTOR", "chief")
    return starter.run


def test_commands_work_end_to_end(cli, capsys, tmp_path):
    assert cli(["people", "add", "lena", "--name", "Lena", "--role", "ic", "--group", "cs"]) == 0
    assert cli(["people", "add", "omar", "--name", "Omar", "--role", "ic"]) == 0
    args = ["roster", "rotation", "add", "ic", "--name", "primary", "--people", "lena,omar",
            "--shift", "7d", "--start", "2026-03-02T09:00:00+00:00"]  # fmt: skip
    assert cli(args) == 0
    assert cli(["roster", "override", "ic", "omar", "--from", "2026-03-03T00:00",
                "--to", "2026-03-04T00:00", "--reason", "swap"]) == 0  # fmt: skip
    capsys.readouterr()
    assert cli(["oncall", "ic", "--at", "2026-03-02T10:00:00+00:00"]) == 0
    assert capsys.readouterr().out.strip() == "lena"
    assert cli(["oncall", "ic", "--at", "2026-03-03T10:00:00+00:00", "--json"]) == 0
    assert '"omar"' in capsys.readouterr().out
    out_file = tmp_path / "roster.yaml"
    assert cli(["roster", "export", "--out", str(out_file)]) == 0
    assert cli(["roster", "import", str(out_file)]) == 0
    assert "0 change(s)" in capsys.readouterr().out
    assert cli(["roster", "rotation", "remove", "ic", "--name", "primary"]) == 0
    assert cli(["people", "deactivate", "omar"]) == 0
    assert cli(["people", "list", "--json"]) == 0
    assert '"active": false' in capsys.readouterr().out
    assert journal.entries()[0].actor == "chief"


@pytest.mark.parametrize(
    "args,code,expected",
    [
        (["people", "add", "lena", "--name", "Again"], 1, "person 'lena' already exists"),
        (["people", "deactivate", "ghost"], 1, "no such person 'ghost'"),
        (["people", "add", "x"], 2, "Missing option '--name'"),
        (["oncall", "legal"], 1, "no one holds legal"),
        (["oncall", "ic", "--at", "yesterday"], 2, "is not an ISO time"),
        (
            [
                "roster",
                "rotation",
                "add",
                "ic",
                "--name",
                "p",
                "--people",
                "lena",
                "--start",
                "2026-03-02T09:00",
                "--shift",
                "soon",
            ],
            2,
            "not a duration",
        ),  # fmt: skip
        (
            [
                "roster",
                "rotation",
                "add",
                "ic",
                "--name",
                "p",
                "--people",
                "ghost",
                "--start",
                "2026-03-02T09:00",
            ],
            1,
            "no such person 'ghost'",
        ),  # fmt: skip
        (
            [
                "roster",
                "rotation",
                "add",
                "ic",
                "--name",
                "p",
                "--people",
                "lena",
                "--start",
                "2026-03-02T09:00",
                "--timezone",
                "Mars/Base",
            ],
            1,
            "not an IANA time zone",
        ),  # fmt: skip
        (
            [
                "roster",
                "override",
                "legal",
                "lena",
                "--from",
                "2026-03-02T09:00",
                "--to",
                "2026-03-02T10:00",
                "--reason",
                "r",
            ],
            1,
            "lena does not hold role legal",
        ),  # fmt: skip
        (["roster", "import", "/no/such/roster.yaml"], 2, "does not exist"),
        (["roster", "rotation", "remove", "ic", "--name", "nope"], 1, "no rotation nope of ic"),
        (
            ["roster", "rotation", "add", "ic", "--name", "p", "--start", "2026-03-02"],
            2,
            "Missing option '--people'",
        ),  # fmt: skip
        (["token", "create", "ghost", "--name", "laptop"], 1, "no such person 'ghost'"),
        (["token", "create", "lena", "--name", "laptop", "--expires", "soon"], 2, "not a duration"),
        (["token", "revoke", "tok_nope"], 1, "no such token 'tok_nope'"),
    ],
)
def test_command_errors_are_one_line(cli, capsys, args, code, expected):
    assert cli(["people", "add", "lena", "--name", "Lena", "--role", "ic"]) == 0
    capsys.readouterr()
    assert cli(args) == code
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err, err
