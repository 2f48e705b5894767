"""The playbook an incident runs, drawn from its pinned snapshot: one node per step, nested steps
(branch cases, parallel branches) indented under their step, each node's state said by text and
an icon as well as its colour, the current steps marked; and the same tree as a text outline for
screen readers (the SVG itself is one labelled image).

States come from the incident's timeline (``step_started``, ``step_completed`` ...) and its live
status (running and failed steps), never from guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from playbooks.schema import BranchStep, ParallelStep, Playbook, StepModel
from workflows.models import IncidentStatus, TimelineEntry

# state -> (icon, label, fill, stroke); text is always dark on a light fill (contrast >= 4.5)
STATES: dict[str, tuple[str, str, str, str]] = {
    "running": ("\u25b6", "current", "#dbeafe", "#1d4ed8"),
    "failed": ("\u2717", "failed", "#fee2e2", "#b91c1c"),
    "completed": ("\u2713", "done", "#dcfce7", "#15803d"),
    "skipped": ("\u21b7", "skipped", "#f3f4f6", "#4b5563"),
    "cancelled": ("\u25a0", "cancelled", "#f3f4f6", "#4b5563"),
    "pending": ("\u25cb", "not started", "#ffffff", "#6b7280"),
}
W, H, GAP, INDENT, LABEL = 360, 34, 10, 28, 20


@dataclass
class Node:
    """A step (or a group label: a parallel branch, a branch case) in drawing order."""

    label: str
    depth: int
    state: str | None = None  # None: a group label, not a step
    step_id: str = ""
    kind: str = ""
    children: list[Node] = field(default_factory=list)


def step_states(status: IncidentStatus | None, timeline: list[TimelineEntry]) -> dict[str, str]:
    """Each step's latest state: from the timeline's step entries, then the live status."""
    states: dict[str, str] = {}
    for e in timeline:
        if e.step and e.kind.startswith("step_"):
            kind = e.kind.removeprefix("step_")
            if kind in STATES or kind == "started":
                states[e.step] = "running" if kind == "started" else kind
    if status is not None:
        states.update({s.step_id: "running" for s in status.active_steps})
        states.update({s.step_id: "failed" for s in status.failed_steps})
    return states


def _nodes(steps: list[StepModel], states: dict[str, str], depth: int) -> list[Node]:
    out = []
    for step in steps:
        title = step.title or step.kind
        node = Node(f"{step.id}: {title}", depth, states.get(step.id, "pending"), step.id,
                    step.kind)  # fmt: skip
        if isinstance(step, ParallelStep):
            for branch in step.branches:
                group = Node(f"branch {branch.name}", depth + 1)
                group.children = _nodes(list(branch.steps), states, depth + 2)
                node.children.append(group)
        elif isinstance(step, BranchStep):
            for n, case in enumerate(step.cases, 1):
                when = "otherwise" if case.when is None else f"case {n}"
                group = Node(when + (f" (then {case.goto})" if case.goto else ""), depth + 1)
                group.children = _nodes(list(case.steps), states, depth + 2)
                node.children.append(group)
        out.append(node)
    return out


def tree(playbook: Playbook, states: dict[str, str]) -> list[Node]:
    return _nodes(list(playbook.steps), states, 0)


def _flat(nodes: list[Node]) -> list[Node]:
    out = []
    for n in nodes:
        out.append(n)
        out.extend(_flat(n.children))
    return out


def svg(nodes: list[Node], title: str) -> str:
    """The graph as inline SVG: one labelled image (its outline is the accessible text)."""
    flat = _flat(nodes)
    y, parts = 0, []
    deepest = max((n.depth for n in flat), default=0)
    width = W + deepest * INDENT + 4
    for n in flat:
        x = 2 + n.depth * INDENT
        if n.state is None:
            parts.append(f'<text x="{x}" y="{y + 14}" class="g-group">{escape(n.label)}</text>')
            y += LABEL
            continue
        icon, word, fill, stroke = STATES[n.state]
        heavy = ' stroke-width="3"' if n.state in ("running", "failed") else ""
        dash = ' stroke-dasharray="4 3"' if n.state == "pending" else ""
        label = n.label if len(n.label) <= 36 else n.label[:35] + "\u2026"
        parts.append(
            f'<g class="g-step g-{n.state}"><rect x="{x}" y="{y}" width="{W}" height="{H}" '
            f'rx="6" fill="{fill}" stroke="{stroke}"{heavy}{dash}/>'
            f'<text x="{x + 10}" y="{y + 22}" class="g-icon">{icon}</text>'
            f'<text x="{x + 30}" y="{y + 22}">{escape(label)}</text>'
            f'<text x="{x + W - 8}" y="{y + 22}" text-anchor="end" class="g-state">'
            f"{escape(word)}</text></g>"
        )
        y += H + GAP
    height = max(y, H)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="graph-title" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" class="graph">'
        f'<title id="graph-title">{escape(title)}</title>{"".join(parts)}</svg>'
    )


def outline(nodes: list[Node]) -> str:
    """The same tree as nested lists: each step's name, kind and state in words."""
    if not nodes:
        return ""
    items = []
    for n in nodes:
        if n.state is None:
            text = escape(n.label)
        else:
            icon, word, _, _ = STATES[n.state]
            mark = " <strong>(current step)</strong>" if n.state == "running" else ""
            text = (f'<span aria-hidden="true">{icon}</span> {escape(n.label)} '
                    f"<em>({escape(n.kind)}, {escape(word)})</em>{mark}")  # fmt: skip
        items.append(f"<li>{text}{outline(n.children)}</li>")
    return f"<ol>{''.join(items)}</ol>"
