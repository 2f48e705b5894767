"""Prometheus metrics from the records (SQLite and PostgreSQL), the API's /metrics, and the
worker's own: failed activity attempts by vendor and decision latency.

Seeded (minutes): M1 account-takeover sev1 open, ack clock warned at 10 and breached at 15, still
running; step contain done at 25 (1,500 s). M2 account-takeover sev2 closed, ack met at 5, step
contain breached at 60 and done at 90 (5,400 s). M3 child-safety sev1 open, step quarantine done
at 10 (600 s), step x not met (left out of durations).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.metrics import ActivityMetrics
from insights.metrics import (
    ACTIVITY_FAILURES,
    DECISION_LATENCY,
    RecordsCollector,
    metrics_table,
    observe_batch,
    records_metrics,
    vendor_of,
)
from records.chain import write_batch
from tests.records_db import batch, both_backends, clock, entry, records_url, state
from tests.test_api_records import api, bearer, secrets  # noqa: F401 - fixtures
from workflows.daily_report import DailyReportRequest, DailyReportWorkflow
from workflows.models import PendingApproval

pytestmark = [pytest.mark.usefixtures(records_url.__name__)]
BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ACK = "incident.acknowledge"


def seed() -> None:
    cases = [
        ("M1", "account-takeover", "sev1", None, [
            clock(ACK, 15, BASE, warn=10, warned=10, breached=15),
            clock("contain", 60, BASE, stopped=25)]),
        ("M2", "account-takeover", "sev2", 120, [
            clock(ACK, 15, BASE, stopped=5),
            clock("contain", 60, BASE, breached=60, stopped=90)]),
        ("M3", "child-safety", "sev1", None, [
            clock("quarantine", 60, BASE, stopped=10),
            clock("x", 60, BASE, stopped=5).model_copy(update={"unmet": True})]),
    ]  # fmt: skip
    for iid, playbook, sev, closed, clocks in cases:
        timeline = [entry(0, 0, "ic", "opened", base=BASE)]
        snapshot = state(timeline, base=BASE, severity=sev,
                         status="closed" if closed else "open",
                         closed_at=BASE + timedelta(minutes=closed) if closed else None,
                         clocks={c.name: c for c in clocks})  # fmt: skip
        write_batch(batch(iid, timeline, snapshot, playbook=playbook))


@both_backends
def test_the_records_figures(records_url):
    seed()
    m = records_metrics(records_url)
    assert m.open_incidents == [("account-takeover", "sev1", 1), ("child-safety", "sev1", 1)]
    assert (m.sla_warned, m.sla_breached) == ([("account-takeover", 1)], [("account-takeover", 2)])
    assert m.open_breached == [("account-takeover", 1)]
    steps = {d.playbook: (d.cumulative, round(d.total_seconds), d.count) for d in m.step_durations}
    assert steps == {
        "account-takeover": ([0, 0, 0, 1, 1, 2, 2, 2, 2, 2], 6900, 2),
        "child-safety": ([0, 0, 1, 1, 1, 1, 1, 1, 1, 1], 600, 1),
    }
    assert "account-takeover         1, 2, 1" in metrics_table(m)
    from starter import run

    assert run(["metrics", "--format", "json"]) == 0
    registry = CollectorRegistry()
    registry.register(RecordsCollector(records_url, lambda p: p != "child-safety"))
    text = generate_latest(registry).decode()
    assert 'cr_open_incidents{playbook="account-takeover",severity="sev1"} 1.0' in text
    assert 'cr_sla_breaches_total{playbook="account-takeover"} 2.0' in text
    assert 'cr_step_duration_seconds_bucket{le="1800.0",playbook="account-takeover"} 1.0' in text
    assert 'cr_step_duration_seconds_sum{playbook="account-takeover"} 6900.0' in text
    assert "child-safety" not in text


async def test_the_api_serves_them_to_report_readers_only(api, secrets):  # noqa: F811
    seed()
    r = await api.get("/metrics", headers=bearer(secrets["mo"]))  # a manager, outside the group
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'cr_open_incidents{playbook="account-takeover",severity="sev1"} 1.0' in r.text
    assert "child-safety" not in r.text
    r = await api.get("/metrics", headers=bearer(secrets["cleo"]))  # an auditor in the group
    assert 'cr_open_incidents{playbook="child-safety",severity="sev1"} 1.0' in r.text
    r = await api.get("/metrics", headers=bearer(secrets["casey"]))
    assert r.status_code == 403
    assert (await api.get("/metrics")).status_code == 401


def test_decision_latency_is_observed_once_per_written_decision():
    asked = PendingApproval(step_id="legal-review", roles=["legal"], requested_by="ann",
                            requested_at=BASE)  # fmt: skip
    timeline = [entry(0, 0, "ic", "opened"), entry(1, 30, "lena", "approved", step="legal-review")]
    snap = state(timeline, approvals={"legal-review": asked})
    before = DECISION_LATENCY.labels("legal-process")._sum.get()  # type: ignore[attr-defined]
    observe_batch(batch("D1", timeline, snap, playbook="legal-process"), written=2)
    observe_batch(batch("D1", timeline, snap, playbook="legal-process"), written=0)  # redelivery
    after = DECISION_LATENCY.labels("legal-process")._sum.get()  # type: ignore[attr-defined]
    assert after - before == 1800


async def test_failed_attempts_are_counted_by_vendor(dev_env):
    assert [vendor_of(a) for a in ("notify.sms", "salesforce.upsert_case", "records.append",
                                   "other.x")] == ["twilio", "salesforce", "records-db", "other"]  # fmt: skip

    @activity.defn(name="records.report_summary")
    async def failing(request: DailyReportRequest) -> str:
        raise ApplicationError("no", type="BoomError", non_retryable=True)

    labels = ("records-db", "records.report_summary", "BoomError")
    before = ACTIVITY_FAILURES.labels(*labels)._value.get()  # type: ignore[attr-defined]
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    async with Worker(dev_env.client, task_queue=queue, workflows=[DailyReportWorkflow],
                      activities=[failing], interceptors=[ActivityMetrics()]):  # fmt: skip
        with pytest.raises(WorkflowFailureError):
            await dev_env.client.execute_workflow(
                DailyReportWorkflow.run, DailyReportRequest(channel="#x"), id=queue,
                task_queue=queue,
            )  # fmt: skip
    assert ACTIVITY_FAILURES.labels(*labels)._value.get() - before == 1  # type: ignore[attr-defined]


def test_the_worker_serves_its_metrics_on_its_port(records_url, tmp_path):
    import httpx

    from sandbox.server import free_port
    from settings import Settings
    from worker import serve_metrics

    assert serve_metrics(Settings(data_dir=tmp_path)) is False  # off by default
    port = free_port()
    seed()
    assert serve_metrics(Settings(data_dir=tmp_path, worker_metrics_port=port)) is True
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert "cr_activity_failures_total" in text or "# HELP cr_activity_failures" in text
    assert 'cr_open_incidents{playbook="child-safety",severity="sev1"} 1.0' in text
