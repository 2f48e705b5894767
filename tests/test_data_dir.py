"""The data directory is private (issue 10): the directory 0700, every file written in it 0600,
the dev server's too; the intake secret is generated per install and shown once.

Run under umask 022 (what a login shell gives): each file must be private by itself, not only
because an entry point set umask 077.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from datadir import loose_files, secure_dir, write_output
from identity.keys import load_or_create
from intake.secret import install_secret, secret_file
from records.store import reset_engines
from sandbox.server import free_port
from sandbox.state import SandboxState
from settings import Settings, get_settings
from stack import up
from stack.devserver import start_dev_server, stop_process
from stack.first_run import ensure_local_admin

UNSET = (
    "CR_DATABASE_URL", "CR_AUDIT_KEY_FILE", "CR_AUDIT_CHECKPOINT_FILE", "CR_SANDBOX_STATE_FILE",
    "CR_INTAKE_WEBHOOK_SECRET", "CR_SALESFORCE_BASE_URL",
)  # fmt: skip
WRITTEN = {
    "critical-response.db", "critical-response.db-wal", "local-admin.token", "signing-keys.json",
    "intake-webhook-secret", "sandbox-state.json",
}  # fmt: skip


@pytest.fixture
def open_umask() -> Iterator[None]:
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


@pytest.fixture
def install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask: None
) -> Iterator[Settings]:
    """Settings of a fresh install whose data directory is ``tmp_path / "data"``."""
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CR_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    reset_engines()
    yield get_settings()
    reset_engines()
    get_settings.cache_clear()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_file_a_start_writes_is_private(install: Settings, tmp_path: Path):
    data = secure_dir(install.data_dir)
    assert ensure_local_admin(install) == install.local_admin_token_file  # records db, roster
    load_or_create(data)  # the API's signing keys
    install_secret(install)
    sandbox = SandboxState.open(install.effective_sandbox_state_file, 100)
    sandbox.commit(sync=True)
    names = {p.name for p in data.iterdir()}
    assert names >= WRITTEN, names
    sandbox.close()
    assert mode(data) == 0o700
    assert loose_files(data) == []
    export = write_output(tmp_path / "export.json", "{}")  # `incident audit export --out`
    assert mode(export) == 0o600


def test_an_older_install_is_tightened(tmp_path: Path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for name in ("temporal.db", "temporal.log", "sub/x.json"):
        (data / name).write_text("x")
        os.chmod(data / name, 0o644)
    os.chmod(data, 0o755)
    (data / "link").symlink_to("/etc/hostname")
    assert len(loose_files(data)) == 5
    secure_dir(data)
    assert loose_files(data) == [] and mode(data / "temporal.db") == 0o600


@pytest.mark.e2e
def test_the_dev_server_writes_private_files(tmp_path: Path, open_umask: None):
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path / "data",
        temporal_address=f"127.0.0.1:{free_port()}", ui_port=free_port(),
    )  # fmt: skip
    server = start_dev_server(settings)
    try:
        files = {p.name for p in settings.data_dir.iterdir()}
        assert {"temporal.db", "temporal.log"} <= files, files
        assert loose_files(settings.data_dir) == []
    finally:
        stop_process(server)
    assert loose_files(settings.data_dir) == []


def test_incident_up_shows_a_new_intake_secret_once(install: Settings, capsys):
    shown = up._intake_secret(install)
    assert shown is not None and shown.startswith("whsec_")
    up._print_addresses(
        install, embedded=True, sandbox=True, token=None, keys="sealed", new_secret=shown
    )
    first = capsys.readouterr().out
    assert shown in first and f"cat {secret_file(install)}" in first
    assert up._intake_secret(install) is None  # the next start shows where it is, not the secret
    up._print_addresses(install, embedded=True, sandbox=True, token=None, keys="sealed")
    again = capsys.readouterr().out
    assert shown not in again and f"signing secret in {secret_file(install)}" in again
    assert mode(secret_file(install)) == 0o600


def test_a_configured_secret_is_used_and_never_printed(install: Settings, monkeypatch, capsys):
    monkeypatch.setenv("CR_INTAKE_WEBHOOK_SECRET", "whsec_Y29uZmlndXJlZC1zZWNyZXQ=")
    get_settings.cache_clear()
    settings = get_settings()
    assert up._intake_secret(settings) is None and not secret_file(settings).exists()
    up._print_addresses(settings, embedded=True, sandbox=True, token=None, keys="sealed")
    out = capsys.readouterr().out
    assert "signed with CR_INTAKE_WEBHOOK_SECRET" in out and "whsec_" not in out
    assert "Y29uZmlndXJlZC1zZWNyZXQ" not in repr(settings)  # a SecretStr: never in a repr or log
