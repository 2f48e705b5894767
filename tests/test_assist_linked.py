"""Linked incidents on the dev server: an ``open_incident`` step opens another playbook's
incident through the front door (the real activity), idempotently; the child names its parent in
status, the parent lists the child and hears when it closes; closing a parent with an open child
asks for confirmation; a child outlives its parent."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Replayer

from activities.linked import open_linked
from connection import DATA_CONVERTER
from incidents.listing import list_incidents
from tests.engine_support import (
    commander,
    engine_harness,
    has,
    incident_input,
    one,
    playbook,
    refusal,
    wait_for_status,
    wait_for_timeline,
)
from workflows.incident import IncidentWorkflow
from workflows.linked import LinkedState
from workflows.models import ActionRequest
from workflows.names import SIGNAL_LINKED, linked_incident_id

PRESERVE = {"requester_agency": "Springfield PD", "requester_email": "det.12@police.gov",
            "account_id": "acct-1234567", "jurisdiction": ""}  # fmt: skip
STEPS = [
    {"id": "preserve", "kind": "open_incident", "playbook": "preservation",
     "summary": "Preserve what {{ incident_id }} disclosed", "fields": PRESERVE},
    {"id": "wait", "kind": "wait_for", "event": "done"},
]  # fmt: skip


@pytest.fixture
async def hl(dev_env):
    async with engine_harness(dev_env, activities=[open_linked]) as harness:
        yield harness


async def _parent(hl: Any) -> tuple[Any, Any, str]:
    inp = incident_input(playbook(STEPS), incident_id=f"PA-{uuid.uuid4().hex[:6]}")
    parent = await hl.open(inp)
    tl = await wait_for_timeline(parent, has("linked_opened"))
    child_id = linked_incident_id(inp.incident_id, "preserve")
    child = hl.follow(hl.client.get_workflow_handle(f"incident-{child_id}"))
    assert one(tl, "linked_opened").data == {"child": child_id, "playbook": "preservation",
                                             "status": "open"}  # fmt: skip
    return parent, child, child_id


async def test_the_child_is_a_normal_incident_that_names_its_parent(hl):
    parent, child, child_id = await _parent(hl)
    status = await child.query(IncidentWorkflow.status)
    assert status.playbook == "preservation" and status.parent_incident_id == parent.id[9:]
    assert status.summary == f"Preserve what {parent.id[9:]} disclosed"
    assert status.fields["account_id"] == "acct-1234567" and "jurisdiction" not in status.fields
    assert (await parent.query(IncidentWorkflow.status)).linked == {child_id: "open"}
    # A second attempt (a retry, a replayed step) finds the child instead of opening another.
    again = ActionRequest(incident_id=parent.id[9:], step_id="preserve",
                          operation="incidents.open_linked", idempotency_key="preserve",
                          args={"child_id": child_id, "playbook": "preservation",
                                "summary": "again", "fields": PRESERVE})  # fmt: skip
    result = await ActivityEnvironment(client=hl.client).run(open_linked, again)
    assert result.data == {"child_id": child_id, "created": "no", "status": "open"}
    # The child's first entry names its parent (the records and the export carry it), and the
    # list shows whose child it is.
    opened = one(await child.query(IncidentWorkflow.timeline), "opened")
    assert opened.data["parent"] == parent.id[9:]
    for _ in range(250):  # visibility is eventually consistent
        rows = await list_incidents(hl.client, f"WorkflowId = '{child.id}'")
        if rows:
            break
        await asyncio.sleep(0.02)
    assert rows[0].parent == parent.id[9:] and rows[0].as_json()["parent"] == parent.id[9:]


async def test_closing_a_parent_with_an_open_child_asks_first_and_hears_the_child(hl):
    parent, child, child_id = await _parent(hl)
    close = commander(reason="done")
    assert await refusal(parent.execute_update(IncidentWorkflow.close, close)) == (
        "open_linked_incidents"
    )
    await child.execute_update(IncidentWorkflow.close, commander(reason="preserved"))
    tl = await wait_for_timeline(parent, has("linked_state"))
    entry = one(tl, "linked_state")
    assert entry.detail == f"linked incident {child_id} is closed"
    assert entry.actor == f"incident:{child_id}"
    await wait_for_status(parent, lambda s: s.linked == {child_id: "closed"})
    await parent.execute_update(IncidentWorkflow.close, close)  # nothing open: no question


async def test_a_child_outlives_its_parent(hl):
    parent, child, child_id = await _parent(hl)
    await parent.execute_update(IncidentWorkflow.close, commander(reason="done", confirm=True))
    await parent.result()
    assert (await child.query(IncidentWorkflow.status)).status == "open"
    await child.execute_update(IncidentWorkflow.close, commander(reason="preserved"))
    await child.result()
    history = [e async for e in child.fetch_history_events()]
    assert any(e.HasField("signal_external_workflow_execution_failed_event_attributes")
               for e in history)  # the parent was gone; the child closed all the same  # fmt: skip
    # Both histories replay with today's code (the new step kind, signal and patch included).
    replayer = Replayer(workflows=[IncidentWorkflow], data_converter=DATA_CONVERTER)
    for wf in (parent, child):
        await replayer.replay_workflow(await wf.fetch_history())


async def test_news_of_an_incident_never_opened_is_refused_and_recorded(hl):
    parent, _, _ = await _parent(hl)
    from datetime import UTC, datetime

    await parent.signal(SIGNAL_LINKED, LinkedState(child_id="someone-else", status="closed",
                                                   at=datetime.now(UTC)))  # fmt: skip
    tl = await wait_for_timeline(parent, has("message_refused"))
    assert one(tl, "message_refused").data["code"] == "unknown_linked_incident"
    assert not [e for e in tl if e.kind == "linked_state"]


def test_lint_the_open_incident_step(tmp_path):
    from playbooks.loader import lint_file, list_playbooks

    head = "name: demo\nversion: 1\ntitle: Demo\nfields:\n  who: {}\nsteps:\n"
    ok = ("  - id: child\n    kind: open_incident\n    playbook: preservation\n"
          "    fields: {requester_agency: '{{ who }}'}\n")  # fmt: skip
    (tmp_path / "demo.yaml").write_text(head + ok)
    assert lint_file(tmp_path / "demo.yaml") == []
    (tmp_path / "demo.yaml").write_text(head + ok.replace("preservation", "demo"))
    [error] = lint_file(tmp_path / "demo.yaml")
    assert "cannot open one of its own playbook" in str(error)
    (tmp_path / "demo.yaml").write_text(head + ok.replace("{{ who }}", "{{ nobody }}"))
    [error] = lint_file(tmp_path / "demo.yaml")
    assert "nobody" in str(error) and "not a declared field" in str(error)
    # Every shipped open_incident step names a shipped playbook.
    shipped = {lp.playbook.name: lp.playbook for lp in list_playbooks()}
    opened = [s.playbook for pb in shipped.values() for s in pb.iter_steps()  # type: ignore[union-attr]
              if s.kind == "open_incident"]  # fmt: skip
    assert opened == ["preservation"] and set(opened) <= set(shipped)


async def test_a_server_without_the_parent_search_attribute_still_opens_the_child():
    """A cluster whose operator has not added IncidentParent yet: the child opens without it
    (the link lives on in its input, status and timeline)."""
    from types import SimpleNamespace

    from temporalio.service import RPCError, RPCStatusCode

    from incidents.service import start_incident
    from workflows.names import SA_PARENT

    calls: list[Any] = []

    class Client:
        async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
            calls.append(kwargs["search_attributes"])
            if any(p.key.name == SA_PARENT.name for p in kwargs["search_attributes"]):
                raise RPCError("Namespace default has no mapping defined for search attribute "
                               "IncidentParent", RPCStatusCode.INVALID_ARGUMENT, b"")  # fmt: skip
            return SimpleNamespace(result_run_id="run-1")

    inp = incident_input(playbook(STEPS), incident_id=f"PA-{uuid.uuid4().hex[:6]}--x",
                         parent_incident_id="PA-1")  # fmt: skip
    result = await start_incident(Client(), inp, "q")  # type: ignore[arg-type]
    assert result.created and len(calls) == 2
    assert {p.key.name for p in calls[1]} == {"IncidentSeverity", "IncidentPlaybook",
                                              "IncidentStatus", "SlaBreached"}  # fmt: skip
