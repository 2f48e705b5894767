"""How every process reaches Temporal: address, namespace, TLS/mTLS or API key from settings.

The pydantic data converter is used everywhere so workflow inputs, Updates and queries are the
models of ``workflows/models.py`` on both sides.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

from settings import Settings, get_settings


def tls_config(settings: Settings) -> TLSConfig | bool:
    if settings.temporal_tls_client_cert and settings.temporal_tls_client_key:
        return TLSConfig(
            client_cert=settings.temporal_tls_client_cert.read_bytes(),
            client_private_key=settings.temporal_tls_client_key.read_bytes(),
        )
    return settings.temporal_tls or settings.temporal_api_key is not None


async def connect(settings: Settings | None = None) -> Client:
    """A client for the configured cluster (embedded dev server, self-hosted, or Temporal Cloud)."""
    settings = settings or get_settings()
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        tls=tls_config(settings),
        api_key=api_key,
        data_converter=pydantic_data_converter,
    )
