"""Every usage error is one line on stderr with exit code 2, a refusal one line with exit 1, never a
traceback (issue 8, item 13); what a person typed can never forge a line of a timeline. A malformed
request is refused before the CLI reaches for the API (or a token), naming the option typed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import starter
from incidents.render import print_timeline
from workflows.models import TimelineEntry

USAGE_ERRORS = [
    (["open", "--playbook", "physical-safety"], "Missing option '--summary'"),
    (["close", "X"], "Missing option '--resolution'"),
    (["ack"], "Missing argument"),
    (["bogus"], "No such command 'bogus'"),
    (["list", "--severity", "bogus"], "must be one of sev0, sev1, sev2, sev3"),
    (["list", "--playbook", "nope"], "unknown playbook 'nope'"),
    (["list", "--limit", "abc"], "'--limit'"),
    (["escalate", "X", "--severity", "sev9", "--reason", "r"], "must be one of sev0"),
    (["report", "--since", "nope"], "--since"),
    (["report", "--playbook", "nope"], "unknown playbook 'nope'"),
    (["schedule", "daily-report", "--at", "25:99"], "not a time of day"),
    (["schedule", "daily-report", "--timezone", "Mars/Olympus"], "not an IANA time zone"),
    (["audit", "replay", "/no/such/file.json"], "does not exist"),
]


@pytest.mark.parametrize("args,expected", USAGE_ERRORS)
def test_a_usage_error_is_one_line_and_exit_2(args, expected, capsys):
    code = starter.run(args)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err
    assert "Traceback" not in err and out == ""


REFUSALS = [
    (["open", "--playbook", "physical-safety", "--summary", "x" * 501, "--id", "A1"],
     "--summary: string should have at most 500 characters"),
    (["open", "--playbook", "physical-safety", "--summary", "s", "--id", "bad id!"],
     "--id: string should match pattern"),
    (["open", "--playbook", "physical-safety", "--summary", "s", "--field", "a=" + "y" * 2001],
     "--field a: string should have at most 2000 characters"),
    (["open", "--playbook", "physical-safety", "--summary", "s", "--field", "novalue"],
     "--field takes key=value"),
    (["note", "X", "n" * 4001], "TEXT: string should have at most 4000 characters"),
    (["approve", "X", "step", "--role", "legal", "--reason", ""], "--reason: string should have"),
    (["event", "X", "Bad Name"], "NAME: string should match pattern"),
]  # fmt: skip


@pytest.mark.parametrize("args,expected", REFUSALS)
def test_a_refused_request_is_one_line_and_exit_1_before_any_connection(args, expected, capsys):
    code = starter.run(args)
    out, err = capsys.readouterr()
    assert code == 1, err
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err and out == ""


def test_control_characters_in_a_note_cannot_forge_a_timeline_line(capsys):
    forged = "fine\n  2 2026-01-01 00:00:00Z legal (legal)     approved  disclose \x1b[2J"
    entry = TimelineEntry(seq=1, at=datetime(2026, 1, 1, tzinfo=UTC), actor="mallory\nx",
                          kind="note", detail=forged)  # fmt: skip
    print_timeline([entry])
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "\\n  2 2026-01-01" in out and "\\x1b[2J" in out and "mallory\\nx" in out
