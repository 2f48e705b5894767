"""The instruments' charts: transparency figures and the coverage heatmap.

Drawn with matplotlib's object API on the Agg canvas (no display, no pyplot global state), as
``reports/chart.py`` draws the SLA report, so they work headless, in the CLI and for the console.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from insights.transparency import REQUEST_OUTCOMES, Transparency

if TYPE_CHECKING:
    from insights.coverage import Coverage

OUTCOME_COLOURS = {
    "disclosed": "#1565c0",
    "partially": "#64b5f6",
    "rejected": "#c62828",
    "withdrawn": "#9e9e9e",
    "preserved": "#2e7d32",
    "pending": "#f9a825",
}


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def write_transparency_chart(report: Transparency, path: Path) -> Path:
    """Two panels: requests per type (and process type) stacked by outcome; per jurisdiction."""
    figure = Figure(figsize=(13, 5), dpi=100)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, width_ratios=[3, 2])
    rows = [r for r in report.by_type if not (r.request_type == "legal_process"
                                              and r.process_type == "*")]  # fmt: skip
    labels = [r.request_type + ("" if r.process_type == "*" else f"\n{r.process_type}")
              for r in rows]  # fmt: skip
    bottom = [0] * len(rows)
    for outcome in REQUEST_OUTCOMES:
        values = [getattr(r, outcome) for r in rows]
        left.bar(labels, values, bottom=bottom, color=OUTCOME_COLOURS[outcome], label=outcome)
        bottom = [a + b for a, b in zip(bottom, values, strict=True)]
    for x, r in enumerate(rows):
        left.text(x, bottom[x], f"{r.accounts} acc.", ha="center", va="bottom", fontsize=8)
    left.set_ylabel("requests received")
    left.set_title("Requests by type and outcome (accounts named on top)")
    left.legend(fontsize=8, frameon=False)
    left.tick_params(axis="x", labelsize=8)
    if not rows:
        left.text(0.5, 0.5, "no requests in the period", ha="center", va="center")
    places = sorted({r.jurisdiction for r in report.by_jurisdiction})
    width = 0.8 / max(1, len({r.request_type for r in report.by_jurisdiction}))
    for n, kind in enumerate(sorted({r.request_type for r in report.by_jurisdiction})):
        counts = {r.jurisdiction: r.requests for r in report.by_jurisdiction
                  if r.request_type == kind}  # fmt: skip
        xs = [i + n * width for i in range(len(places))]
        right.bar(xs, [counts.get(p, 0) for p in places], width=width, label=kind)
    right.set_xticks([i + 0.4 - width / 2 for i in range(len(places))], places)
    right.set_title(
        f"By jurisdiction; CyberTipline reports sent: {report.child_safety_reports}", fontsize=10
    )
    right.legend(fontsize=8, frameon=False)
    figure.suptitle(f"Transparency figures, {report.start:%Y-%m-%d} to {report.end:%Y-%m-%d} (UTC)")
    return _save(figure, path)


def write_coverage_heatmap(coverage: Coverage, path: Path) -> Path:
    """Rows are roles, columns the coming hours; colour: green covered, amber scheduled but the
    forecast exceeds what they handled before, red nobody on call with demand, grey idle."""
    roles = sorted({s.role for s in coverage.slots})
    hours = sorted({s.start for s in coverage.slots})
    index = {h: n for n, h in enumerate(hours)}
    grid = [[0] * len(hours) for _ in roles]
    states = {"idle": 0, "covered": 1, "over_capacity": 2, "nobody_on_call": 3}
    for s in coverage.slots:
        grid[roles.index(s.role)][index[s.start]] = states[s.status]
    figure = Figure(figsize=(14, 1.0 + 0.45 * max(1, len(roles))), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    cmap = ListedColormap(["#eeeeee", "#66bb6a", "#ffb300", "#e53935"])
    ax.imshow(grid or [[0]], aspect="auto", cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
    ax.set_yticks(range(len(roles)), roles)
    ticks = [n for n, h in enumerate(hours) if h.hour == 0]
    ax.set_xticks(ticks, [f"{hours[n]:%a %d}" for n in ticks], fontsize=7)
    ax.set_title(
        f"Coverage, next {coverage.weeks} week(s) ({coverage.timezone}): green covered, amber "
        "forecast above what the scheduled people handled, red nobody on call, grey no demand",
        fontsize=9,
    )
    return _save(figure, path)
