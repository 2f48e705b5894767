"""The team lead's charts as server-rendered SVG: horizontal bars with their values written on
them (each chart sits beside its data table and a CSV download, so nothing is in colour only)."""

from __future__ import annotations

from html import escape

BAR_H, GAP, LABEL_W, BAR_W = 22, 8, 230, 320


def bars(title: str, rows: list[tuple[str, float | None]], *, unit: str = "",
         maximum: float | None = None, chart_id: str = "chart") -> str:  # fmt: skip
    """One bar per (label, value); None is drawn as "no data"."""
    values = [v for _, v in rows if v is not None]
    top = maximum if maximum is not None else max(values, default=0.0) or 1.0
    height = max(len(rows), 1) * (BAR_H + GAP) + GAP
    width = LABEL_W + BAR_W + 90
    parts = []
    for n, (label, value) in enumerate(rows):
        y = GAP + n * (BAR_H + GAP)
        short = label if len(label) <= 32 else label[:31] + "\u2026"
        parts.append(
            f'<text x="{LABEL_W - 6}" y="{y + 15}" text-anchor="end">{escape(short)}</text>'
        )
        if value is None:
            parts.append(f'<text x="{LABEL_W + 4}" y="{y + 15}">no data</text>')
            continue
        length = max(1.0, BAR_W * min(value, top) / top)
        text = f"{value:.0f}{unit}" if unit == "%" else f"{value:.1f}{unit}"
        parts.append(
            f'<rect x="{LABEL_W}" y="{y}" width="{length:.1f}" height="{BAR_H}" fill="#1d4ed8"/>'
            f'<text x="{LABEL_W + length + 6:.1f}" y="{y + 15}">{escape(text)}</text>'
        )
    if not rows:
        parts.append(f'<text x="{LABEL_W}" y="20">no data</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="{chart_id}-title" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" class="chart">'
        f'<title id="{chart_id}-title">{escape(title)}</title>{"".join(parts)}</svg>'
    )
