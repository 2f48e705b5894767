"""What-if plans: every shipped playbook played on the time-skipping test server with every
decision taken one second before its deadline; the plan names when each step starts and ends,
each clock's warning and due instants, what would fire at a breach, and the statutory clocks.
No sleeps: the server skips the time (a year-long preservation timer passes in milliseconds)."""

from __future__ import annotations

import asyncio

import pytest

import starter
from assist.plan import human, render
from playbooks.loader import list_playbooks
from stack.plan import plans

SHIPPED = list_playbooks()


@pytest.fixture(scope="module")
def planned():
    return {p.playbook: p for p in asyncio.run(asyncio.wait_for(plans(SHIPPED, {}), 300))}


def test_every_shipped_playbook_has_a_plan(planned):
    assert set(planned) == {lp.playbook.name for lp in SHIPPED}
    for name, p in planned.items():
        assert p.end == "playbook_complete", name
        assert p.steps and all(s["started"] is not None for s in p.steps), name
        ack = next((c for c in p.clocks if c.name == "incident.acknowledge"), None)
        if ack is not None:  # acknowledged one second before it was due
            assert ack.breached is None and ack.due - 2 <= ack.stopped <= ack.due, (name, ack)
        for c in p.clocks:
            assert c.due is not None and c.due >= c.started, (name, c)
        assert f"what-if plan: {name} v" in render(p)
        assert p.wall_seconds < 60


def test_the_statutory_clocks_and_their_latest_moment(planned):
    legal = {name: {c.name: c.due for c in p.clocks if c.legal} for name, p in planned.items()}
    assert legal["child-safety"] == {"cybertip-report": 86400}  # 24 h from the report's start
    assert legal["product-recall"] == {"rfr-report": 86400}
    # 48 h (internal, of GDPR's 72) from ``aware_at``: the plan's placeholder is the opening
    # second, so the clock may start up to a second before the incident does.
    assert 172799 <= legal["account-takeover"]["breach-notification"] <= 172800
    assert "statutory clocks, the latest moment each allows:\n- cybertip-report: 86400 (1d)" in (
        render(planned["child-safety"])
    )


def test_decisions_at_their_deadline_and_what_an_infeasible_clock_fires(planned):
    ed = {s["step"]: s for s in planned["emergency-disclosure"].steps}
    assert ed["legal-determination"]["finished"] == 3599  # the hour from the request, minus 1 s
    assert ed["notice-delay"]["finished"] - ed["notice-delay"]["started"] == 30 * 86400
    # Notices are due 24 h from the recall, but the steps before them may take longer: the plan
    # shows the breach (the engine races a clock from its step's start: it is breached then)
    # and the escalations it fires.
    recall = planned["product-recall"]
    notices = next(c for c in recall.clocks if c.name == "send-notices")
    started = next(s["started"] for s in recall.steps if s["step"] == "send-notices")
    assert notices.due == 86400 and notices.breached == started > notices.due
    assert notices.escalations and "cr-lead" in notices.escalations[0]
    preservation = {t["step"]: t["fires"] for t in planned["preservation"].timers}
    assert preservation["preservation-expiry"] >= 90 * 86400


def test_human_durations():
    assert human(93784) == "1d 2h 3m 4s" and human(0) == "0s" and human(None) == "-"


def test_plan_command_errors_are_one_line(capsys):
    assert starter.run(["plan", "no-such-playbook"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown playbook 'no-such-playbook'" in err
    assert starter.run(["plan", "preservation", "--severity", "sev9"]) == 2
    assert "--severity" in capsys.readouterr().err
