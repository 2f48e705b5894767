"""The integration scenario: a playbook that touches every vendor, its expected traffic, the
faults to inject, how to drive one incident, and the tally of what the vendors received.

Shared by ``bench/integrations.py`` (many incidents, measured) and ``tests/test_integrations_e2e.py``
(one incident, proved), so the test and the bench count the same things the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from activities.salesforce import record_marker
from incidents.service import build_input, start_incident
from settings import Settings
from worker import build_workers
from workflows.incident import IncidentWorkflow
from workflows.models import CommanderRequest, ExternalEvent, TimelineEntry
from workflows.names import SIGNAL_EVENT

PLAYBOOK = "integration-e2e"
# Sub-second retry intervals would be the natural choice here, but the playbook travels to the
# workflow as JSON and ``playbooks.schema.format_duration`` writes whole seconds only (0.05s
# arrives as 0s, which the server replaces with its 1 s default); so say 1 s and mean it.
PLAYBOOK_YAML = """\
name: integration-e2e
version: 1
title: Integration end-to-end scenario
description: One Case, three comments, a Slack post, two SLA breaches that page and notify.
default_severity: sev1
channel: "#tns-e2e"
escalation_policy: tns-e2e
events:
  contained: {description: The commander says the incident is contained}
sla:
  acknowledge:
    due: 1s
    on_breach: [{page: lers-secondary}, {notify: "#tns-managers"}]
steps:
  - id: open-case
    kind: action
    owner: cr
    activity: salesforce.upsert_case
    args: {subject: "{{ summary }}", description: "Scenario {{ incident_id }}", priority: High}
    retry: &retry {initial_interval: 1s, backoff: 1, max_interval: 1s, timeout: 5m}
  - id: comment-triage
    kind: action
    owner: cr
    activity: salesforce.add_comment
    args: {body: "1/3 triage started for {{ incident_id }}"}
    retry: *retry
  - id: notify-team
    kind: action
    owner: cr
    activity: notify.slack
    args: {text: "{{ incident_id }}: case opened, triage started"}
    retry: *retry
  - id: comment-evidence
    kind: action
    owner: cr
    activity: salesforce.add_comment
    args: {body: "2/3 evidence preserved for {{ incident_id }}"}
    retry: *retry
  - id: containment
    kind: wait_for
    owner: cr
    event: contained
    sla:
      due: 1s
      on_breach: [{page: tns-leadership}]
  - id: comment-contained
    kind: action
    owner: cr
    activity: salesforce.add_comment
    args: {body: "3/3 contained; closing {{ incident_id }}"}
    retry: *retry
  - id: close-case
    kind: action
    owner: cr
    activity: salesforce.update_case
    args: {status: Closed}
    retry: *retry
"""
COMMENT_STEPS = ("comment-triage", "comment-evidence", "comment-contained")
PAGED_POLICIES = ("lers-secondary", "tns-leadership")
ESCALATIONS = 3  # two on the acknowledge clock, one on the containment step
WRITE_ROUTES = ("salesforce.create", "salesforce.upsert", "slack.post_message", "pagerduty.enqueue")


def write_playbook(directory: Path) -> Path:
    """The scenario playbook as a YAML file (loaded and linted by ``playbooks.loader``)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{PLAYBOOK}.yaml"
    path.write_text(PLAYBOOK_YAML)
    return path


def expected_comments(incident_id: str) -> list[str]:
    texts = (
        f"1/3 triage started for {incident_id}",
        f"2/3 evidence preserved for {incident_id}",
        f"3/3 contained; closing {incident_id}",
    )
    return [
        f"{text}\n\n{record_marker(f'{incident_id}:{step}')}"
        for text, step in zip(texts, COMMENT_STEPS, strict=True)
    ]


