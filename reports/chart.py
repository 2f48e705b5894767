"""The report's chart: SLA attainment per step and the time-to-acknowledge distribution.

Drawn with matplotlib's object API on the Agg canvas (no display, no pyplot global state), so it
works on a headless server and inside the CLI. One PNG, two panels, readable at a glance: green is
met, amber warned, red breached, grey still running.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from reports.report import OUTCOMES, IncidentFacts, Report

COLOURS = {
    "met": "#2e7d32",
    "warned": "#f9a825",
    "breached": "#c62828",
    "pending": "#9e9e9e",
    "not_met": "#6a1b9a",
}
SEVERITY_ORDER = ("sev0", "sev1", "sev2", "sev3")


def _step_totals(report: Report) -> dict[str, dict[str, int]]:
    """Outcome counts per ``playbook / step`` across severities."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
    for row in report.steps:
        for outcome in OUTCOMES:
            totals[f"{row.playbook} / {row.step}"][outcome] += getattr(row, outcome)
    return dict(sorted(totals.items(), reverse=True))  # reversed: barh draws bottom-up


def _attainment_panel(ax, report: Report) -> None:  # type: ignore[no-untyped-def]
    totals = _step_totals(report)
    if not totals:
        ax.text(0.5, 0.5, "no SLA clocks in scope", ha="center", va="center")
        ax.set_axis_off()
        return
    labels = list(totals)
    left = [0.0] * len(labels)
    for outcome in OUTCOMES:
        shares = [100 * totals[k][outcome] / max(1, sum(totals[k].values())) for k in labels]
        ax.barh(labels, shares, left=left, color=COLOURS[outcome], label=outcome)
        left = [a + b for a, b in zip(left, shares, strict=True)]
    for y, key in enumerate(labels):
        counts = totals[key]
        decided = counts["met"] + counts["warned"] + counts["breached"]
        text = f"{(counts['met'] + counts['warned']) / decided:.0%}" if decided else "-"
        ax.text(101, y, text, va="center", fontsize=8)
    ax.set_xlim(0, 112)
    ax.set_xlabel("share of SLA clocks (%), attainment at right")
    ax.set_title("SLA attainment per step")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4, fontsize=8, frameon=False)
    ax.tick_params(axis="y", labelsize=7)


def _ack_panel(ax, incidents: list[IncidentFacts]) -> None:  # type: ignore[no-untyped-def]
    minutes: dict[str, list[float]] = defaultdict(list)
    for i in incidents:
        if i.acknowledged_at is not None:
            minutes[i.severity].append((i.acknowledged_at - i.opened_at).total_seconds() / 60)
    severities = [s for s in SEVERITY_ORDER if minutes.get(s)]
    if not severities:
        ax.text(0.5, 0.5, "no acknowledged incidents", ha="center", va="center")
        ax.set_axis_off()
        return
    data = [minutes[s] for s in severities]
    ax.boxplot(data, tick_labels=[f"{s}\n(n={len(minutes[s])})" for s in severities])
    ax.set_ylabel("minutes from open to acknowledge")
    ax.set_title("Time to acknowledge by severity")


def write_chart(report: Report, incidents: list[IncidentFacts], path: Path) -> Path:
    """Write the two-panel PNG to ``path`` and return it."""
    figure = Figure(figsize=(13, max(4.0, 0.32 * len(_step_totals(report)) + 1.5)), dpi=100)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, width_ratios=[3, 2])
    _attainment_panel(left, report)
    _ack_panel(right, incidents)
    figure.suptitle(f"critical-response SLA report, generated {report.generated_at:%Y-%m-%d %H:%M}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
