"""The records mirror of a lean incident (issue 11), on the dev server, with and without local calls.

Whatever carries them (activities, or local activities inside the workflow task), every timeline
entry reaches the records once, in order, before the incident waits on a person, even when several
requests open at once; a batch carries the fields the projection reads, not the whole state; and
the timeline still rebuilds from the history alone.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType

from audit.replay import rebuild
from tests.engine_support import (
    approval,
    incident_input,
    playbook,
    wait_for_status,
)
from workflows.incident import IncidentWorkflow
from workflows.names import RECORDS_ACTIVITY


def requests(*steps: str) -> list[dict[str, Any]]:
    """Approvals that open in the same workflow task, then an action."""
    branch = lambda step: {"name": step, "steps": [  # noqa: E731
        {"id": step, "kind": "approval", "roles": ["legal"]}]}  # fmt: skip
    return [
        {"id": "all", "kind": "parallel", "branches": [branch(step) for step in steps]},
        {"id": "send", "kind": "action", "activity": "case.disclose"},
    ]


def two_requests() -> list[dict[str, Any]]:
    return requests("one", "two")


def sent(h: Any) -> list[int]:
    """The seqs the records activity received, in the order it received them."""
    return [e["seq"] for batch in h.stand_ins.named(RECORDS_ACTIVITY) for e in batch["entries"]]


@pytest.mark.parametrize("local_calls", [True, False])
async def test_every_entry_reaches_the_records_once_before_anyone_decides(h, local_calls):
    handle = await h.open(incident_input(playbook(two_requests()), local_calls=local_calls))
    await wait_for_status(handle, lambda s: len(s.pending_approvals) == 2)
    timeline = await handle.query(IncidentWorkflow.timeline)
    # As activities (no local calls) the last batch may still be on its way when the query
    # answers: it must arrive, whole and once, with no decision sent yet.
    for _ in range(100):
        if len(sent(h)) >= len(timeline):
            break
        await asyncio.sleep(0.1)
    assert sent(h) == [e.seq for e in timeline]  # nothing missing, nothing twice
    for step in ("one", "two"):
        await handle.execute_update(IncidentWorkflow.approve, approval(step))
    await h.close(handle)
    timeline = await handle.query(IncidentWorkflow.timeline)
    assert sorted(set(sent(h))) == [e.seq for e in timeline]
    last = h.stand_ins.named(RECORDS_ACTIVITY)[-1]["snapshot"]
    assert (last["status"], last["timeline"], last["used_nonces"], last["roster_seen"]) == (
        "closed",
        [],
        {},
        {},
    )  # what the records read, not the timeline, nonces or roster
    assert set(last["approvals"]) == {"one", "two"}  # transparency rows read the decisions


async def test_with_local_calls_the_history_keeps_no_task_for_them_yet_rebuilds(h):
    handle = await h.open(incident_input(playbook(two_requests()), local_calls=True))
    await wait_for_status(handle, lambda s: len(s.pending_approvals) == 2)
    for step in ("one", "two"):
        await handle.execute_update(IncidentWorkflow.approve, approval(step))
    await h.close(handle)
    history = await handle.fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert scheduled == ["case.disclose"]  # records, roster, notifications: markers only
    assert not any(e.HasField("start_child_workflow_execution_initiated_event_attributes")
                   for e in history.events)  # fmt: skip
    case = rebuild(handle.id, [history])
    # Times aside: the query replays the closed run, and the SDK may stamp code that runs after
    # a local activity's result with another task's time on replay than it did live (by
    # milliseconds). The records and the history's markers hold the live times.
    replayed = await handle.query(IncidentWorkflow.timeline)
    assert [e.model_dump(exclude={"at"}) for e in case.timeline] == [
        e.model_dump(exclude={"at"}) for e in replayed
    ]


async def test_with_local_reads_only_the_rosters_answer_is_a_marker(h):
    """The front door's default on cached workers: the roster's answer, a read, is a local
    activity; records, notifications and the archive stay activities (settings.local_calls)."""
    inp = incident_input(playbook(two_requests()), local_calls=False, local_reads=True)
    handle = await h.open(inp)
    await wait_for_status(handle, lambda s: len(s.pending_approvals) == 2)
    for step in ("one", "two"):
        await handle.execute_update(IncidentWorkflow.approve, approval(step))
    await h.close(handle)
    history = await handle.fetch_history()
    scheduled = {
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    assert "roster.on_call" not in scheduled
    assert {RECORDS_ACTIVITY, "notify.slack", "case.disclose"} <= scheduled
    local = [
        e
        for e in history.events
        if e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]
    assert len(local) == 2  # one roster answer per request
    assert [e.seq for e in rebuild(handle.id, [history]).timeline] == sorted(set(sent(h)))


@pytest.mark.parametrize("local_calls", [True, False])
async def test_requests_waiting_on_the_same_batch_each_send_their_own_entries(h, local_calls):
    """Three requests open while a batch is on its way: two of them wait for it, and each then
    sends what is still unsent, one after the other (once, two sent the same entries and both
    counted them, so the entries after them never reached the records)."""
    h.stand_ins.hold(RECORDS_ACTIVITY)
    handle = await h.open(
        incident_input(playbook(requests("one", "two", "three")), local_calls=local_calls),
        task_timeout=timedelta(seconds=2),  # a held local activity keeps the task open
    )
    while not h.stand_ins.started.get(RECORDS_ACTIVITY):
        await asyncio.sleep(0.02)
    await asyncio.sleep(1)  # the other requests reach the records and wait
    h.stand_ins.release(RECORDS_ACTIVITY)
    await wait_for_status(handle, lambda s: len(s.pending_approvals) == 3)
    timeline = await handle.query(IncidentWorkflow.timeline)
    assert sent(h) == [e.seq for e in timeline]
