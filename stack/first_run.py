"""The first `make run` on a data directory: the local user becomes an admin with a token.

So the two-command start needs no manual step: the roster gets one person (``$CR_ACTOR`` or
``$USER``) holding every role the shipped playbooks use and in every restricted group, and a personal API token for them is
written to ``<data dir>/local-admin.token`` (mode 0600) for the CLI and curl. Production rosters
are imported (`incident roster import`), never made here.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from api.authz import READERS, RESTRICTED_PLAYBOOKS
from roster import service, tokens
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
