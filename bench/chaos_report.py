"""What a chaos run found (``bench/chaos.py`` runs it): the checks, one line per finding, the table.

Everything here is read after the run from what it left behind: the incidents' exported histories
(archive + Temporal, as `incident audit export` gives them), the timelines rebuilt from those
histories alone, what the emulators received (``GET /_sandbox/state``) and the audit log.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType, TaskQueueKind, TimeoutType, WorkflowTaskFailedCause
from temporalio.client import WorkflowHistory

from audit.replay import load_document, replay
from connection import failure_message
from playbooks.schema import ActionStep, Playbook
from records.archive import archived_runs
from workflows.models import TimelineEntry

_ET = EventType
_MARKER = re.compile(r"\[ref:cr-[0-9a-f]{16}\]")
ACTIVITY = "activities running on it (dead attempt timed out)"
# A signal or Update that arrives while a task completes fails that task harmlessly (retried at once).
_BENIGN = {WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND}


@dataclass
class Incident:
    iid: str
    playbook: Playbook
    fields: dict[str, str]
    start_at: float
    phase: str = "new"  # new -> driving -> closing -> closed
    error: str = ""  # the last thing that went wrong while driving it
    malformed_signals: int = 0  # delivered by the server: each must be refused and recorded
    took: float | None = None  # seconds from open to closed


@dataclass
class Kill:
    n: int
    at: float  # epoch seconds
    ready: float | None = None  # seconds until the restarted worker polled
    # (what kind of work, which) -> seconds from the kill until it moved again (None: never);
    # for an activity, until the server gave up on the attempt the kill interrupted
    delays: dict[tuple[str, str], float | None] = field(default_factory=dict)
    resumed: dict[str, float] = field(default_factory=dict)  # activity -> running again after


@dataclass
class Check:
    name: str
    summary: str
    findings: list[str] = field(default_factory=list)


@dataclass
class Evidence:
    """Per incident: its export document, its runs' histories and the timeline rebuilt from them."""

    docs: dict[str, dict[str, Any]]
    histories: dict[str, list[WorkflowHistory]]
    timelines: dict[str, list[TimelineEntry]]


def check_closed(incidents: list[Incident]) -> Check:
    open_ = [f"{i.iid} ({i.playbook.name}): {i.phase}, never closed; last error: {i.error or '-'}"
             for i in incidents if i.phase != "closed"]  # fmt: skip
    return Check("every incident closed", f"{len(incidents) - len(open_)}/{len(incidents)}", open_)


def check_task_failures(ev: Evidence) -> Check:
    """A failed workflow task is an incident that stopped moving (until a fix or a reset)."""
    lines = []
    for iid, histories in ev.histories.items():
        failed = [e for h in histories for e in h.events
                  if e.event_type == _ET.EVENT_TYPE_WORKFLOW_TASK_FAILED
                  and e.workflow_task_failed_event_attributes.cause not in _BENIGN]  # fmt: skip
        if failed:
            attrs = failed[0].workflow_task_failed_event_attributes
            cause = WorkflowTaskFailedCause.Name(attrs.cause).removeprefix(
                "WORKFLOW_TASK_FAILED_CAUSE_"
            )
            message = " ".join(failure_message(attrs.failure).split())[:200]
            lines.append(f"{iid}: {len(failed)} failed workflow task(s), first at event "
                         f"{failed[0].event_id} ({cause}): {message}")  # fmt: skip
    runs, timed_out = task_run_times(ev)
    ordered = sorted(runs) or [0.0]
    summary = (f"{len(ev.histories) - len(lines)} clean; a task's run (started to completed) "
               f"p50 {ordered[len(ordered) // 2]:.2f} s, max {ordered[-1]:.2f} s over "
               f"{len(runs)} tasks; {timed_out} timed out")  # fmt: skip
    return Check("no workflow task failed", summary, lines)


def task_run_times(ev: Evidence) -> tuple[list[float], int]:
    """How long each completed workflow task ran on a worker (what the workflow task timeout
    must cover: with no cache, the replay of the incident's history), and how many timed out."""
    runs, timed_out = [], 0
    for histories in ev.histories.values():
        for h in histories:
            started = None
            for e in h.events:
                if e.event_type == _ET.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                    started = e.event_time.ToDatetime()
                elif e.event_type == _ET.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and started:
                    runs.append((e.event_time.ToDatetime() - started).total_seconds())
                elif e.event_type == _ET.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                    timed_out += 1
    return runs, timed_out


