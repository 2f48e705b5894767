"""Prometheus metrics: the records' figures at scrape time, and what a worker process observes.

From the records (``records_metrics``, cached ``CACHE_SECONDS`` per database so a scrape every few
seconds costs one set of queries at most that often): open incidents by playbook and severity,
SLA clocks that warned and that breached by playbook (every incident ever recorded: they only
grow), running clocks breached in open incidents, and step durations (steps with an SLA clock:
start to stop) as a histogram. ``RecordsCollector`` serves them, leaving out the playbooks a
caller may not see; the API's ``/metrics`` and the worker's port both carry it.

Observed by a worker (``WORKER_REGISTRY``): activity failures by vendor, activity and error type
(``activities/metrics.py``, a worker interceptor: every failed attempt), and decision latency
(approval request to decision) as the records activity writes each decision (``observe_batch``).

``metrics_table`` renders ``records_metrics`` as text: the Grafana-free view for the console.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel
from sqlalchemy import ColumnElement, case, func
from sqlalchemy import select as sql_select
from sqlmodel import Session, col

from records.tables import IncidentRecord, SlaOutcome, records_engine
from workflows.models import RecordBatch

CACHE_SECONDS = 10.0
BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0)
VENDORS = {
    "salesforce": "salesforce", "notify.pagerduty": "pagerduty", "notify.slack": "slack",
    "notify.sms": "twilio", "notify.email": "email", "records": "records-db",
    "roster": "records-db",
}  # fmt: skip


class StepDurations(BaseModel):
    playbook: str
    cumulative: list[int]  # clocks at or under each of BUCKETS, then all of them
    total_seconds: float
    count: int


class RecordsMetrics(BaseModel):
    open_incidents: list[tuple[str, str, int]]  # playbook, severity, count
    sla_warned: list[tuple[str, int]]  # playbook, clocks that ever warned
    sla_breached: list[tuple[str, int]]
    open_breached: list[tuple[str, int]]  # running clocks breached, in open incidents
    step_durations: list[StepDurations]


def _duration(dialect: str) -> ColumnElement[Any]:
    start, stop = col(SlaOutcome.started_at), col(SlaOutcome.stopped_at)
    if dialect == "postgresql":
        return func.extract("epoch", stop - start)
    # julianday is a float of days: rounded to the millisecond, a minute stays a minute
    return func.round((func.julianday(stop) - func.julianday(start)) * 86400.0, 3)


def records_metrics(url: str | None = None) -> RecordsMetrics:
    """Every records-derived figure, counted by the database (five grouped queries)."""
    eng = records_engine(url)
    joined = col(IncidentRecord.incident_id) == col(SlaOutcome.incident_id)
    playbook = col(IncidentRecord.playbook)
    seconds = _duration(eng.dialect.name)
    with Session(eng) as s:
        conn = s.connection()

        def per_playbook(*where: ColumnElement[bool]) -> list[tuple[str, int]]:
            query = (sql_select(playbook, func.count()).select_from(SlaOutcome)
                     .join(IncidentRecord, joined).where(*where).group_by(playbook))  # fmt: skip
            return [(p, n) for p, n in conn.execute(query)]

        open_incidents = [
            (p, sev, n)
            for p, sev, n in conn.execute(
                sql_select(playbook, col(IncidentRecord.severity), func.count())
                .where(col(IncidentRecord.status) != "closed")
                .group_by(playbook, col(IncidentRecord.severity))
            )
        ]
        warned = per_playbook(col(SlaOutcome.warned_at).is_not(None))
        breached = per_playbook(col(SlaOutcome.breached_at).is_not(None))
        open_breached = per_playbook(
            col(SlaOutcome.breached_at).is_not(None),
            col(SlaOutcome.stopped_at).is_(None),
            col(IncidentRecord.status) != "closed",
        )
        buckets = [func.sum(case((seconds <= b, 1), else_=0)) for b in BUCKETS]
        durations = conn.execute(
            sql_select(playbook, *buckets, func.sum(seconds), func.count())
            .select_from(SlaOutcome)
            .join(IncidentRecord, joined)
            .where(
                col(SlaOutcome.scope) == "step",
                col(SlaOutcome.stopped_at).is_not(None),
                col(SlaOutcome.outcome) != "not_met",
            )
            .group_by(playbook)
        ).all()
    steps = [
        StepDurations(
            playbook=row[0],
            cumulative=[int(v or 0) for v in row[1:-2]] + [row[-1]],
            total_seconds=float(row[-2] or 0.0),
            count=row[-1],
        )  # fmt: skip
        for row in durations
    ]
    return RecordsMetrics(open_incidents=sorted(open_incidents), sla_warned=sorted(warned),
                          sla_breached=sorted(breached), open_breached=sorted(open_breached),
                          step_durations=sorted(steps, key=lambda d: d.playbook))  # fmt: skip


_cache: dict[str, tuple[float, RecordsMetrics]] = {}


def cached_metrics(url: str | None = None, ttl: float = CACHE_SECONDS) -> RecordsMetrics:
    key = url or ""
    hit = _cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < ttl:
        return hit[1]
    value = records_metrics(url)
    _cache[key] = (time.monotonic(), value)
    return value


class RecordsCollector(Collector):
    """The records' figures as Prometheus families; ``visible`` drops playbooks a caller may not
    see (restricted playbooks, as the SLA report does)."""

    def __init__(self, url: str | None = None, visible: Callable[[str], bool] | None = None):
        self.url, self.visible = url, visible or (lambda _playbook: True)

    def collect(self) -> Iterator[Any]:
        m = cached_metrics(self.url)
        shown = self.visible
        opened = GaugeMetricFamily("cr_open_incidents", "Incidents not closed",
                                   labels=["playbook", "severity"])  # fmt: skip
        for p, sev, n in m.open_incidents:
            if shown(p):
                opened.add_metric([p, sev], n)
        yield opened
        for name, doc, rows in (
            ("cr_sla_warnings", "SLA clocks that reached their warning", m.sla_warned),
            ("cr_sla_breaches", "SLA clocks that breached", m.sla_breached),
        ):
            family = CounterMetricFamily(name, doc, labels=["playbook"])
            for p, n in rows:
                if shown(p):
                    family.add_metric([p], n)
            yield family
        running = GaugeMetricFamily("cr_open_breached_clocks", "Running SLA clocks past due "
                                    "in open incidents", labels=["playbook"])  # fmt: skip
        for p, n in m.open_breached:
            if shown(p):
                running.add_metric([p], n)
        yield running
        hist = HistogramMetricFamily("cr_step_duration_seconds", "Steps with an SLA clock, "
                                     "start to stop", labels=["playbook"])  # fmt: skip
        for d in m.step_durations:
            if shown(d.playbook):
                edges = [str(b) for b in BUCKETS] + ["+Inf"]
                hist.add_metric([d.playbook], list(zip(edges, d.cumulative, strict=True)),
                                d.total_seconds)  # fmt: skip
        yield hist


# --- What a worker process observes --------------------------------------------------------------

WORKER_REGISTRY = CollectorRegistry()
ACTIVITY_FAILURES = Counter(
    "cr_activity_failures", "Failed activity attempts", ["vendor", "activity", "error"],
    registry=WORKER_REGISTRY,
)  # fmt: skip
DECISION_LATENCY = Histogram(
    "cr_decision_latency_seconds", "Approval requested to decided", ["playbook"],
    buckets=BUCKETS, registry=WORKER_REGISTRY,
)  # fmt: skip


def vendor_of(activity_type: str) -> str:
    """``notify.sms`` -> twilio, ``salesforce.upsert_case`` -> salesforce ..."""
    for prefix, vendor in VENDORS.items():
        if activity_type == prefix or activity_type.startswith(prefix + "."):
            return vendor
    return "other"


def count_failure(activity_type: str, error: str) -> None:
    ACTIVITY_FAILURES.labels(vendor_of(activity_type), activity_type, error).inc()


def observe_batch(batch: RecordBatch, written: int) -> None:
    """Decision latency of the decisions this batch wrote (its last ``written`` entries: a
    redelivered prefix is skipped), measured from the approval's request in the snapshot."""
    if not written or batch.snapshot is None:
        return
    for entry in sorted(batch.entries, key=lambda e: e.seq)[-written:]:
        pending = batch.snapshot.approvals.get(entry.step or "")
        if entry.kind in ("approved", "rejected") and pending is not None:
            waited = (entry.at - pending.requested_at).total_seconds()
            DECISION_LATENCY.labels(batch.playbook).observe(max(0.0, waited))


def metrics_table(m: RecordsMetrics) -> str:
    """The records' figures as plain text (for the console and ``incident metrics``)."""
    out = io.StringIO()
    out.write("open incidents (playbook, severity):\n")
    for p, sev, n in m.open_incidents:
        out.write(f"  {p:<24} {sev:<5} {n}\n")
    warned, breached = dict(m.sla_warned), dict(m.sla_breached)
    running = dict(m.open_breached)
    out.write("SLA clocks (playbook: warned, breached, breached and still running):\n")
    for p in sorted(warned.keys() | breached.keys() | running.keys()):
        out.write(f"  {p:<24} {warned.get(p, 0)}, {breached.get(p, 0)}, {running.get(p, 0)}\n")
    out.write("step durations (playbook: steps, mean, share done within 1h / 24h):\n")
    for d in m.step_durations:
        hour, day = d.cumulative[BUCKETS.index(3600.0)], d.cumulative[BUCKETS.index(86400.0)]
        mean = d.total_seconds / d.count / 60 if d.count else 0.0
        out.write(f"  {d.playbook:<24} {d.count}, {mean:.0f}m, {hour / max(1, d.count):.0%} / "
                  f"{day / max(1, d.count):.0%}\n")  # fmt: skip
    return out.getvalue()
