"""What the console's tests share: the people (real roster rows with console passwords and API
tokens), the test-only playbooks beside the shipped ones, and signing in through the form as a
browser does (the sign-in page's CSRF token, then the session cookie)."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import httpx

from roster import passwords, service, tokens

HERE = Path(__file__).resolve().parent
TEST_PLAYBOOKS = HERE / "console_playbooks"
SHIPPED = HERE.parent / "playbooks"
PASSWORD = "correct horse battery staple"
# handle -> (roles, groups): the console's cast, on the records database the test points at
PEOPLE = {
    "cc-casey": (["ic"], []),
    "cc-lena": (["legal"], []),
    "cc-audra": (["auditor"], []),
    "cc-kim": (["ic", "cr"], ["child-safety"]),
    "cc-max": (["mgr"], []),
    "cc-cole": (["comms"], []),
}


def playbooks_dir(into: Path) -> Path:
    """The shipped playbooks and the test-only ones, in one directory."""
    into.mkdir(parents=True, exist_ok=True)
    for source in (*SHIPPED.glob("*.yaml"), *TEST_PLAYBOOKS.glob("*.yaml")):
        shutil.copy(source, into / source.name)
    return into


def cast(url: str) -> dict[str, str]:
    """Everyone in ``PEOPLE`` on the roster at ``url`` with a console password; their API
    tokens (made once per database)."""
    made = {}
    for handle, (roles, groups) in PEOPLE.items():
        if service.get_person(handle, url=url) is None:
            service.add_person(handle, display_name=handle, roles=roles, groups=groups,
                               actor="test", url=url)  # fmt: skip
            passwords.set_password(handle, PASSWORD, actor="test", url=url)
        made[handle] = tokens.create_token(handle, name="console test",
                                           expires_in=timedelta(days=1), actor="test", url=url)  # fmt: skip
    return made


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html[:2000]
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, handle: str, password: str = PASSWORD) -> str:
    """Sign ``client`` in through the form; the session's CSRF token (for the forms to post)."""
    form = await client.get("/console/signin")
    r = await client.post("/console/signin", data={"handle": handle, "password": password,
                                                    "csrf": csrf_of(form.text), "next": ""})  # fmt: skip
    assert r.status_code == 303, r.text
    page = await client.get("/console/incidents")
    return csrf_of(page.text)