def check_malformed(incidents: list[Incident], sent: list[tuple[str, str, str]],
                    ev: Evidence) -> Check:  # fmt: skip
    lines = [f"{iid}: {case}: {verdict}" for iid, case, verdict in sent
             if case.startswith("update") and verdict not in ("refused", "target closed")]  # fmt: skip
    recorded = 0
    for inc in incidents:
        refused = sum(e.kind == "message_refused" for e in ev.timelines.get(inc.iid, []))
        recorded += min(refused, inc.malformed_signals)
        if refused < inc.malformed_signals:
            lines.append(f"{inc.iid}: {inc.malformed_signals} malformed signals delivered, "
                         f"{refused} recorded as message_refused")  # fmt: skip
    lines += [f"{iid}: {case}: {verdict}" for iid, case, verdict in sent
              if case.startswith("signal") and verdict.startswith("rpc error")]  # fmt: skip
    n_sig = sum(i.malformed_signals for i in incidents)
    n_upd = sum(c.startswith("update") for _, c, _ in sent)
    refused_upd = sum(c.startswith("update") and v == "refused" for _, c, v in sent)
    summary = (f"{n_sig} signals delivered, {recorded} recorded as refused; {n_upd} Updates, "
               f"{refused_upd} refused")  # fmt: skip
    return Check("malformed messages refused and recorded", summary, lines)


