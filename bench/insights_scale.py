"""`make bench-insights`: the team lead's instruments over the records of `make demo` plus 1,000
generated incidents, each timed, with what each shows.

Runs the demo (its emergency-disclosure incident end to end on an embedded stack) into a data
directory of its own, adds a roster with rotations and ``--incidents`` incidents made up by
bench/insights_data.py (written through the records code, so sealed, chained and projected), then
times each report: the first call (new engine) and the median of ``--runs`` more, the charts
once. Writes bench/insights_results.md (``--no-write`` leaves it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connection import exit_process

RESULTS = Path(__file__).with_name("insights_results.md")
ROOT = Path(__file__).resolve().parent.parent


def timed(fn: Callable[[], Any], runs: int) -> tuple[Any, float, float]:
    """(result, first call seconds, median of ``runs`` more)."""
    start = time.perf_counter()
    result = fn()
    first = time.perf_counter() - start
    more = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        more.append(time.perf_counter() - start)
    return result, first, statistics.median(more) if more else first


def bench(workdir: Path, incidents: int, runs: int) -> list[str]:
    from stack.demo import run_demo

    demo_out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(demo_out):
        code = asyncio.run(run_demo(workdir))
    demo_s = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"the demo failed:\n{demo_out.getvalue()[-2000:]}")
    # The demo pointed the settings at its data directory; the rest reads the same database.
    from bench.insights_data import generate, roster
    from insights.capacity import build_capacity
    from insights.charts import write_coverage_heatmap, write_transparency_chart
    from insights.coverage import build_coverage
    from insights.handbook import build_handbook, to_html, to_markdown
    from insights.metrics import records_metrics
    from insights.review import build_review
    from insights.review import to_markdown as review_md
    from insights.transparency import build_transparency
    from insights.workload import build_workload
    from reports.report import build_report
    from settings import get_settings

    settings = get_settings()
    now = datetime.now(UTC)
    start = time.perf_counter()
    roster(now)
    rows = generate(incidents, now, settings.playbooks_dir)
    gen_s = time.perf_counter() - start
    zone = settings.business_timezone
    since = now - timedelta(days=90)
    t, t1, tm = timed(lambda: build_transparency(since, now), runs)
    w, w1, wm = timed(lambda: build_workload(now - timedelta(days=28), now, zone), runs)
    c, c1, cm = timed(lambda: build_coverage(zone, weeks=2, lookback=8), runs)
    k, k1, km = timed(lambda: build_capacity(now - timedelta(days=28), now), runs)
    day, d1, dm = timed(lambda: build_coverage(zone, hours=24, lookback=8), runs)
    r, r1, rm = timed(lambda: review_md(build_review("DEMO-0001")), runs)
    g, g1, gm = timed(lambda: review_md(build_review("BENCH-00007")), runs)
    h, h1, hm = timed(lambda: to_html(build_handbook(settings.playbooks_dir)), runs)
    md = to_markdown(build_handbook(settings.playbooks_dir))
    m, m1, mm = timed(lambda: records_metrics(), runs)
    s, s1, sm = timed(lambda: build_report(), runs)
    start = time.perf_counter()
    write_transparency_chart(t, workdir / "transparency.png")
    tc = time.perf_counter() - start
    start = time.perf_counter()
    write_coverage_heatmap(c, workdir / "coverage.png")
    hc = time.perf_counter() - start
    lers = [x for x in w.rows if x.hour_of_week == -1]
    gaps: dict[tuple[str, str], int] = {}
    for gap in c.gaps:
        gaps[(gap.role, gap.status)] = gaps.get((gap.role, gap.status), 0) + gap.hours
    ms = lambda v: f"{v * 1000:.0f} ms"  # noqa: E731
    lines = [
        "# The team lead's instruments: `make demo` records plus generated incidents",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs (shared), SQLite records database.",
        f"The demo ran in {demo_s:.1f} s; {incidents} incidents ({rows} audit rows) were generated "
        f"and written through the records code in {gen_s:.1f} s. Times: first call, then the "
        f"median of {runs} more.",
        "",
        "| report | first | median | what it shows on these records |",
        "|---|---|---|---|",
        f"| `incident transparency` (90 days) | {ms(t1)} | {ms(tm)} | {t.total.requests} requests "
        f"naming {t.total.accounts} accounts: disclosed {t.total.disclosed}, partially "
        f"{t.total.partially}, rejected {t.total.rejected}, withdrawn {t.total.withdrawn}, "
        f"preserved {t.total.preserved}, pending {t.total.pending}; time to respond p50 "
        f"{(t.total.respond_median_s or 0) / 3600:.1f} h, p90 "
        f"{(t.total.respond_p90_s or 0) / 3600:.1f} h; {t.child_safety_reports} CyberTipline "
        f"reports; notices delayed "
        + ", ".join(f"{n.basis} {n.requests}" for n in t.notices_delayed)
        + " |",
        f"| `incident workload` (28 days) | {ms(w1)} | {ms(wm)} | "
        + "; ".join(
            f"{x.role}: {x.steps} steps (p50 {(x.step_p50_s or 0) / 60:.0f} min), "
            f"{x.approvals_decided} decisions, {x.pages_answered} pages"
            for x in sorted(lers, key=lambda x: -x.steps)[:4]
        )
        + " |",
        f"| `incident coverage --weeks 2` | {ms(c1)} | {ms(cm)} | {len(c.gaps)} gaps: "
        + ", ".join(
            f"{role} {status.replace('_', ' ')} {hours} h"
            for (role, status), hours in sorted(gaps.items())
        )
        + " |",
        f"| `incident capacity` (28 days) | {ms(k1)} | {ms(km)} | "
        + "; ".join(
            f"{x.person}: on call {x.on_call_hours} h, project "
            f"{x.declared_hours['project']:g} h, handled {x.handled}, reactive "
            f"{(x.reactive_share or 0):.0%}"
            for x in k.rows
            if x.person in ("ana", "ben", "lena", "dev")
        )
        + " |",
        f"| daily coverage check (next 24 h) | {ms(d1)} | {ms(dm)} | {len(day.gaps)} gaps |",
        f"| `incident review DEMO-0001` | {ms(r1)} | {ms(rm)} | {r.count(chr(10))} lines, "
        f"{sum(line.startswith('| 20') for line in r.splitlines())} timeline rows |",
        f"| `incident review BENCH-00007` | {ms(g1)} | {ms(gm)} | {g.count(chr(10))} lines |",
        f"| `incident handbook --format html` (8 playbooks) | {ms(h1)} | {ms(hm)} | "
        f"{len(h) // 1024} KiB HTML, {len(md) // 1024} KiB Markdown |",
        f"| records metrics (`/metrics`, uncached) | {ms(m1)} | {ms(mm)} | "
        f"{sum(n for *_, n in m.open_incidents)} open incidents, "
        f"{sum(n for _, n in m.sla_breached)} breached clocks, "
        f"{sum(d.count for d in m.step_durations)} step durations |",
        f"| `incident report` (baseline) | {ms(s1)} | {ms(sm)} | {s.total.incidents} incidents |",
        f"| transparency chart / coverage heatmap (PNG) | {ms(tc)} / {ms(hc)} | | |",
        "",
        "Each command as a new process (start, imports, settings, the report, its output), "
        f"best of {max(1, runs)}:",
        "",
        "| command | wall time |",
        "|---|---|",
    ]
    since_day = f"{since:%Y-%m-%d}"
    commands = [
        ["transparency", "--from", since_day, "--format", "csv", "--chart",
         str(workdir / "t.png")],
        ["workload", "--since", "28d"],
        ["capacity", "--since", "28d"],
        ["coverage", "--weeks", "2", "--heatmap", str(workdir / "c.png")],
        ["review", "DEMO-0001"],
        ["handbook", "--format", "html", "-o", str(workdir / "handbook.html")],
        ["metrics"],
        ["report"],
    ]  # fmt: skip
    for args in commands:
        lines.append(f"| `incident {' '.join(args[:3])}` | {process_seconds(args, runs):.2f} s |")
    return lines


def process_seconds(args: list[str], runs: int) -> float:
    """Best wall time of ``incident ARGS`` as a new process (the demo's settings inherited)."""
    best = float("inf")
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "starter", *args], capture_output=True,
                              cwd=ROOT, check=False)  # fmt: skip
        best = min(best, time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"incident {' '.join(args)}: {done.stderr.decode()[-500:]}")
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bench.insights_scale", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="use this data directory and keep it")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        workdir = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        lines = bench(workdir, args.incidents, args.runs)
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)
    exit_process(0)


if __name__ == "__main__":
    main()
