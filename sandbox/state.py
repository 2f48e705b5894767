"""What the emulators remember between requests, and the faults they are told to inject.

Tests, the demo and the end-to-end bench read this state over HTTP (``GET /_sandbox/state``) to
count Cases, comments, pages and messages, so it records everything the engine sent. Faults are
rules matched against route names (``salesforce.create``, ``slack.*``...) and drawn from a seeded
random generator, so a run with 30% injected errors is reproducible.

What the vendors hold (records, id counters, tokens, API usage, alerts, messages) survives a restart
through ``sandbox.persist.StateFile``; the fault rules, their random generator, the request and
fault counters and the org's test knobs (daily limit, minimum version, page size) are test-time
settings and start afresh.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from sandbox.persist import StateFile

FaultKind = Literal["error", "throttle", "drop_after_commit", "latency"]


class FaultRule(BaseModel):
    """One injected fault: which routes, what happens, how often and how many times."""

    route: str = "*"  # fnmatch pattern over route names
    kind: FaultKind = "error"
    rate: float = Field(default=1.0, ge=0.0, le=1.0)
    times: int | None = None  # stop after this many injections; None = forever
    status: int = 503  # for kind=error
    error_code: str | None = None  # vendor error code for kind=error (e.g. UNABLE_TO_LOCK_ROW)
    retry_after: float = 1.0  # seconds, for kind=throttle (fractions allowed for fast tests)
    latency_ms: int = 0  # added before handling, for every kind
    injected: int = 0


class FaultRequest(BaseModel):
    """Body of ``POST /_sandbox/faults``: new rules (appended) and one-off switches."""

    rules: list[FaultRule] = Field(default_factory=list)
    replace: bool = False
    seed: int | None = None
    expire_tokens: bool = False


class SandboxConfig(BaseModel):
    """Body of ``POST /_sandbox/config``: Salesforce org knobs."""

    daily_limit: int | None = None
    api_usage: int | None = None
    jwt_public_key: str | None = None
    min_api_version: float | None = None
    query_page_size: int | None = None


class PersistedOrg(BaseModel):
    """The part of the Salesforce org a restart keeps (a real org forgets none of it)."""

    records: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    next_id: int = 1
    api_usage: int = 0
    tokens: dict[str, bool] = Field(default_factory=dict)
    tokens_issued: int = 0
    jwt_public_key: str | None = None


class PersistedState(BaseModel):
    """The state file's contents (``format`` changes when the shape does)."""

    format: Literal[1] = 1
    salesforce: PersistedOrg = Field(default_factory=PersistedOrg)
    pagerduty_alerts: dict[str, dict[str, Any]] = Field(default_factory=dict)
    pagerduty_events: list[dict[str, Any]] = Field(default_factory=list)
    slack_messages: list[dict[str, Any]] = Field(default_factory=list)
    sms: list[dict[str, Any]] = Field(default_factory=list)
    emails: list[dict[str, Any]] = Field(default_factory=list)


KEPT = ("pagerduty_alerts", "pagerduty_events", "slack_messages", "sms", "emails")


@dataclass
class SalesforceOrg:
    """An org: records per sObject type, issued tokens, API usage against the daily limit."""

    daily_limit: int = 15000
    api_usage: int = 0
    min_api_version: float = 31.0
    jwt_public_key: str | None = None
    query_page_size: int = 2000
    cursors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    tokens: dict[str, bool] = field(default_factory=dict)  # token -> valid
    tokens_issued: int = 0
    next_id: int = 1

    def new_id(self, sobject: str) -> str:
        prefix = {"Case": "500", "CaseComment": "00a", "Task": "00T"}.get(sobject, "a00")
        self.next_id += 1
        return f"{prefix}{self.next_id:015d}"