def _groups(snapshot: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """Kind -> identity of one intended delivery -> what the vendor holds for it."""
    sf = snapshot["salesforce"]["records"]
    cases = sf.get("Case", {})
    out: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for case in cases.values():
        out["Cases"][str(case.get("Incident_Id__c"))].append(case)
    for obj, text, parent in (
        ("CaseComment", "CommentBody", "ParentId"),
        ("Task", "Description", "WhatId"),
    ):
        for rec in sf.get(obj, {}).values():
            found = _MARKER.search(str(rec.get(text, "")))
            owner = cases.get(rec.get(parent), {}).get("Incident_Id__c", "?")
            out["Case comments and tasks"][
                f"{owner} {found.group(0) if found else rec.get(text)}"
            ].append(rec)
    for alert in snapshot["pagerduty"]["alerts"]:
        out["PagerDuty alerts"][str(alert["dedup_key"])] += [alert] * max(
            int(alert.get("opened", 1)), 1
        )
    for msg in snapshot["slack"]["messages"]:
        marker = ((msg.get("metadata") or {}).get("event_payload") or {}).get("delivery")
        out["Slack messages"][str(marker or (msg.get("channel"), msg.get("text")))].append(msg)
    for sms in snapshot["twilio"]["messages"]:
        out["SMS"][f"{sms.get('to')} {sms.get('body')}"].append(sms)
    for mail in snapshot["sendgrid"]["mail"]:
        marker = (mail.get("custom_args") or {}).get("cr_delivery")
        out["email"][str(marker or json.dumps(mail.get("personalizations")))].append(mail)
    return out


def check_duplicates(
    snapshot: dict[str, Any], ids: list[str]
) -> tuple[Check, list[tuple[str, str]]]:
    """No intended delivery twice; the rows say how many of each kind the vendors hold."""
    rows, lines = [], []
    for kind in (
        "Cases",
        "Case comments and tasks",
        "PagerDuty alerts",
        "Slack messages",
        "SMS",
        "email",
    ):
        groups = _groups(snapshot)[kind]
        extra = sum(len(v) - 1 for v in groups.values())
        rows.append(
            (f"{kind}: received / duplicates", f"{sum(map(len, groups.values()))} / {extra}")
        )
        for key, items in groups.items():
            if len(items) > 1:
                text = json.dumps(items[0], default=str)
                owner = next((i for i in ids if i in text or i in key), "?")
                lines.append(f"{kind}: {owner}: {len(items)} copies of {key[:100]}")
    return Check(
        "no duplicate Case, comment, page, message, SMS or email", "per kind below", lines
    ), rows


def check_cases(snapshot: dict[str, Any], incidents: list[Incident], ev: Evidence) -> Check:
    """Exactly one Case for every incident whose case step completed."""
    counts = Counter(
        str(c.get("Incident_Id__c"))
        for c in snapshot["salesforce"]["records"].get("Case", {}).values()
    )
    lines, expected = [], 0
    for inc in incidents:
        upserts = {s.id for s in inc.playbook.iter_steps()
                   if isinstance(s, ActionStep) and s.activity == "salesforce.upsert_case"}  # fmt: skip
        done = any(
            e.kind == "step_completed" and e.step in upserts for e in ev.timelines.get(inc.iid, [])
        )
        expected += done
        if (done and counts[inc.iid] != 1) or counts[inc.iid] > 1:
            lines.append(f"{inc.iid} ({inc.playbook.name}): {counts[inc.iid]} Cases, case step "
                         f"{'completed' if done else 'not completed'}")  # fmt: skip
    return Check("exactly one Case each", f"{expected} incidents ran their case step", lines)


def check_steps(incidents: list[Incident], ev: Evidence) -> Check:
    """Injected vendor faults are transient: no activity step or notification may fail of them (a
    step failed by a rejection is the playbook's answer, not a fault)."""
    lines = []
    for inc in incidents:
        actions = {s.id for s in inc.playbook.iter_steps() if isinstance(s, ActionStep)}
        lines += [f"{inc.iid}: {e.kind} {e.step or ''}: {' '.join(e.detail.split())[:160]}"
                  for e in ev.timelines.get(inc.iid, [])
                  if e.kind == "notification_failed" or (e.kind == "step_failed" and e.step in actions)]  # fmt: skip
    return Check(
        "no activity step or notification failed", f"{len(ev.timelines)} timelines read", lines
    )


async def check_replay(ev: Evidence, evidence_dir: Path) -> Check:
    items = [item for iid, doc in ev.docs.items() for item in load_document(doc, iid)]
    failures = await replay(items)
    for iid in {f.incident_id for f in failures}:
        evidence_dir.mkdir(parents=True, exist_ok=True)
        (evidence_dir / f"{iid}.json").write_text(json.dumps(ev.docs[iid]))
    lines = [f"{f.incident_id} run {f.run_id[:8]}: event {f.event_id} {f.event_type}: {f.reason}; "
             f"{' '.join(f.detail.split())[:160]} (history in {evidence_dir}/{f.incident_id}.json)"
             for f in failures]  # fmt: skip
    return Check("every history replays with today's code", f"{len(items)} runs replayed", lines)


def check_verify(env: dict[str, str]) -> Check:
    incident = str(Path(sys.executable).parent / "incident")
    proc = subprocess.run([incident, "audit", "verify"], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    said = (proc.stdout.strip() or proc.stderr.strip() or f"exit {proc.returncode}").splitlines()
    lines = [] if proc.returncode == 0 else [f"exit {proc.returncode}: {' / '.join(said)[:300]}"]
    return Check("incident audit verify", said[0][:120] if said else "", lines)


def check_archive(incidents: list[Incident], ev: Evidence) -> Check:
    lines = []
    for inc in incidents:
        runs = {r["run_id"] for r in ev.docs.get(inc.iid, {}).get("manifest", {}).get("runs", [])
                if r.get("close_status") != "running"}  # fmt: skip
        missing = runs - {r.run_id for r in archived_runs(inc.iid)}
        if inc.phase == "closed" and (missing or not runs):
            lines.append(f"{inc.iid}: {len(missing)} closed run(s) not archived: {sorted(missing)}")
    return Check("every closed run archived", f"{len(incidents)} incidents", lines)


def check_stall(
    kills: list[Kill], ev: Evidence, max_stall: float, t0: float
) -> tuple[Check, list[tuple[str, str]]]:
    """Per kill: how long the work it interrupted waited (activities were watched during the run;
    workflow tasks are read from history), by kind of work, against ``max_stall``."""
    rows, lines = [], []
    for kill in kills:
        for iid, histories in ev.histories.items():
            waited = workflow_task_waits([e for h in histories for e in h.events], kill.at)
            if waited:
                kill.delays[(waited[1], iid)] = waited[0]
        stuck = [k for k, v in kill.delays.items() if v is None]
        worst = max(kill.delays.items(), key=lambda kv: kv[1] or 0, default=(("-", "-"), 0.0))
        stall = worst[1] or 0.0
        later = [k.n for k in kills if kill.at < k.at < kill.at + stall]
        if later:  # the wait also spans the next kill: say so rather than blame this one alone
            worst = ((worst[0][0], f"{worst[0][1]}, kill {later[0]} during the wait"), stall)
        kinds: dict[str, list[float]] = defaultdict(list)
        for (kind, _), seconds in kill.delays.items():
            kinds[kind].append(seconds if seconds is not None else float("inf"))
        detail = "; ".join(
            f"{kind} {len(v)} (max {max(v):.1f} s)" for kind, v in sorted(kinds.items())
        )
        if kill.resumed:
            slowest = max(kill.resumed.items(), key=lambda kv: kv[1])
            detail += (f"; activities running again after max {slowest[1]:.1f} s, their retry "
                       f"backoff included ({slowest[0]})")  # fmt: skip
        ready = f"{kill.ready:.1f} s" if kill.ready is not None else "never"
        rows.append((f"Kill {kill.n} at +{kill.at - t0:.0f} s",
                     f"stall {stall:.1f} s ({worst[0][0]}: {worst[0][1]}); worker polling again "
                     f"after {ready}; {detail or 'nothing in flight'}"))  # fmt: skip
        lines += [f"kill {kill.n}: {k[1]} ({k[0]}): not moving 60 s after the kill" for k in stuck]
        if stall > max_stall:
            lines.append(f"kill {kill.n}: stall {stall:.1f} s > {max_stall:g} s: {worst[0][1]} "
                         f"({worst[0][0]})")  # fmt: skip
    return Check(f"stall after each kill <= {max_stall:g} s", f"{len(kills)} kills", lines), rows


def workflow_task_waits(
    events: list[Any], at: float, window: float = 10
) -> tuple[float, str] | None:
    """The wait of the first workflow task pending at ``at`` or scheduled in the next ``window``
    seconds: from ``at`` (or its scheduling) to the next completed workflow task, and why."""
    pending = start = None
    why = "workflow tasks queued"
    sticky = False  # where the latest workflow task was scheduled
    for e in events:
        ts = e.event_time.ToNanoseconds() / 1e9
        if e.event_type == _ET.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            kind = e.workflow_task_scheduled_event_attributes.task_queue.kind
            sticky = kind == TaskQueueKind.TASK_QUEUE_KIND_STICKY
        if start is None:
            if ts > at and pending is not None:
                start = at
            elif e.event_type == _ET.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                pending = ts
                if ts > at + window:
                    return None
                if ts > at:
                    start = ts
                continue
            else:
                pending = None if e.event_type in _TASK_ENDS else pending
                continue
        if e.event_type == _ET.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            timeout = e.workflow_task_timed_out_event_attributes.timeout_type
            if timeout == TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START and not sticky:
                # Only an Update's speculative task times out unstarted on the normal queue: one
                # handed to the killed worker waits out the server's fixed 5 s.
                why = "an Update's workflow task handed to the killed worker"
            else:
                why = _TIMEOUT_WHY.get(timeout, why)
        if e.event_type == _ET.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            return ts - start, why
    return None


_TASK_ENDS = {_ET.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, _ET.EVENT_TYPE_WORKFLOW_TASK_FAILED,
              _ET.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT}  # fmt: skip
_TIMEOUT_WHY = {
    TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START: "workflow tasks on its sticky queue",
    TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE: "workflow tasks handed to the killed worker",
}


def render(rows: list[tuple[str, str]], checks: list[Check]) -> str:
    width = max(len(name) for name, _ in rows)
    out = [
        "",
        "Chaos run",
        "",
        *(f"  {name.ljust(width)}  {value}" for name, value in rows),
        "",
        "Checks",
    ]
    for check in checks:
        out.append(f"  {'FAIL' if check.findings else 'PASS'}  {check.name}: {check.summary}")
        out += [f"        - {line}" for line in check.findings]
    failed = sum(bool(c.findings) for c in checks)
    out += [
        "",
        f"{'FAILED' if failed else 'PASSED'}: {len(checks) - failed}/{len(checks)} checks pass",
        "",
    ]
    return "\n".join(out)
