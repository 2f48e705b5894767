"""An incident id is unique forever (issue 8, item 5): opening a closed incident's id is refused
with when it closed and how to reopen; `reopen` continues the same incident in a new run, recorded
with who and why, its timeline numbered on from where it closed.
"""

from __future__ import annotations

import pytest

from incidents.service import IncidentClosed, InvalidRequest, reopen_incident, start_incident
from tests.engine_support import (
    commander,
    entries,
    full_timeline,
    has,
    incident_input,
    one,
    playbook,
    wait_for_status,
    wait_for_timeline,
)
from workflows.incident import IncidentWorkflow
from workflows.models import ExternalEvent, ReopenRequest
from workflows.names import SIGNAL_EVENT, incident_id_of

STEPS = [
    {"id": "reply", "kind": "wait_for", "event": "reply"},
    {"id": "wrap-up", "kind": "wait_for", "event": "wrapped"},
]


async def test_a_closed_id_is_refused_and_reopen_continues_the_same_incident(h):
    inp = incident_input(playbook(STEPS))
    opened = await start_incident(h.client, inp, h.task_queue)
    assert opened.created
    handle = h.client.get_workflow_handle(opened.workflow_id)
    h.handles.append(handle)
    again = await start_incident(h.client, inp, h.task_queue)
    assert not again.created and again.run_id == opened.run_id  # still open: the same one
    await handle.execute_update(IncidentWorkflow.acknowledge, commander("casey"))
    await handle.signal(SIGNAL_EVENT, ExternalEvent(name="reply"))
    await wait_for_timeline(handle, has("step_started", "wrap-up"))
    await h.close(handle, "casey", reason="handled")

    with pytest.raises(IncidentClosed) as refused:
        await start_incident(h.client, inp, h.task_queue)
    message = str(refused.value)
    assert "was closed at" in message and f"incident reopen {inp.incident_id}" in message
    with pytest.raises(InvalidRequest, match="not in Temporal"):
        await reopen_incident(
            h.client, "no-such-incident", reopen=ReopenRequest(actor="x", reason="y"),
            task_queue=h.task_queue,
        )  # fmt: skip

    reopened = await reopen_incident(
        h.client, inp.incident_id, reopen=ReopenRequest(actor="robin", reason="new evidence"),
        task_queue=h.task_queue,
    )  # fmt: skip
    assert reopened.run_id != opened.run_id
    status = await wait_for_status(handle, lambda s: s.status == "acknowledged")
    assert status.closed_at is None and [s.step_id for s in status.active_steps] == ["wrap-up"]
    timeline = await wait_for_timeline(handle, has("reopened"))
    entry = one(timeline, "reopened")
    assert (entry.actor, entry.detail) == ("robin", "new evidence")
    # The step the close cancelled runs again; the one that completed does not.
    await wait_for_timeline(handle, has("step_started", "wrap-up", 2))
    with pytest.raises(InvalidRequest, match="is open"):
        await reopen_incident(
            h.client, inp.incident_id, reopen=ReopenRequest(actor="x", reason="y"),
            task_queue=h.task_queue,
        )  # fmt: skip
    await h.close(handle, "robin", reason="handled again")
    whole = await full_timeline(h, handle)
    assert [e.seq for e in whole] == list(range(1, len(whole) + 1))
    assert [e.kind for e in whole].count("closed") == 2
    assert [e.kind for e in whole].count("opened") == 1
    assert len(entries(whole, "step_started", "reply")) == 1  # completed: not run again


async def test_status_of_an_incident_terminated_out_of_band_says_so(h):
    from incidents.actions import IncidentEnded, status

    handle = await h.open(incident_input(playbook(STEPS)))
    await wait_for_status(handle, lambda s: s.active_steps)
    await handle.terminate(reason="opened twice by mistake")
    with pytest.raises(IncidentEnded, match="terminated without being closed"):
        await status(h.client, incident_id_of(handle.id) or "")
