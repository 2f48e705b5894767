"""The intake webhook's signing secret: configured, or generated once per install (issue 10).

``CR_INTAKE_WEBHOOK_SECRET`` wins. Without it, on an install that talks to the sandbox emulators
(no real vendor configured), the secret is generated the first time it is needed (``whsec_`` and
32 random bytes in base64, the Standard Webhooks shape) and kept in
``<data dir>/intake-webhook-secret``, mode 0600. `incident up` prints it once, at the start that
created it, with the command that reads it again. With real endpoints configured the secret must
be set: a sender in production is configured from a secret manager, not from a laptop's file.

No process falls back to a secret known in advance: ``DEV_SECRET`` in ``intake/app.py`` is for
tests that set it explicitly.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

from datadir import create_private, write_private
from settings import Settings

SECRET_FILE = "intake-webhook-secret"
PREFIX = "whsec_"


def secret_file(settings: Settings) -> Path:
    return settings.data_dir / SECRET_FILE


def generate() -> str:
    """A fresh Standard Webhooks secret."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def install_secret(settings: Settings) -> tuple[str, bool]:
    """(the install's secret, True if this call created it)."""
    path = secret_file(settings)
    if create_private(path, generate() + "\n"):
        return path.read_text().strip(), True
    secret = path.read_text().strip()
    if not secret.startswith(PREFIX):  # emptied or damaged: a new one, shown as new
        secret = generate()
        write_private(path, secret + "\n")
        return secret, True
    return secret, False


def webhook_secret(settings: Settings) -> str:
    """The secret intake verifies signatures with (configured, else the install's)."""
    if settings.intake_webhook_secret is not None:
        return settings.intake_webhook_secret.get_secret_value()
    if settings.salesforce_base_url is not None:
        raise RuntimeError(
            "CR_INTAKE_WEBHOOK_SECRET must be set when real endpoints are configured"
        )
    return install_secret(settings)[0]