def expected_messages(incident_id: str, severity: str = "sev1") -> list[str]:
    label = f"[{severity.upper()}] {PLAYBOOK} {incident_id}"
    return [
        f"{incident_id}: case opened, triage started",
        f"{label}: SLA breached on incident.acknowledge",
        f"{label}: closed; resolving its pages ({', '.join(PAGED_POLICIES)})",
    ]


def fault_rules(*, rate: float = 0.30, drops: dict[str, int] | None = None, seed: int = 7,
                retry_after: float = 0.05) -> dict[str, Any]:  # fmt: skip
    """``POST /_sandbox/faults`` body: ``rate`` of all vendor requests fail, half as 503, half as
    429/throttle (Retry-After ``retry_after``); ``drops`` commits then drops that many responses
    per route. Rules are drawn in order, so the throttle rate is scaled to make the sum ``rate``."""
    half = rate / 2
    rules: list[dict[str, Any]] = [
        {"route": route, "kind": "drop_after_commit", "times": times}
        for route, times in (drops or {}).items()
    ]
    rules.append({"route": "*", "kind": "error", "status": 503, "rate": half})
    rules.append(
        {"route": "*", "kind": "throttle", "rate": half / (1 - half), "retry_after": retry_after}
    )
    return {"replace": True, "seed": seed, "rules": rules}


# --- Driving an incident ---------------------------------------------------------------------


