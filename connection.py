"""How every process reaches Temporal, and how it leaves.

``connect`` reads address, namespace, TLS/mTLS or API key from settings. ``DATA_CONVERTER`` is the
one data converter of the project (pydantic models on both sides of every workflow input, Update and
query; ``data_converter`` builds it): every client, worker, replayer and history decoder takes it
from here. It seals every payload (``encryption/``: AES-256-GCM, an incident's payloads under its
own data key) and moves failure messages and stack traces into a sealed payload too, unless
``CR_PAYLOAD_ENCRYPTION=false``. Readers of raw history (``fetch_history``) undo the codec with
``decode_payloads`` and ``failure_message``. ``exit_process`` (``process.py``, re-exported here) is
the one way a short-lived process that used a Temporal client ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    SerializationContext,
)
from temporalio.service import TLSConfig

from encryption.codec import EncryptionCodec, Keys, shared_keys
from process import exit_process as exit_process  # every process ends the same way
from settings import Settings, get_settings


class SealedDataConverter(DataConverter):
    """A data converter whose contexts are made once per data key.

    The worker asks for a converter in the context of each payload it visits (every activity's
    arguments and result, every marker), and the SDK builds a new one each time: a new payload
    converter and its type caches. Only the codec depends on the context, through the workflow
    whose key seals it (pydantic's converters take none), so one converter per key scope serves
    every context of that scope. A bounded number are kept (``KEPT``), then the oldest go.
    """

    KEPT = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "_by_scope", {})

    def with_context(self, context: SerializationContext) -> Self:
        codec = self.payload_codec
        if not isinstance(codec, EncryptionCodec):
            return super().with_context(context)
        scope = codec.with_context(context).scope
        kept: dict[str | None, Self] = self._by_scope  # type: ignore[attr-defined]
        found = kept.get(scope)
        if found is None:
            found = super().with_context(context)
            if len(kept) >= self.KEPT:
                kept.pop(next(iter(kept)), None)
            kept[scope] = found
        return found


def data_converter(settings: Settings | None = None, keys: Keys | None = None) -> DataConverter:
    """Pydantic payloads, sealed by the encryption codec (keys as the settings say, read at first
    use; or ``keys``), failures' messages sealed with them; plain pydantic when encryption is off."""
    settings = settings or get_settings()
    if not settings.payload_encryption:
        return pydantic_data_converter
    return SealedDataConverter(
        payload_converter_class=pydantic_data_converter.payload_converter_class,
        payload_codec=EncryptionCodec(keys or shared_keys()),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


DATA_CONVERTER: DataConverter = data_converter()


def decode_payloads(payloads: Sequence[Payload]) -> list[Payload]:
    """``payloads`` from raw history with the codec undone (plain ones pass through)."""
    codec = DATA_CONVERTER.payload_codec
    if isinstance(codec, EncryptionCodec):
        return codec.decode_sync(payloads)
    return list(payloads)


def failure_message(failure: Failure) -> str:
    """A raw history failure's message, opened if it was sealed in its encoded attributes."""
    if not failure.HasField("encoded_attributes"):
        return failure.message
    try:
        [opened] = decode_payloads([failure.encoded_attributes])
        attributes = DATA_CONVERTER.payload_converter.from_payloads([opened])[0]
    except Exception as err:  # noqa: BLE001 - say why the message cannot be shown, never crash
        return f"{failure.message} (sealed; cannot be opened here: {err})"
    message = attributes.get("message") if isinstance(attributes, dict) else None
    return message if isinstance(message, str) else failure.message


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
