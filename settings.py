"""Configuration for every process of critical-response (CLI, worker, embedded stack, intake).

Values come from environment variables prefixed ``CR_`` (or a ``.env`` file), so the same code talks to
the embedded dev server and sandbox emulators on a laptop and to a Temporal cluster, Temporal Cloud and
the real vendors in production. Workflow code never reads settings: whatever an incident needs (the
playbook, the business calendar) is snapshotted into its input when it is opened.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent


class Settings(BaseSettings):
    """All knobs in one place; see README "Production setup" for the variables."""

    model_config = SettingsConfigDict(env_prefix="CR_", env_file=".env", extra="ignore")

    # --- Temporal ---------------------------------------------------------------------------
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_tls: bool = False
    temporal_tls_client_cert: Path | None = None
    temporal_tls_client_key: Path | None = None
    temporal_api_key: SecretStr | None = None
    task_queue: str = "critical-response"
    # Workflows a worker keeps in memory between tasks, so a task does not replay the incident's
    # history (an LRU: a workflow pushed out replays at its next task). About 145 KB of worker
    # memory each (`make bench-scale`: 1.6 GB with 10,000 cached). 0 replays every task.
    # A cached worker forgets a workflow as soon as it has answered a query of its own (not one
    # riding a workflow task): such a query can find the run in no cache, and the worker then
    # rebuilds it from a history that holds events no task has processed yet, and would keep that
    # run; the next task then recorded commands its own replay does not reproduce (issue 8,
    # item 2; ``worker.ForgetAfterLoneQuery``, tests/test_kill_replay.py).
    workflow_cache_size: int = Field(default=10_000, ge=0, le=1_000_000)
    # The engine's own calls (records, roster, notifications, the archive's start) as local
    # activities: a marker each in the task that needs them, no task of their own. Off by
    # default, and only ever with a cache: a run rebuilt for a lone query *runs* the local
    # activities the unprocessed events lead to before the worker forgets it (measured in
    # tests/test_kill_replay.py), so a notification could go out twice and the records could
    # take a batch the real run never writes. Activities are only sent when a real task
    # completes. The roster's answer, a read, is a local activity whenever there is a cache
    # (``IncidentInput.local_reads``).
    local_calls: bool = False
    # A workflow task taken by a worker that then dies is retried elsewhere after this long (the
    # server's default, 10 s, stalled every incident a killed worker held for 10 s; at 5 s the
    # chaos harness measured stalls of 5.1-6.5 s, the timeout plus the retry's replay). A task of
    # an incident in no cache (a new worker's, after a kill) replays its history: tens of
    # milliseconds alone, about 1 s at worst with 30 incidents and the chaos harness on 2 cores;
    # a task over it is retried, not lost. 3 s keeps incidents moving within 5 s of a kill
    # (`make chaos`).
    workflow_task_timeout_seconds: float = Field(default=3.0, ge=1.0, le=60.0)
    # A run continues as new after this many history events (the server suggests it only at
    # about 4,000), so a task of an incident in no cache replays at most this much: `make bench`
    # replays about 1,700 events/s on a busy 2-core machine, about 1.2 s for 2,000, within the
    # task timeout above. A long incident simply has more runs, each archived.
    continue_as_new_after_events: int = Field(default=2000, ge=200, le=50_000)
    # How many worker processes `incident up` runs: 1 polls inside its own process (beside the API
    # and intake, one GIL for all); N > 1 starts N `python -m worker` processes on the same task
    # queues, so the workflow tasks of many incidents use as many cores (issue 11's scale-out).
    worker_processes: int = Field(default=1, ge=1, le=64)
    # Salesforce calls get their own queue so the fleet shares one org-wide rate limit.
    salesforce_max_activities_per_second: float = 20.0

    # --- Embedded stack (`make run`) ----------------------------------------------------------
    data_dir: Path = PROJECT_ROOT / ".data"
    ui_port: int = 8233
    # Origins of the Web UI the codec server answers (unset: the embedded UI on loopback).
    ui_origins: list[str] = Field(default_factory=list)
    retention_days: int = 3650
    playbooks_dir: Path = PROJECT_ROOT / "playbooks"
    cli_timeout_seconds: float = 30.0

    # --- Business calendar, snapshotted into each incident at open ---------------------------
    business_timezone: str = "America/Los_Angeles"
    business_days: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    business_start: str = "09:00"
    business_end: str = "17:00"

    # --- Records --------------------------------------------------------------------------------
    database_url: SecretStr | None = None  # a PostgreSQL URL carries its password
    # The audit log's Ed25519 signing key (mode 0600; unset: <data_dir>/audit-key.json) and the
    # append-only file of signed checkpoints of its head (unset: <data_dir>/audit-checkpoints.jsonl).
    # In production both belong where the database's writers cannot rewrite them: the key readable
    # by the workers only, the checkpoints on append-only storage (records/checkpoints.py).
    audit_key_file: Path | None = None
    audit_checkpoint_file: Path | None = None
    # How long a closed incident is kept before `incident purge` may shred it (days after it
    # closed; unset: as soon as it is over and no legal hold applies, records/holds.py).
    incident_retention_days: int | None = Field(default=None, ge=0)

    # --- Payload encryption (encryption/) ------------------------------------------------------
    # Every payload Temporal stores is sealed with AES-256-GCM (false: no codec at all; payloads
    # sealed before cannot be read while it is off: for the benchmark's comparison).
    payload_encryption: bool = True
    # The master keys, newest last: "id:base64-key,id:base64-key" or the JSON of master-keys.json.
    # Unset: <data_dir>/master-keys.json, created (mode 0600, one key) on first use. In production
    # give every process the same value (`python -m encryption.master` prints one).
    master_keys: SecretStr | None = None
    # Where the per-workflow data keys live (wrapped by a master key); unset: the records database.
    keystore_url: str | None = None

    # --- Integrations (base URLs point at the sandbox emulators unless configured) ------------
    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = 8787
    # Where the emulators keep what they received across restarts; unset: <data_dir>/
    # sandbox-state.json; ":memory:" (or empty) keeps it in memory only.
    sandbox_state_file: str | None = None
    salesforce_base_url: str | None = None
    salesforce_api_version: str = "v62.0"
    salesforce_client_id: str = "sandbox-client"
    salesforce_client_secret: SecretStr = SecretStr("sandbox-secret")
    pagerduty_url: str | None = None
    slack_webhook_url: SecretStr | None = None  # the URL is the credential (it embeds a token)
    default_slack_channel: str = "#tns-critical-response"
    # Salesforce auth: "client_credentials" (My Domain host only) or "jwt" (RS256 bearer assertion).
    salesforce_auth_flow: str = "client_credentials"
    salesforce_login_url: str | None = None  # JWT token host; defaults to the base URL
    salesforce_username: str = ""  # JWT `sub`
    salesforce_jwt_audience: str = "https://login.salesforce.com"
    salesforce_private_key: SecretStr | None = None  # PEM text, or a file:
    salesforce_private_key_file: Path | None = None
    # Daily REQUEST_LIMIT_EXCEEDED: retrying sooner only burns the next day's allowance.
    salesforce_limit_retry_seconds: float = 3600.0
    sandbox_salesforce_daily_limit: int = 15000
    pagerduty_routing_key: SecretStr = SecretStr("sandbox0routing0key0000000000000")
    pagerduty_routing_keys: dict[str, SecretStr] = Field(default_factory=dict)  # policy -> key
    pagerduty_retry_delay_seconds: float = 30.0  # PagerDuty documents ~30 s between retries
    slack_api_url: str | None = None
    slack_bot_token: SecretStr | None = None  # set: chat.postMessage; unset: incoming webhook
    twilio_api_url: str | None = None
    twilio_account_sid: str = "AC" + "0" * 32
    twilio_auth_token: SecretStr = SecretStr("sandbox-token")
    twilio_from_number: str = "+15005550006"
    email_transport: str = "sendgrid"  # or "smtp"
    email_from: str = "critical-response@example.com"
    sendgrid_api_url: str | None = None
    sendgrid_api_key: SecretStr = SecretStr("SG.sandbox")
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    http_timeout_seconds: float = 10.0
    intake_host: str = "127.0.0.1"
    intake_port: int = 8788
    api_host: str = "127.0.0.1"
    api_port: int = 8789
    # --- The web console (served by the API under /console) ----------------------------------
    # OpenID Connect sign-in (authlib): the issuer's URL, this console's client id and secret;
    # unset, only local accounts (`incident people password HANDLE`) sign in.
    oidc_issuer: str | None = None
    oidc_client_id: SecretStr | None = None
    oidc_client_secret: SecretStr | None = None
    # The console's public address (the OIDC redirect); unset: the address the request came to.
    console_url: str | None = None
    console_session_hours: float = 12.0
    # The Temporal Web UI the incident page links to (unset: the embedded one on CR_UI_PORT).
    temporal_ui_url: str | None = None
    # How often the console's live stream looks for changed incidents (seconds).
    console_poll_seconds: float = 1.0
    # Prometheus metrics of a worker process (``insights/metrics.py``): served on this port when
    # set (CR_WORKER_METRICS_PORT, e.g. 9464); off by default. The API serves /metrics itself.
    worker_metrics_port: int | None = None
    worker_metrics_host: str = "127.0.0.1"
    # --- The `incident` command as a client of the API --------------------------------------
    # Where the CLI finds the API (unset: the embedded stack's, http://CR_API_HOST:CR_API_PORT).
    api_url: str | None = None
    # Where `incident login` keeps the token (mode 0600); unset: $XDG_CONFIG_HOME or ~/.config.
    config_dir: Path | None = None
    # "whsec_..."; required with real endpoints. Unset in sandbox mode: the install's own,
    # generated once into <data_dir>/intake-webhook-secret, 0600 (intake/secret.py).
    intake_webhook_secret: SecretStr | None = None
    intake_rules_file: Path | None = None
    # --- Assisted response (assist/) -----------------------------------------------------------
    # An OpenAI-compatible chat endpoint for triage suggestions and summary rewrites (unset: the
    # local model only). Personal data is removed before anything is sent (assist/redact.py).
    assist_chat_url: str | None = None  # base URL; the sandbox's is <sandbox_url>/openai
    assist_chat_model: str = "gpt-4o-mini"
    assist_chat_api_key: SecretStr | None = None
    assist_chat_timeout_seconds: float = 10.0
    # How long intake waits for a suggestion before it opens with its routing rules alone.
    assist_intake_budget_seconds: float = 2.0

    def incident_options(self) -> dict[str, bool]:
        """How a new or reopened incident runs on these workers (``IncidentInput`` fields the
        front door sets; histories recorded before each field replay with its default). Local
        activities need a worker that keeps the workflow between activations: the engine's own
        calls only when asked (``local_calls``), the roster's answer (a read) on any cached
        worker."""
        cached = self.workflow_cache_size > 0
        return {
            "local_calls": self.local_calls and cached,
            "local_reads": cached,
            "close_together": True,
        }

    @property
    def effective_salesforce_url(self) -> str:
        # The sandbox answers on Salesforce's own paths at its root, as an org's My Domain host does.
        return (self.salesforce_base_url or self.sandbox_url).rstrip("/")

    @property
    def effective_pagerduty_url(self) -> str:
        return self.pagerduty_url or f"{self.sandbox_url}/pagerduty/v2/enqueue"

    @property
    def effective_slack_webhook_url(self) -> str:
        if self.slack_webhook_url is not None:
            return self.slack_webhook_url.get_secret_value()
        return f"{self.sandbox_url}/slack/services/T0000/B0000/sandbox"

    @property
    def effective_slack_api_url(self) -> str:
        return (self.slack_api_url or f"{self.sandbox_url}/slack/api").rstrip("/")

    @property
    def effective_twilio_url(self) -> str:
        return (self.twilio_api_url or f"{self.sandbox_url}/twilio").rstrip("/")

    @property
    def effective_sendgrid_url(self) -> str:
        return (self.sendgrid_api_url or f"{self.sandbox_url}/sendgrid").rstrip("/")

    @property
    def effective_api_url(self) -> str:
        return (self.api_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def local_admin_token_file(self) -> Path:
        """Where the first `make run` writes the local admin's token (the CLI's last resort)."""
        return self.data_dir / "local-admin.token"

    @property
    def effective_config_dir(self) -> Path:
        if self.config_dir is not None:
            return self.config_dir.expanduser()
        base = os.environ.get("XDG_CONFIG_HOME") or "~/.config"
        return Path(base).expanduser() / "critical-response"

    @property
    def effective_database_url(self) -> str:
        if self.database_url is not None and self.database_url.get_secret_value():
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'critical-response.db'}"

    @property
    def effective_audit_key_file(self) -> Path:
        return (self.audit_key_file or self.data_dir / "audit-key.json").expanduser()

    @property
    def effective_audit_checkpoint_file(self) -> Path:
        return (
            self.audit_checkpoint_file or self.data_dir / "audit-checkpoints.jsonl"
        ).expanduser()

    @property
    def effective_keystore_url(self) -> str:
        return self.keystore_url or self.effective_database_url

    @property
    def effective_sandbox_state_file(self) -> Path | None:
        """The sandbox's state file, or None to keep its state in memory only."""
        if self.sandbox_state_file is None:
            return self.data_dir / "sandbox-state.json"
        if self.sandbox_state_file.strip() in ("", ":memory:"):
            return None
        return Path(self.sandbox_state_file).expanduser()

    @property
    def sandbox_url(self) -> str:
        return f"http://{self.sandbox_host}:{self.sandbox_port}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