async def poll(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Await ``check()`` (sync or async) until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


async def timeline(handle: WorkflowHandle[Any, Any]) -> list[TimelineEntry]:
    return await handle.query(IncidentWorkflow.timeline)  # type: ignore[no-any-return]


async def open_scenario(
    client: Client, settings: Settings, playbooks_dir: Path, incident_id: str
) -> WorkflowHandle[Any, Any]:
    """Open one scenario incident the way `incident open` does (snapshot, hash, search attrs)."""
    inp = build_input(
        playbook=PLAYBOOK, severity=None, summary=f"Integration scenario {incident_id}",
        fields={}, incident_id=incident_id, opened_by="bench", settings=settings,
        playbooks_dir=playbooks_dir,
    )  # fmt: skip
    opened = await start_incident(client, inp, settings.task_queue)
    return client.get_workflow_handle(opened.workflow_id)


async def drive(
    handle: WorkflowHandle[Any, Any],
    timeout: float = 120,
    before_containment: Callable[[], Awaitable[None]] | None = None,
) -> list[TimelineEntry]:
    """Wait for every escalation, report containment, wait for the playbook, close; the timeline.

    ``before_containment`` runs while the incident waits for the outside event (tests use it to
    expire the Salesforce token between two groups of Salesforce steps)."""

    async def escalated() -> bool:
        return sum(e.kind == "escalation" for e in await timeline(handle)) >= ESCALATIONS

    await poll(escalated, timeout, f"{handle.id}: {ESCALATIONS} escalations")
    if before_containment is not None:
        await before_containment()
    await handle.signal(SIGNAL_EVENT, ExternalEvent(name="contained", actor="bench"))

    async def complete() -> bool:
        status = await handle.query(IncidentWorkflow.status)
        return status.status == "playbook_complete"

    await poll(complete, timeout, f"{handle.id}: playbook complete")

    # Close only once the workflow is idle: no activity in flight and no workflow task pending
    # (the last timeline flush has landed *and* been processed). A close that arrives in the same
    # workflow task as a ``records.append`` result wedges the incident: IncidentWorkflow._stop_tasks
    # cancels the flusher just after it scheduled its next flush, and that task never finishes
    # (the workflow stays open with "closed" in its timeline). Engine bug, reported to its owner.
    async def idle() -> bool:
        raw = (await handle.describe()).raw_description
        return not raw.pending_activities and not raw.HasField("pending_workflow_task")

    await poll(idle, timeout, f"{handle.id}: no activity in flight")
    await handle.execute_update(
        IncidentWorkflow.close, CommanderRequest(actor="bench", role="ic", reason="contained")
    )
    await asyncio.wait_for(handle.result(), timeout)
    return await timeline(handle)


async def activity_attempts(handle: WorkflowHandle[Any, Any]) -> Counter[str]:
    """Attempts per activity type, from history (a retried activity's start event counts all)."""
    types: dict[int, str] = {}
    attempts: Counter[str] = Counter()
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            types[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name
            )
        elif event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            attempts[types[started.scheduled_event_id]] += started.attempt
    return attempts


@contextlib.asynccontextmanager
async def running_workers(client: Client, settings: Settings) -> AsyncIterator[None]:
    """The real workers (main + Salesforce queue) for ``settings.task_queue``."""
    async with contextlib.AsyncExitStack() as stack:
        for worker in build_workers(client, settings):
            await stack.enter_async_context(worker)
        yield


# --- Counting what the vendors received ------------------------------------------------------


@dataclass
class IncidentTally:
    incident_id: str
    cases: int = 0
    comments: list[str] = field(default_factory=list)  # bodies, in creation order
    alerts: dict[str, int] = field(default_factory=dict)  # dedup key -> times opened
    pagerduty_events: int = 0
    unresolved: list[str] = field(default_factory=list)  # alerts still open after the close
    messages: list[str] = field(default_factory=list)  # texts, in posting order

    @property
    def duplicates(self) -> int:
        extra_cases = max(self.cases - 1, 0)
        extra_comments = sum(n - 1 for n in Counter(self.comments).values())
        extra_pages = sum(n - 1 for n in self.alerts.values())
        extra_messages = sum(n - 1 for n in Counter(self.messages).values())
        return extra_cases + extra_comments + extra_pages + extra_messages

    def problems(self) -> list[str]:
        """Everything that differs from the scenario's one-of-each promise."""
        iid, out = self.incident_id, []
        if self.cases != 1:
            out.append(f"{iid}: {self.cases} Cases")
        if self.comments != expected_comments(iid):
            out.append(f"{iid}: comments {self.comments!r}")
        wanted_alerts = {f"{iid}:{policy}": 1 for policy in PAGED_POLICIES}
        if self.alerts != wanted_alerts:
            out.append(f"{iid}: alerts {self.alerts!r}")
        if self.unresolved:
            out.append(f"{iid}: alerts still open after the close: {self.unresolved!r}")
        if Counter(self.messages) != Counter(expected_messages(iid)):
            out.append(f"{iid}: Slack messages {self.messages!r}")
        return out


def tally(snapshot: dict[str, Any], incident_ids: list[str]) -> dict[str, IncidentTally]:
    """Per incident: what the emulators hold (``GET /_sandbox/state``)."""
    records = snapshot["salesforce"]["records"]
    cases = list(records.get("Case", {}).values())
    comments = list(records.get("CaseComment", {}).values())  # insertion = creation order
    out = {iid: IncidentTally(iid) for iid in incident_ids}
    case_owner: dict[str, str] = {}
    for case in cases:
        iid = case.get("Incident_Id__c")
        if iid in out:
            out[iid].cases += 1
            case_owner[case["Id"]] = iid
    for comment in comments:
        iid = case_owner.get(comment.get("ParentId", ""))
        if iid is not None:
            out[iid].comments.append(comment["CommentBody"])
    for alert in snapshot["pagerduty"]["alerts"]:
        iid = str(alert["dedup_key"]).rpartition(":")[0]
        if iid in out:
            out[iid].alerts[alert["dedup_key"]] = alert["opened"]
            if alert.get("status") != "resolved":
                out[iid].unresolved.append(str(alert["dedup_key"]))
    for event in snapshot["pagerduty"]["events"]:
        iid = str(event["dedup_key"]).rpartition(":")[0]
        if iid in out:
            out[iid].pagerduty_events += 1
    for message in snapshot["slack"]["messages"]:
        text = str(message.get("text", ""))
        for iid in out:  # every scenario text names its incident id
            if iid in text:
                out[iid].messages.append(text)
                break
    return out
