"""No message can break an incident (issue 8, item 1): malformed signals and Updates on the real
dev server. A refused signal is recorded as ``message_refused`` with its reason and changes nothing
else; a malformed Update is rejected before it reaches history; the incident keeps answering and
closes normally, and no workflow task ever fails.
"""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import RawValue

from tests.engine_support import (
    commander,
    entries,
    has,
    incident_input,
    playbook,
    wait_for_status,
    wait_for_timeline,
)
from workflows.incident import IncidentWorkflow
from workflows.names import SIGNAL_APPROVE, SIGNAL_EVENT

STEPS = [{"id": "reply", "kind": "wait_for", "event": "reply"}]


def binary(data: bytes) -> RawValue:
    return RawValue(Payload(metadata={"encoding": b"binary/plain"}, data=data))


def broken_json() -> RawValue:
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=b"{not json"))


MALFORMED_SIGNALS: list[tuple[str, list[Any], str]] = [
    (SIGNAL_EVENT, [{"name": "a"}, {"name": "b"}], "takes exactly one argument"),
    (SIGNAL_EVENT, [], "takes exactly one argument"),
    (SIGNAL_EVENT, [None], "expected a JSON ExternalEvent, got NoneType"),
    (SIGNAL_EVENT, ["reply"], "not a valid ExternalEvent"),
    (SIGNAL_EVENT, [{"name": 5}], "not a valid ExternalEvent"),
    (SIGNAL_EVENT, [binary(b'{"name": "reply"}')], "expected a JSON ExternalEvent"),
    (SIGNAL_EVENT, [broken_json()], "not a valid ExternalEvent"),
    (SIGNAL_EVENT, [{"name": "reply", "data": {"note": "x" * 1_500_000}}], "at most 2000"),
    (SIGNAL_EVENT, [{"name": "reply", "data": {"bad key!": "x"}}], "not a valid ExternalEvent"),
    (SIGNAL_APPROVE, [{"step_id": "reply"}, {"step_id": "reply"}], "takes exactly one argument"),
    (SIGNAL_APPROVE, [{"step_id": "reply"}], "not a valid ApprovalRequest"),
    ("evnet", [{"name": "reply"}], "unknown signal 'evnet'"),
]


@pytest.mark.parametrize("name,args,reason", MALFORMED_SIGNALS)
async def test_a_malformed_signal_is_refused_recorded_and_changes_nothing(h, name, args, reason):
    handle = await h.open(incident_input(playbook(STEPS), fields={"jurisdiction": "us"}))
    before = await wait_for_status(handle, lambda s: s.active_steps)
    await handle.signal(name, args=args)
    timeline = await wait_for_timeline(handle, has("message_refused"))
    [refused] = entries(timeline, "message_refused")
    assert reason in refused.detail and refused.data["message"] == name[:64]
    assert len(refused.detail) <= 300
    after = await handle.query(IncidentWorkflow.status)
    assert after.fields == before.fields == {"jurisdiction": "us"}
    assert [s.step_id for s in after.active_steps] == ["reply"]  # the wait did not end
    # The incident still answers Updates and walks on.
    await handle.execute_update(IncidentWorkflow.acknowledge, commander())
    await handle.signal(SIGNAL_EVENT, {"name": "reply", "actor": "agency"})
    await wait_for_timeline(handle, has("step_completed", "reply"))
    await h.close(handle)
    await _no_failed_workflow_task(handle)


MALFORMED_UPDATES: list[tuple[str, list[Any]]] = [
    ("close", [{"actor": "a", "reason": "x"}, {"actor": "b"}]),
    ("close", []),
    ("close", [None]),
    ("approve", [binary(b"approve")]),
    ("note", [{"actor": "a", "reason": "x" * 5_000}]),
    ("escalate", [{"actor": "a", "severity": "sev9"}]),
]


@pytest.mark.parametrize("name,args", MALFORMED_UPDATES)
async def test_a_malformed_update_is_rejected_and_never_reaches_history(h, name, args):
    handle = await h.open(incident_input(playbook(STEPS)))
    await wait_for_status(handle, lambda s: s.active_steps)
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(name, args=args)
    status = await handle.query(IncidentWorkflow.status)
    assert status.status == "open"
    history = await handle.fetch_history()
    assert not [
        e for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]  # fmt: skip
    await h.close(handle)
    await _no_failed_workflow_task(handle)


async def _no_failed_workflow_task(handle: Any) -> None:
    history = await handle.fetch_history()
    failed = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    assert failed == [], failed[0].workflow_task_failed_event_attributes
