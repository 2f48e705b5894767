"""The handbook: every playbook rendered for people, from the very files the engine runs.

For each playbook: its purpose, when it applies, its fields and events, the incident's SLAs, then
each step in order with its owner, SLA (statutory or not), legal basis, what to do (the step's
``guidance``), the decision it takes and where each answer leads, a diagram of the flow, and the
playbook's content hash: the handbook names the exact version an incident of that hash snapshots,
and ``incident handbook --check FILE`` says when a written handbook no longer matches the
playbooks (``stale_playbooks``).

``build_handbook`` returns the data (the console can show it); ``to_markdown`` and ``to_html``
render it. Diagrams are Mermaid flowcharts (rendered by Markdown viewers that support them; in
HTML, the source sits beside a plain outline of the same flow).
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from playbooks.loader import LoadedPlaybook, scan_playbooks
from playbooks.schema import (
    ApprovalStep,
    BranchStep,
    Condition,
    OpenIncidentStep,
    ParallelStep,
    Sla,
    StepModel,
    TimerStep,
    WaitForStep,
    child_lists,
    format_duration,
)

END = "end"
HASH_MARK = re.compile(r"handbook-playbook (?P<name>[a-z0-9-]+) (?P<hash>sha256:[0-9a-f]{64})")


class Link(BaseModel):
    """Where a step leads: ``to`` a step id (or ``end``), when ``label`` holds."""

    to: str
    label: str = ""


class StepEntry(BaseModel):
    id: str
    depth: int
    kind: str
    title: str
    owner: str
    sla: str  # "" when the step has none
    legal_clock: bool
    legal_basis: str
    guidance: str
    description: str
    decision: str  # what the step waits for or decides, in words
    leads_to: list[Link]


class Page(BaseModel):
    name: str
    version: int
    title: str
    file: str
    content_hash: str
    purpose: str
    applies_when: str
    description: str
    default_severity: str
    channel: str
    escalation_policy: str
    fields: list[tuple[str, str]]  # name, what it is (required, type, choices)
    events: list[tuple[str, str]]  # name, what it means and who may send it
    incident_sla: list[str]
    steps: list[StepEntry]
    diagram: str  # Mermaid flowchart source


class Handbook(BaseModel):
    generated_at: datetime
    pages: list[Page]


def condition_text(c: Condition) -> str:
    """A branch condition in words: ``jurisdiction = eu``, ``legal-review was rejected``."""
    if c.all is not None:
        return " and ".join(f"({condition_text(x)})" for x in c.all)
    if c.any is not None:
        return " or ".join(f"({condition_text(x)})" for x in c.any)
    if c.not_ is not None:
        return f"not ({condition_text(c.not_)})"
    name = c.field or ""
    if name.startswith("decision."):
        name = f"{name.removeprefix('decision.')} was"
        return f"{name} {c.equals or c.not_equals or ', '.join(c.in_ or [])}"
    if c.exists is not None:
        return f"{name} is {'given' if c.exists else 'empty'}"
    if c.equals is not None:
        return f"{name} = {c.equals}"
    if c.not_equals is not None:
        return f"{name} ≠ {c.not_equals}"
    return f"{name} in {', '.join(c.in_ or [])}"


def sla_text(sla: Sla | None) -> str:
    if sla is None:
        return ""
    parts = [f"due {format_duration(sla.due)}"]
    if sla.warn_at is not None:
        parts.append(f"warn at {format_duration(sla.warn_at)}")
    if sla.clock == "business":
        parts.append("business hours")
    if sla.anchor != "step":
        parts.append(f"counted from {sla.anchor.replace(':', ' ')}")
    if sla.legal:
        parts.append("statutory: wall clock, never paused")
    if sla.pauses_on:
        parts.append(f"paused on {', '.join(sla.pauses_on)}")
    escalations = [
        f"page {e.page}" if e.page else f"notify {e.notify}" if e.notify
        else f"raise severity by {e.raise_severity}" if e.raise_severity else "fail the step"
        for e in sla.on_breach
    ]  # fmt: skip
    if escalations:
        parts.append("on breach: " + ", ".join(escalations))
    return "; ".join(parts)


def _decision(step: StepModel) -> str:
    if isinstance(step, ApprovalStep):
        second = (
            f"; then a second approver ({', '.join(step.second_approver.roles)})"
            if step.second_approver
            else ""
        )
        prompt = f": {step.prompt.strip()}" if step.prompt else ""
        return f"approval by {', '.join(step.roles)}{second}{prompt}"
    if isinstance(step, WaitForStep):
        limit = f" (at most {format_duration(step.timeout)})" if step.timeout else ""
        return f"waits for the event `{step.event}`{limit}"
    if isinstance(step, TimerStep):
        if step.duration is not None:
            return f"waits {format_duration(step.duration)}"
        return f"waits until the date in field `{step.until_field}`"
    if isinstance(step, BranchStep):
        return "decision point: the first case that holds is taken"
    if isinstance(step, ParallelStep):
        return f"runs {len(step.branches)} branches at once and waits for all"
    if isinstance(step, OpenIncidentStep):
        return f"opens a linked `{step.playbook}` incident (this incident's id and the step's)"
    return f"runs `{step.activity}`"


def _flow(steps: list[StepModel], after: str, links: dict[str, list[Link]]) -> None:
    """Where each step leads: the next step, a branch's cases, a parallel's branches."""
    for n, step in enumerate(steps):
        nxt = steps[n + 1].id if n + 1 < len(steps) else after
        out: list[Link] = []
        if isinstance(step, BranchStep):
            for case in step.cases:
                label = condition_text(case.when) if case.when else "otherwise"
                then = case.goto or nxt
                out.append(Link(to=case.steps[0].id if case.steps else then, label=label))
                _flow(list(case.steps), then, links)
            if all(case.when is not None for case in step.cases):
                out.append(Link(to=nxt, label="no case holds"))
        elif isinstance(step, ParallelStep):
            for branch in step.branches:
                out.append(Link(to=branch.steps[0].id, label=branch.name))
                _flow(list(branch.steps), nxt, links)
        else:
            out.append(Link(to=nxt))
        links[step.id] = out


def _entries(steps: list[StepModel], links: dict[str, list[Link]], depth: int = 0) -> list:
    found: list[StepEntry] = []
    for step in steps:
        found.append(
            StepEntry(
                id=step.id, depth=depth, kind=step.kind, title=step.title or step.id,
                owner=step.owner or "-", sla=sla_text(step.sla),
                legal_clock=bool(step.sla and step.sla.legal), legal_basis=step.legal_basis,
                guidance=step.guidance.strip(), description=step.description.strip(),
                decision=_decision(step), leads_to=links[step.id],
            )
        )  # fmt: skip
        for nested in child_lists(step):
            found.extend(_entries(nested, links, depth + 1))
    return found


def _mermaid(entries: list[StepEntry]) -> str:
    def node(name: str) -> str:
        return "n_" + re.sub(r"[^A-Za-z0-9_]", "_", name)

    def label(text: str) -> str:
        return text.replace('"', "'").replace("[", "(").replace("]", ")")

    lines = ["flowchart TD"]
    for e in entries:
        shape = ('{"%s"}' if e.kind == "branch" else '["%s"]') % label(f"{e.id}: {e.title}")
        lines.append(f"  {node(e.id)}{shape}")
    lines.append(f'  {node(END)}(["end of the playbook"])')
    for e in entries:
        for link in e.leads_to:
            arrow = f'-- "{label(link.label)}" -->' if link.label else "-->"
            lines.append(f"  {node(e.id)} {arrow} {node(link.to)}")
    return "\n".join(lines)


def _page(lp: LoadedPlaybook) -> Page:
    pb = lp.playbook
    links: dict[str, list[Link]] = {}
    _flow(list(pb.steps), END, links)
    entries = _entries(list(pb.steps), links)
    fields = [
        (name, ("required; " if f.required else "")
         + (f"one of {', '.join(f.choices)}" if f.choices else f.type)
         + (f": {f.description}" if f.description else ""))
        for name, f in pb.fields.items()
    ]  # fmt: skip
    events = [
        (name, e.description + (f" (sets {', '.join(e.sets)})" if e.sets else "")
         + (f"; sent by {', '.join(e.roles)}" if e.roles else ""))
        for name, e in pb.events.items()
    ]  # fmt: skip
    incident_sla = [
        f"{name}: {text}"
        for name, sla in (("acknowledge", pb.sla.acknowledge), ("resolve", pb.sla.resolve))
        if (text := sla_text(sla))
    ]
    return Page(
        name=pb.name, version=pb.version, title=pb.title, file=lp.path.name,
        content_hash=lp.content_hash, purpose=pb.purpose.strip(),
        applies_when=pb.applies_when.strip(), description=pb.description.strip(),
        default_severity=pb.default_severity, channel=pb.channel,
        escalation_policy=pb.escalation_policy, fields=fields, events=events,
        incident_sla=incident_sla, steps=entries, diagram=_mermaid(entries),
    )  # fmt: skip


def build_handbook(
    playbooks_dir: Path, names: list[str] | None = None, now: datetime | None = None
) -> Handbook:
    """Every valid playbook in ``playbooks_dir`` (or those named), in name order."""
    loaded = sorted(scan_playbooks(playbooks_dir)[0], key=lambda lp: lp.playbook.name)
    chosen = [lp for lp in loaded if not names or lp.playbook.name in names]
    return Handbook(generated_at=now or datetime.now(UTC), pages=[_page(lp) for lp in chosen])


def stale_playbooks(text: str, playbooks_dir: Path) -> list[str]:
    """Why a written handbook no longer matches the playbooks: one line per playbook whose hash
    changed, that is missing from it, or that it has and the directory does not."""
    written = {m["name"]: m["hash"] for m in HASH_MARK.finditer(text)}
    current = {lp.playbook.name: lp.content_hash for lp in scan_playbooks(playbooks_dir)[0]}
    problems = [
        f"playbook {name} is {current[name]} now; the handbook describes {written[name]}"
        for name in sorted(current.keys() & written.keys())
        if current[name] != written[name]
    ]
    problems += [f"playbook {n} is not in the handbook" for n in sorted(current - written.keys())]
    problems += [f"playbook {n} is no longer shipped" for n in sorted(written - current.keys())]
    return problems


def anchor(playbook: str, step: str | None = None) -> str:
    """The id of a playbook's section (or one of its steps) in both renderings."""
    return playbook if step is None else f"{playbook}--{step}"


