"""An incident as people read it in a terminal, a log or a case file: status, timeline, list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from terminal import out, printable
from workflows import sla as clocks
from workflows.models import IncidentStatus, TimelineEntry


def print_entry(entry: TimelineEntry) -> None:
    out.print(f"{entry.kind}: {printable(entry.detail)}".rstrip(": "), markup=False)


def print_status(st: IncidentStatus) -> None:
    now = datetime.now(UTC)
    breached = " [red]SLA BREACHED[/red]" if st.sla_breached else ""
    out.print(
        f"[bold]{st.incident_id}[/bold] {st.severity.upper()} {st.status} "
        f"owner={st.owner}{breached}"
    )
    out.print(f"playbook {st.playbook} v{st.playbook_version} {st.playbook_hash}")
    out.print(f"summary: {printable(st.summary)}", markup=False)
    if st.parent_incident_id:
        out.print(f"opened by incident {st.parent_incident_id} (linked)", markup=False)
    for child, state in sorted(st.linked.items()):
        out.print(f"linked incident {child}: {state}", markup=False)
    table = Table("step", "kind", "owner", "since")
    for s in st.active_steps:
        table.add_row(s.step_id, s.kind, s.owner or "", s.started_at.isoformat(timespec="seconds"))
    out.print(table)
    for reason in st.attention:
        out.print(f"needs attention: {printable(reason)}", markup=False, style="red")
    for a in st.pending_approvals:
        roles = "/".join(a.second_roles if a.decisions and a.second_roles else a.roles)
        on_call = f"; on call {', '.join(a.on_call)}" if a.on_call and not a.decisions else ""
        out.print(
            f"awaiting decision: {a.step_id} from {roles} (requested by {a.requested_by}{on_call})"
        )
    clocks_table = Table("SLA clock", "kind", "state", "due", "left")
    for c in st.clocks:
        left = c.due_at - now if c.due_at and c.state not in ("met", "met_late") else None
        remaining = (
            clocks.format_remaining(left)
            if left is not None
            else ("paused" if c.state == "paused" else "-")
        )
        due = c.due_at.isoformat(timespec="seconds") if c.due_at else "-"
        clocks_table.add_row(c.name, c.kind, c.state, due, remaining)
    out.print(clocks_table)


def print_timeline(entries: Sequence[TimelineEntry]) -> None:
    """One line per entry: readable in a terminal, a log or a case file."""
    for e in entries:
        who = printable(f"{e.actor} ({e.role})" if e.role else e.actor)
        text = " ".join(part for part in (e.kind.ljust(18), e.step, printable(e.detail)) if part)
        out.print(f"{e.seq:>3} {e.at:%Y-%m-%d %H:%M:%S}Z {who:<24} {text}{sla_note(e)}",
                  markup=False)  # fmt: skip


def sla_note(entry: TimelineEntry) -> str:
    if not entry.sla:
        return ""
    if entry.due_at and entry.sla not in ("met", "met_late"):
        return f" [SLA {entry.sla}, due {entry.due_at:%Y-%m-%d %H:%M}Z]"
    return f" [SLA {entry.sla}]"


def print_rows(rows: Sequence[Mapping[str, Any]]) -> None:
    """Incidents as the list shows them (``IncidentRow.as_json``, as the API answers)."""
    table = Table("incident", "severity", "status", "playbook", "breached", "attention", "opened",
                  "opened by")  # fmt: skip
    for r in rows:
        table.add_row(
            printable(str(r["incident_id"])),
            str(r["severity"]),
            str(r["status"]),
            str(r["playbook"]),
            "yes" if r["sla_breached"] else "",
            "yes" if r["needs_attention"] else "",
            str(r["opened_at"]),
            printable(str(r.get("parent") or "")),  # a linked incident's parent
        )
    out.print(table)
