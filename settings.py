"""Configuration for every process of critical-response (CLI, worker, embedded stack, intake).

Values come from environment variables prefixed ``CR_`` (or a ``.env`` file), so the same code talks to
the embedded dev server and sandbox emulators on a laptop and to a Temporal cluster, Temporal Cloud and
the real vendors in production. Workflow code never reads settings: whatever an incident needs (the
playbook, the business calendar) is snapshotted into its input when it is opened.
"""

from __future__ import annotations

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
    # Salesforce calls get their own queue so the fleet shares one org-wide rate limit.
    salesforce_max_activities_per_second: float = 20.0

    # --- Embedded stack (`make run`) ----------------------------------------------------------
    data_dir: Path = PROJECT_ROOT / ".data"
    ui_port: int = 8233
    retention_days: int = 3650
    playbooks_dir: Path = PROJECT_ROOT / "playbooks"
    cli_timeout_seconds: float = 30.0

    # --- Business calendar, snapshotted into each incident at open ---------------------------
    business_timezone: str = "America/Los_Angeles"
    business_days: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    business_start: str = "09:00"
    business_end: str = "17:00"

    # --- Records --------------------------------------------------------------------------------
    database_url: str | None = None

    # --- Integrations (base URLs point at the sandbox emulators unless configured) ------------
    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = 8787
    salesforce_base_url: str | None = None
    salesforce_api_version: str = "v62.0"
    salesforce_client_id: str = "sandbox-client"
    salesforce_client_secret: SecretStr = SecretStr("sandbox-secret")
    pagerduty_url: str | None = None
    slack_webhook_url: str | None = None
    default_slack_channel: str = "#tns-critical-response"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'critical-response.db'}"

    @property
    def sandbox_url(self) -> str:
        return f"http://{self.sandbox_host}:{self.sandbox_port}"

    @property
    def salesforce_task_queue(self) -> str:
        return salesforce_queue(self.task_queue)


def salesforce_queue(task_queue: str) -> str:
    """Name of the Salesforce queue beside ``task_queue`` (the workflow derives it the same way)."""
    return f"{task_queue}-salesforce"


@lru_cache
def get_settings() -> Settings:
    return Settings()