# --- Rendering ----------------------------------------------------------------------------------


def _target(page: Page, link: Link) -> str:
    return "the end" if link.to == END else f"[{link.to}](#{anchor(page.name, link.to)})"


def to_markdown(book: Handbook) -> str:
    """The handbook as one Markdown document (GitHub-style anchors and Mermaid)."""
    out = [
        "# Critical Response handbook",
        "",
        f"Generated {book.generated_at:%Y-%m-%d %H:%M} UTC from the playbooks the engine runs. "
        "Each playbook names its content hash: an incident whose playbook has that hash ran "
        "exactly what is written here.",
        "",
    ]
    out += [f"- [{p.title}](#{anchor(p.name)}) (`{p.name}` v{p.version})" for p in book.pages]
    for p in book.pages:
        out += ["", f'<a id="{anchor(p.name)}"></a>', "", f"## {p.title}", ""]
        out += [f"<!-- handbook-playbook {p.name} {p.content_hash} -->", ""]
        out += [
            f"`{p.name}` version {p.version}, file `{p.file}`, content hash `{p.content_hash}`; "
            f"default severity {p.default_severity}, channel {p.channel}, escalation policy "
            f"{p.escalation_policy}."
        ]
        for title, text in (("Purpose", p.purpose or p.description), ("When it applies",
                                                                      p.applies_when)):  # fmt: skip
            if text:
                out += ["", f"**{title}.** {text}"]
        if p.incident_sla:
            out += ["", "**Incident SLAs.** " + " / ".join(p.incident_sla)]
        if p.fields:
            out += ["", "**Fields.**", ""] + [f"- `{n}`: {t}" for n, t in p.fields]
        if p.events:
            out += ["", "**Events.**", ""] + [f"- `{n}`: {t}" for n, t in p.events]
        out += ["", "### Flow", "", "```mermaid", p.diagram, "```", "", "### Steps", ""]
        out += [f"{'  ' * s.depth}- [{s.id}](#{anchor(p.name, s.id)}): {s.title}" for s in p.steps]
        for s in p.steps:
            out += ["", f'<a id="{anchor(p.name, s.id)}"></a>', ""]
            out += [f"#### {s.id}: {s.title}", ""]
            out += [f"- **Owner:** {s.owner}; **kind:** {s.kind}; {s.decision}"]
            if s.sla:
                out += [f"- **SLA:** {s.sla}"]
            if s.legal_basis:
                out += [f"- **Legal basis:** {s.legal_basis}"]
            leads = ", ".join(
                (f"{link.label} → " if link.label else "") + _target(p, link) for link in s.leads_to
            )
            out += [f"- **Next:** {leads}"]
            if s.guidance or s.description:
                out += ["", s.guidance or s.description]
    return "\n".join(out) + "\n"


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def to_html(book: Handbook) -> str:
    """The handbook as one self-contained HTML page (no scripts; Mermaid source shown as is)."""
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Critical Response handbook</title>',
        "<style>body{font-family:sans-serif;max-width:60rem;margin:auto;line-height:1.45}"
        "pre{background:#f4f4f4;padding:.6rem;overflow:auto}.step{border-left:3px solid #1565c0;"
        "padding-left:.8rem;margin:1rem 0}.meta{color:#555}</style></head><body>",
        "<h1>Critical Response handbook</h1>",
        f"<p>Generated {book.generated_at:%Y-%m-%d %H:%M} UTC from the playbooks the engine "
        "runs. Each playbook names its content hash.</p><ul>",
    ]
    out += [f'<li><a href="#{anchor(p.name)}">{_h(p.title)}</a></li>' for p in book.pages]
    out.append("</ul>")
    for p in book.pages:
        out.append(f'<section id="{anchor(p.name)}"><h2>{_h(p.title)}</h2>')
        out.append(f"<!-- handbook-playbook {p.name} {p.content_hash} -->")
        out.append(
            f'<p class="meta"><code>{p.name}</code> version {p.version}, file '
            f"<code>{_h(p.file)}</code>, content hash <code>{p.content_hash}</code>; default "
            f"severity {p.default_severity}, channel {_h(p.channel)}.</p>"
        )
        for title, text in (("Purpose", p.purpose or p.description),
                            ("When it applies", p.applies_when)):  # fmt: skip
            if text:
                out.append(f"<p><strong>{title}.</strong> {_h(text)}</p>")
        if p.incident_sla:
            out.append(f"<p><strong>Incident SLAs.</strong> {_h(' / '.join(p.incident_sla))}</p>")
        for title, items in (("Fields", p.fields), ("Events", p.events)):
            if items:
                rows = "".join(f"<li><code>{n}</code>: {_h(t)}</li>" for n, t in items)
                out.append(f"<p><strong>{title}.</strong></p><ul>{rows}</ul>")
        out.append("<h3>Flow</h3><ol>")
        out += [
            f'<li style="margin-left:{2 * s.depth}rem"><a href="#{anchor(p.name, s.id)}">'
            f"{s.id}</a>: {_h(s.title)}</li>"
            for s in p.steps
        ]
        out.append(f'</ol><pre class="mermaid">{_h(p.diagram)}</pre><h3>Steps</h3>')
        for s in p.steps:
            leads = ", ".join(
                (f"{_h(link.label)} → " if link.label else "")
                + ("the end" if link.to == END
                   else f'<a href="#{anchor(p.name, link.to)}">{link.to}</a>')
                for link in s.leads_to
            )  # fmt: skip
            out.append(
                f'<div class="step" id="{anchor(p.name, s.id)}"><h4>{s.id}: {_h(s.title)}</h4>'
                f'<p class="meta">Owner: {_h(s.owner)}; kind: {s.kind}; {_h(s.decision)}</p>'
            )
            if s.sla:
                out.append(f"<p>SLA: {_h(s.sla)}</p>")
            if s.legal_basis:
                out.append(f"<p>Legal basis: {_h(s.legal_basis)}</p>")
            if s.guidance or s.description:
                out.append(f"<p>{_h(s.guidance or s.description)}</p>")
            out.append(f"<p>Next: {leads}</p></div>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
