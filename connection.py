"""How every process reaches Temporal, and how it leaves.

``connect`` reads address, namespace, TLS/mTLS or API key from settings. ``DATA_CONVERTER`` is the
one data converter of the project (pydantic models on both sides of every workflow input, Update and
query): every client, worker, replayer and history decoder takes it from here, so a payload codec
added later reaches all of them at once. ``exit_process`` is the one way a short-lived process that
used a Temporal client ends.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.service import TLSConfig

from settings import Settings, get_settings

DATA_CONVERTER: DataConverter = pydantic_data_converter


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
        data_converter=DATA_CONVERTER,
    )


def exit_process(code: int) -> NoReturn:
    """Flush and end now, skipping interpreter teardown: the SDK's native threads can abort it
    once a Temporal client or worker has run (temporalio/sdk-python issue 300)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