@dataclass
class SandboxState:
    """All emulator state behind one lock (uvicorn serves from one thread, tests read over HTTP)."""

    salesforce: SalesforceOrg = field(default_factory=SalesforceOrg)
    pagerduty_alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    pagerduty_events: list[dict[str, Any]] = field(default_factory=list)
    slack_messages: list[dict[str, Any]] = field(default_factory=list)
    sms: list[dict[str, Any]] = field(default_factory=list)
    emails: list[dict[str, Any]] = field(default_factory=list)
    chat_requests: list[dict[str, Any]] = field(default_factory=list)  # in memory only
    requests: dict[str, int] = field(default_factory=dict)
    faults_injected: dict[str, int] = field(default_factory=dict)
    rules: list[FaultRule] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    lock: threading.RLock = field(default_factory=threading.RLock)
    store: StateFile | None = None  # None: in memory only

    @classmethod
    def open(cls, path: Path | None, daily_limit: int) -> SandboxState:
        """A fresh state, or the one kept in ``path`` (locked for this sandbox until ``close``)."""
        state = cls()
        state.reset(daily_limit)
        if path is None:
            return state
        store = StateFile(path)
        raw = store.open()
        if raw is not None:
            try:
                state.restore(PersistedState.model_validate(raw))
            except ValidationError as exc:
                store.close()
                err = exc.errors(include_url=False)[0]
                where = ".".join(map(str, err["loc"])) or "top level"
                raise store.unusable(
                    f"is not a sandbox state file ({where}: {err['msg']})"
                ) from None
        state.store = store
        return state

    def persisted(self) -> dict[str, Any]:
        """What a restart keeps, in the shape of ``PersistedState`` (not validated: it is ours)."""
        with self.lock:
            org = self.salesforce
            kept = {name: getattr(org, name) for name in PersistedOrg.model_fields}
            return {"format": 1, "salesforce": kept, **{name: getattr(self, name) for name in KEPT}}

    def restore(self, saved: PersistedState) -> None:
        with self.lock:
            org, kept = self.salesforce, saved.salesforce
            org.records, org.next_id, org.api_usage = kept.records, kept.next_id, kept.api_usage
            org.tokens, org.tokens_issued = kept.tokens, kept.tokens_issued
            org.jwt_public_key = kept.jwt_public_key
            for name in KEPT:
                setattr(self, name, getattr(saved, name))

    def commit(self, *, sync: bool = False) -> None:
        """Write the kept state to the state file (no-op in memory); called after each change."""
        with self.lock:
            if self.store is not None:
                self.store.save(self.persisted(), sync=sync)

    def close(self) -> None:
        """Save once more (API usage counted by reads) and release the state file."""
        with self.lock:
            if self.store is not None:
                self.commit(sync=True)
                self.store.close()
                self.store = None

    def count(self, route: str) -> None:
        with self.lock:
            self.requests[route] = self.requests.get(route, 0) + 1

    def draw_fault(self, route: str) -> tuple[FaultRule | None, int]:
        """The fault to inject on this request (if any) and the total added latency in ms."""
        with self.lock:
            latency = 0
            for rule in self.rules:
                if not fnmatch.fnmatchcase(route, rule.route):
                    continue
                latency += rule.latency_ms
                if rule.kind == "latency":
                    continue
                if rule.times is not None and rule.injected >= rule.times:
                    continue
                if rule.rate < 1.0 and self.rng.random() >= rule.rate:
                    continue
                rule.injected += 1
                self.faults_injected[route] = self.faults_injected.get(route, 0) + 1
                return rule, latency
            return None, latency

    def apply_faults(self, req: FaultRequest) -> None:
        with self.lock:
            if req.replace:
                self.rules = []
            self.rules.extend(req.rules)
            if req.seed is not None:
                self.rng = random.Random(req.seed)
            if req.expire_tokens:
                self.salesforce.tokens = dict.fromkeys(self.salesforce.tokens, False)

    def apply_config(self, cfg: SandboxConfig) -> None:
        with self.lock:
            org = self.salesforce
            if cfg.daily_limit is not None:
                org.daily_limit = cfg.daily_limit
            if cfg.api_usage is not None:
                org.api_usage = cfg.api_usage
            if cfg.jwt_public_key is not None:
                org.jwt_public_key = cfg.jwt_public_key or None
            if cfg.min_api_version is not None:
                org.min_api_version = cfg.min_api_version
            if cfg.query_page_size is not None:
                org.query_page_size = cfg.query_page_size

    def reset(self, daily_limit: int) -> None:
        with self.lock:
            self.salesforce = SalesforceOrg(daily_limit=daily_limit)
            self.pagerduty_alerts.clear()
            self.pagerduty_events.clear()
            self.slack_messages.clear()
            self.sms.clear()
            self.emails.clear()
            self.chat_requests.clear()
            self.requests.clear()
            self.faults_injected.clear()
            self.rules = []
            self.rng = random.Random(0)

    def snapshot(self) -> dict[str, Any]:
        """Everything received, as JSON, for tests and ``make demo``."""
        with self.lock:
            org = self.salesforce
            return {
                "salesforce": {
                    "records": org.records,
                    "api_usage": org.api_usage,
                    "daily_limit": org.daily_limit,
                    "tokens_issued": org.tokens_issued,
                },
                "pagerduty": {
                    "alerts": list(self.pagerduty_alerts.values()),
                    "events": self.pagerduty_events,
                },
                "slack": {"messages": self.slack_messages},
                "twilio": {"messages": self.sms},
                "sendgrid": {"mail": self.emails},
                "openai": {"requests": self.chat_requests},
                "requests": self.requests,
                "faults_injected": self.faults_injected,
                "rules": [r.model_dump() for r in self.rules],
            }
