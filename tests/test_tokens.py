"""Personal API tokens (issue 9): the secret once, only its hash kept, refusals with their codes at
once (no cache), last use recorded, creation and revocation audited without the secret."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from audit.verify import verify
from roster import journal, service, tokens
from roster.tables import ApiToken, roster_engine
from roster.tokens import AuthError, Principal
from tests.records_db import both_backends, records_url  # noqa: F401 - the fixture
from tests.test_roster import cli, url  # noqa: F401 - fixtures

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
pytestmark = both_backends


@pytest.fixture
def lena(url):  # noqa: F811
    service.add_person("lena", display_name="Lena", roles=["ic", "legal"], groups=["child-safety"],
                       actor="admin", url=url)  # fmt: skip
    return url


def refused(secret: str | None, db: str, **kw) -> AuthError:
    with pytest.raises(AuthError) as caught:
        tokens.authenticate(secret, url=db, **kw)
    assert "\n" not in caught.value.message
    return caught.value


def test_a_token_works_and_records_its_last_use(lena):
    secret = tokens.create_token("lena", name="laptop", expires_in=timedelta(days=90),
                                 actor="admin", url=lena, now=T0)  # fmt: skip
    assert secret.startswith("crt_") and len(secret) > 40
    principal = tokens.authenticate(secret, url=lena, now=T0 + timedelta(days=1))
    assert principal == Principal(
        person="lena", roles=frozenset({"ic", "legal"}), groups=frozenset({"child-safety"}),
        service=False, token_id=principal.token_id,
    )  # fmt: skip
    with pytest.raises(AttributeError):
        principal.person = "mallory"  # type: ignore[misc]
    [row] = tokens.list_tokens("lena", url=lena)
    assert row.last_used_at is not None and row.last_used_at.replace(tzinfo=UTC) == T0 + timedelta(
        days=1
    )
    # a role granted later is seen at once
    service.grant_role("lena", "privacy", actor="admin", url=lena)
    assert "privacy" in tokens.authenticate(secret, url=lena, now=T0).roles


def test_only_the_hash_is_stored_and_the_secret_never_logged(lena):
    secret = tokens.create_token("lena", name="laptop", expires_in=timedelta(days=1),
                                 actor="admin", url=lena)  # fmt: skip
    with Session(roster_engine(lena)) as s:
        [row] = s.exec(select(ApiToken)).all()
    assert secret not in repr(row.model_dump())
    assert row.secret_sha256 == tokens.hash_secret(secret)
    assert all(secret not in r.detail for r in journal.entries(lena))
    assert any(
        f"token {row.id} (laptop) created for lena" in r.detail for r in journal.entries(lena)
    )


def test_expired_revoked_unknown_missing_and_inactive_fail_at_once(lena):
    short = tokens.create_token("lena", name="short", expires_in=timedelta(hours=1),
                                actor="admin", url=lena, now=T0)  # fmt: skip
    tokens.authenticate(short, url=lena, now=T0 + timedelta(minutes=59))
    assert refused(short, lena, now=T0 + timedelta(hours=1)).code == "expired"

    secret = tokens.create_token("lena", name="laptop", expires_in=timedelta(days=90),
                                 actor="admin", url=lena)  # fmt: skip
    principal = tokens.authenticate(secret, url=lena)
    assert tokens.revoke(principal.token_id, "admin", url=lena)
    err = refused(secret, lena)
    assert err.code == "revoked" and principal.token_id in err.message
    assert not tokens.revoke(principal.token_id, "admin", url=lena)

    assert refused("crt_never-issued", lena).code == "unknown"
    assert refused("", lena).code == "missing"
    assert refused(None, lena).code == "missing"

    other = tokens.create_token("lena", name="other", expires_in=None, actor="admin", url=lena)
    service.deactivate_person("lena", actor="admin", url=lena)
    assert refused(other, lena).code == "inactive"
    with pytest.raises(service.RosterError, match="deactivated"):
        tokens.create_token("lena", name="x", expires_in=None, actor="admin", url=lena)


def test_service_tokens_and_audit_of_revocation(lena):
    service.add_person("intake", display_name="Intake webhook", actor="admin", url=lena)
    secret = tokens.create_token("intake", name="webhook", expires_in=None, service=True,
                                 actor="admin", url=lena)  # fmt: skip
    principal = tokens.authenticate(secret, url=lena)
    assert principal.service and principal.roles == frozenset()
    tokens.revoke(principal.token_id, "root", url=lena)
    last = journal.entries(lena)[-1]
    assert (
        last.actor == "root"
        and last.detail == f"token {principal.token_id} (webhook) of intake revoked"
    )
    assert verify().ok


def test_token_commands(cli, capsys):  # noqa: F811
    assert cli(["people", "add", "lena", "--name", "Lena", "--role", "ic"]) == 0
    capsys.readouterr()
    assert cli(["token", "create", "lena", "--name", "laptop", "--expires", "30d"]) == 0
    out, err = capsys.readouterr()
    secret = out.strip()
    assert secret.startswith("crt_") and "shown once" in err
    principal = tokens.authenticate(secret)
    assert cli(["token", "list", "lena", "--json"]) == 0
    listed = capsys.readouterr().out
    assert principal.token_id in listed and secret not in listed
    assert cli(["token", "revoke", principal.token_id]) == 0
    with pytest.raises(AuthError, match="revoked"):
        tokens.authenticate(secret)
