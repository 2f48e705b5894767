"""The first `make run` on a data directory: the local user becomes an admin with a token.

So the two-command start needs no manual step: the roster gets one person (``$CR_ACTOR`` or
``$USER``) holding every role the shipped playbooks use and in every restricted group, and a personal API token for them is
written to ``<data dir>/local-admin.token`` (mode 0600) for the CLI and curl. Production rosters
are imported (`incident roster import`), never made here.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from api.authz import READERS, RESTRICTED_PLAYBOOKS
from roster import passwords, service, tokens
from settings import Settings

LOCAL_ROLES = tuple(sorted(READERS))  # every role a person can hold, admin included
# ... and every restricted group, so the laptop's one person can run every shipped playbook.
LOCAL_GROUPS = tuple(sorted(set(RESTRICTED_PLAYBOOKS.values())))


def local_person() -> str:
    raw = os.environ.get("CR_ACTOR") or os.environ.get("USER") or "local-admin"
    handle = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in raw.lower())
    return handle[:60] or "local-admin"


def token_file(settings: Settings) -> Path:
    return settings.local_admin_token_file


def ensure_local_admin(settings: Settings) -> Path | None:
    """On a roster with nobody in it: the local admin and their token file; else None."""
    url = settings.effective_database_url
    if service.list_people(url=url):
        return None
    person = local_person()
    service.add_person(
        person, display_name=f"{person} (local admin)", roles=LOCAL_ROLES, groups=LOCAL_GROUPS,
        actor="incident up", url=url,
    )  # fmt: skip
    secret = tokens.create_token(
        person, name="local admin (make run)", expires_in=timedelta(days=90),
        actor="incident up", url=url,
    )  # fmt: skip
    path = token_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return path


def ensure_console_password(settings: Settings) -> Path | None:
    """The local admin's console password file (``<data dir>/local-admin.password``, 0600): made
    with a random password the first time the local admin has none; None when the local person
    is not on the roster (a production roster) or has a password set some other way."""
    url = settings.effective_database_url
    person = local_person()
    path = settings.data_dir / "local-admin.password"
    if path.exists():
        return path
    if service.get_person(person, url=url) is None or passwords.has_password(person, url=url):
        return None
    secret = secrets.token_urlsafe(18)
    passwords.set_password(person, secret, actor="incident up", url=url)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return path
