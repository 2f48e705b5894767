"""The `incident` command as a client of the API (issue 9): where it finds its token, how it signs
in and out, and every API refusal as one line naming what is wrong. The API is served for real
(uvicorn over loopback) with the roster's own tokens; signing in needs no Temporal."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

import starter
from api.app import create_app
from client.http import Api, find_credentials, problem, token_file
from roster import journal, service, tokens
from sandbox.server import free_port
from settings import Settings, get_settings
from terminal import CliError


@pytest.fixture
def served(tmp_path, monkeypatch) -> Iterator[Settings]:
    """The API on a free port, a roster with an admin and Lena (legal), and the CLI pointed at it."""
    port = free_port()
    env = {"CR_DATA_DIR": str(tmp_path / "data"), "CR_CONFIG_DIR": str(tmp_path / "config"),
           "CR_DATABASE_URL": f"sqlite:///{tmp_path / 'cr.db'}", "CR_API_PORT": str(port)}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CR_API_TOKEN", raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    url = settings.effective_database_url
    service.add_person("lena", display_name="Lena", roles=["legal"], actor="admin", url=url)
    config = uvicorn.Config(create_app(settings, client=object()), host="127.0.0.1", port=port,
                            log_level="warning", log_config=None)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    yield settings
    server.should_exit = True
    thread.join(timeout=10)
    get_settings.cache_clear()


def run(args: list[str], capsys, stdin: str = "") -> tuple[int, str, str]:
    old = os.sys.stdin  # type: ignore[attr-defined]
    os.sys.stdin = io.StringIO(stdin)  # type: ignore[attr-defined]
    try:
        code = starter.run(args)
    finally:
        os.sys.stdin = old  # type: ignore[attr-defined]
    out, err = capsys.readouterr()
    return code, out, err


def mint(settings: Settings, person: str = "lena", **kw) -> str:
    return tokens.create_token(person, name="test", expires_in=kw.pop("expires_in", None),
                               actor="admin", url=settings.effective_database_url, **kw)  # fmt: skip


def test_login_checks_the_token_keeps_it_private_and_signs_every_command(served, capsys):
    secret = mint(served)
    code, out, err = run(["login", "--json"], capsys, stdin=secret + "\n")
    assert code == 0, err
    assert json.loads(out)["person"] == "lena"
    path = token_file(served)
    assert path.read_text().strip() == secret
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    code, out, _ = run(["whoami", "--json"], capsys)
    assert code == 0 and json.loads(out) | {} == json.loads(out)
    me = json.loads(out)
    assert (me["person"], me["roles"], me["token_source"]) == ("lena", ["legal"], str(path))

    # Lena holds legal only: opening is a commander's action, refused at the door with the roles.
    code, out, err = run(["open", "--playbook", "preservation", "--summary", "s"], capsys)
    assert code == 1 and out == ""
    assert (
        err
        == "error: refused (forbidden): open needs one of the roles: admin, cr, cr_lead, ic, intake, mgr\n"
    )

    # Logging out revokes the token at the API and forgets it; the old secret no longer works.
    code, out, err = run(["logout"], capsys)
    assert code == 0 and "revoked" in out and not path.exists()
    code, _, err = run(["whoami"], capsys)
    assert code == 1 and err.startswith("error: not signed in: run `incident login`")
    answer = httpx.get(f"{served.effective_api_url}/me",
                       headers={"authorization": f"Bearer {secret}"})  # fmt: skip
    assert (answer.status_code, answer.json()["error"]) == (401, "revoked")


def test_a_bad_token_is_not_kept(served, capsys):
    code, _, err = run(["login"], capsys, stdin="crt_not-a-real-token\n")
    assert code == 1 and not token_file(served).exists()
    assert err.startswith("error: not signed in (unknown): unknown API token")
    assert err.count("\n") == 1


def test_renew_mints_a_personal_token_with_the_current_one(served, capsys, monkeypatch):
    first = mint(served)
    monkeypatch.setenv("CR_API_TOKEN", first)
    code, out, err = run(["login", "--renew", "--name", "laptop", "--days", "7", "--json"], capsys)
    assert code == 0, err
    kept = token_file(served).read_text().strip()
    assert kept != first and kept.startswith("crt_")
    listed = tokens.list_tokens("lena", url=served.effective_database_url)
    assert {t.name for t in listed} == {"test", "laptop"}
    code, _, err = run(["login", "--renew", "--days", "999"], capsys)
    assert (code, err) == (1, "error: --days: input should be less than or equal to 365\n")


def test_the_token_is_found_in_order_env_login_file_local_admin(served, monkeypatch):
    admin_file = served.local_admin_token_file
    admin_file.parent.mkdir(parents=True, exist_ok=True)
    admin_file.write_text("crt_admin\n")
    admin_file.chmod(0o600)
    assert find_credentials(served).source == str(admin_file)
    login_file = token_file(served)
    login_file.parent.mkdir(parents=True, exist_ok=True)
    login_file.write_text("crt_login\n")
    login_file.chmod(0o644)  # readable by others: refused, never used
    with pytest.raises(CliError, match=r"may be read by others \(mode 0644\): `chmod 600"):
        find_credentials(served)
    login_file.chmod(0o600)
    assert find_credentials(served).token == "crt_login"
    monkeypatch.setenv("CR_API_TOKEN", "crt_env")
    assert find_credentials(served).token == "crt_env"


def test_a_refusal_by_a_known_person_is_in_the_access_log(served, capsys, monkeypatch):
    secret = mint(served)
    monkeypatch.setenv("CR_API_TOKEN", secret)
    code, _, err = run(["ack", "X"], capsys)
    assert code == 1 and "ack needs one of the roles" in err
    expired = mint(served, expires_in=timedelta(days=1), now=datetime.now(UTC) - timedelta(days=2))
    monkeypatch.setenv("CR_API_TOKEN", expired)
    code, _, err = run(["status", "X"], capsys)
    assert code == 1 and err.startswith("error: not signed in (expired)")
    assert "sign in again with `incident login`" in err
    monkeypatch.setenv("CR_API_TOKEN", "crt_nobody")  # names nobody: logged, not audited
    assert run(["status", "X"], capsys)[0] == 1
    logged = journal.entries(served.effective_database_url, stream=journal.ACCESS_ID)
    assert [(e.actor, e.action) for e in logged] == [("lena", "access_refused"),
                                                  ("token holder", "access_refused")]  # fmt: skip
    assert "POST /incidents/X/actions/ack: forbidden" in logged[0].detail
    assert "expired" in logged[1].detail


def test_the_api_unreachable_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CR_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("CR_API_TOKEN", "crt_x")
    get_settings.cache_clear()
    try:
        code, out, err = run(["status", "X"], capsys)
    finally:
        get_settings.cache_clear()
    assert (code, out) == (1, "")
    assert (
        err.startswith("error: cannot reach the API at http://127.0.0.1:") and err.count("\n") == 1
    )


@pytest.mark.parametrize("status,answer,line", [
    (401, {"error": "revoked", "message": "API token t1 was revoked"},
     "not signed in (revoked): API token t1 was revoked; sign in again with `incident login`"),
    (403, {"error": "forbidden", "message": "deciding as legal needs one of the roles: legal"},
     "refused (forbidden): deciding as legal needs one of the roles: legal"),
    (403, {"error": "self_approval", "message": "lena requested this approval"},
     "refused (self_approval): lena requested this approval"),
    (404, {"error": "not_found", "message": "no incident X"}, "not found: no incident X"),
    (409, {"error": "approval_refused", "message": "reject refused (already_decided): done"},
     "reject refused (already_decided): done"),
    (422, {"error": "invalid_request", "message": "summary: too long\nforged"},
     "invalid request: summary: too long\\nforged"),
    (503, {"error": "temporal_unavailable", "message": "down"}, "the API failed (temporal_unavailable): down"),
    (502, "<html>bad gateway</html>", "the API answered 502: <html>bad gateway</html>"),
])  # fmt: skip
def test_every_refusal_is_one_line(status, answer, line):
    content = answer if isinstance(answer, str) else json.dumps(answer)
    assert problem(httpx.Response(status, content=content)) == line


def test_nothing_is_left_in_the_config_dir_when_a_store_fails(tmp_path):
    from client.session import _store

    target = tmp_path / "cfg" / "token"
    _store(target, "crt_one")
    with pytest.raises(TypeError):
        _store(target, None)  # type: ignore[arg-type]
    assert target.read_text() == "crt_one\n"
    assert [p.name for p in Path(target.parent).iterdir()] == ["token"]


def test_certificates_are_checked_for_an_https_api_or_behind_a_proxy(monkeypatch):
    """The embedded stack's http API reads no certificate store (issue 11: ~40 ms a command);
    an https API, or any proxy from the environment, is verified as always."""
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert Api(Settings(api_url="http://127.0.0.1:8789"), token="t").tls is False
    assert Api(Settings(api_url="https://api.example.org"), token="t").tls is True
    monkeypatch.setenv("HTTPS_PROXY", "https://proxy.example.org:3128")
    assert Api(Settings(api_url="http://127.0.0.1:8789"), token="t").tls is True
