"""`make bench-report` in small (``bench/report_scale.py``): the made-up records are what the code
itself would have written (the audit chain verifies, every clock is counted once by the report)
and the bench runs end to end on the session's PostgreSQL server."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import create_engine, text

from audit.verify import verify
from bench import report_scale
from reports.report import build_report
from settings import get_settings


def test_the_bench_fills_postgresql_with_records_the_code_accepts(
    postgres_admin_url, tmp_path, monkeypatch
):
    monkeypatch.setenv("CR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CR_AUDIT_CHECKPOINT_FILE", str(tmp_path / "checkpoints.jsonl"))
    get_settings.cache_clear()
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    with report_scale.database(postgres_admin_url) as url:
        monkeypatch.setenv("CR_DATABASE_URL", url)
        get_settings.cache_clear()
        report_scale.fill(url, 300, seed=3, now=now)
        rows = report_scale.counts(url)
        assert rows["incident_records"] == 300
        assert rows["sla_outcomes"] > 300 * 3 and rows["audit_log"] > 300 * 5
        verdict = verify()
        assert verdict.ok and verdict.rows == rows["audit_log"]
        total = build_report(now=now, url=url).total
        clocks = sum(getattr(total, o) for o in ("met", "warned", "breached", "pending", "not_met"))
        assert total.incidents == 300 and clocks == rows["sla_outcomes"]
        assert 0 < total.breached < total.met and total.open > 0
        with create_engine(url).connect() as conn:
            head = conn.execute(text("select last_id from audit_head")).scalar()
        assert head == rows["audit_log"]
    get_settings.cache_clear()


def test_the_bench_runs_end_to_end(postgres_admin_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report_scale, "RESULTS", tmp_path / "report_results.md")
    monkeypatch.setattr(report_scale, "cli_report", lambda *a: {"best_s": 1.0, "median_s": 1.0})
    monkeypatch.setattr(report_scale, "exit_process", lambda code: None)
    monkeypatch.setenv("CR_DATA_DIR", str(tmp_path))
    report_scale.main(["--incidents", "200", "--runs", "1", "--url", postgres_admin_url])
    out = capsys.readouterr().out
    assert "200 incidents" in out and "| `build_report()`, all incidents |" in out
    assert (tmp_path / "report_results.md").read_text() + "\n" == out
    get_settings.cache_clear()
