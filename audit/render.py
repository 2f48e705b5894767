"""The case file as people read it: plain text for a terminal or a ticket, Markdown for a report.

Rebuilt from the histories alone by ``audit/replay.py``; nothing here reads Temporal or the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from audit.replay import CaseFile, ReplayFailure
from terminal import printable


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _who(actor: str, role: str | None) -> str:
    return printable(f"{actor} ({role})" if role else actor)


def _sla(entry: Any) -> str:
    if entry.sla is None:
        return "-"
    return f"{entry.sla}, due {_when(entry.due_at)}" if entry.due_at else entry.sla


def _message_line(m: Any) -> str:
    p = m.payload if isinstance(m.payload, dict) else {"value": m.payload}
    who = _who(str(p.get("actor", "?")), p.get("role"))
    on = f" on {p['step_id']}" if p.get("step_id") else ""
    why = printable(str(p.get("reason") or p.get("name") or ""))
    return f"{_when(m.at)}  event {m.event_id}: {m.kind} {m.name} by {who}{on}: {why}".rstrip(": ")


def _failure_text(f: ReplayFailure) -> str:
    if f.kind == "tampered":
        run = f", run {f.run_id}" if f.run_id else ""
        return (
            f"TAMPERED: incident {f.incident_id} (workflow {f.workflow_id}{run}): {f.reason}\n"
            f"  {f.detail[:400]}"
        )
    where = f"event {f.event_id}" if f.event_id is not None else "an unidentified event"
    return (
        f"NON-DETERMINISM in incident {f.incident_id} (workflow {f.workflow_id}, run {f.run_id}) "
        f"at {where}: {f.reason}\n  replayer said: {f.detail[:400]}"
    )


def _verdict(case: CaseFile, ok: str, strong: str = "") -> str:
    if any(f.kind == "tampered" for f in case.failures):
        return f"{strong}TAMPERED{strong}: the export was altered after it was written (see below)"
    return f"{strong}FAILED{strong}" if case.failures else ok


def render_text(case: CaseFile) -> str:
    head = [
        f"Incident {case.incident_id}: playbook {case.playbook} v{case.playbook_version}, "
        f"hash {case.playbook_hash}",
        f"Opened by {case.opened_by} as {case.severity_at_open}: {case.summary}",
        f"Workflow {case.workflow_id}, {len(case.runs)} run(s): "
        + "; ".join(f"{r.run_id} {r.status} ({r.events} events)" for r in case.runs),
        "Replay with today's code: "
        + _verdict(case, "OK, every decision matches the recorded history"),
        "",
        f"{'when (UTC)':<20} {'seq':>4}  {'what':<20} {'who':<20} {'step':<22} SLA",
    ]
    for e in case.timeline:
        head.append(
            f"{_when(e.at):<20} {e.seq:>4}  {e.kind:<20} {_who(e.actor, e.role):<20} "
            f"{e.step or '-':<22} {_sla(e)}"
        )
        if e.detail:
            head.append(f"{'':<27}{printable(e.detail)}")
    if case.messages:
        head += ["", "Decisions and commands received (Updates and signals):"]
        head += [f"  {_message_line(m)}" for m in case.messages]
    head += [_failure_text(f) for f in case.failures]
    return "\n".join(head) + "\n"


def render_md(case: CaseFile) -> str:
    lines = [
        f"# Incident {case.incident_id}",
        "",
        f"- Playbook: **{case.playbook}** v{case.playbook_version}, hash `{case.playbook_hash}`",
        f"- Opened by {case.opened_by} as {case.severity_at_open}: {case.summary}",
        f"- Workflow `{case.workflow_id}`, runs: "
        + ", ".join(f"`{r.run_id}` ({r.status})" for r in case.runs),
        f"- Replay with today's code: {_verdict(case, 'OK', strong='**')}",
        "",
        "| When (UTC) | Seq | What | Who | Step | SLA | Detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in case.timeline:
        detail = printable(e.detail).replace("|", "\\|")
        lines.append(
            f"| {_when(e.at)} | {e.seq} | {e.kind} | {_who(e.actor, e.role)} | {e.step or ''} "
            f"| {_sla(e)} | {detail} |"
        )
    if case.messages:
        lines += ["", "## Decisions and commands received", ""]
        lines += [f"- {_message_line(m)}" for m in case.messages]
    if case.failures:
        lines += ["", "## Replay failures", ""] + [f"- {_failure_text(f)}" for f in case.failures]
    return "\n".join(lines) + "\n"
