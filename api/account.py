"""The signed-in person's own account: who the token says they are, and a fresh personal token.

`incident whoami` and `incident login` use these. A person mints tokens only for themselves and
only with a personal token (a service account's token cannot mint more); admins create tokens for
others with `incident token create`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from api import authz
from api.bodies import TokenBody
from api.routes import caller
from roster import tokens

router = APIRouter()
Caller = Annotated[authz.Caller, Depends(caller)]


def _describe(who: authz.Caller) -> dict[str, object]:
    return {
        "person": who.person,
        "roles": sorted(who.roles),
        "groups": sorted(who.groups),
        "service": bool(getattr(who, "service", False)),
        "token_id": getattr(who, "token_id", None),
    }


@router.get("/me")
async def me(who: Caller) -> dict[str, object]:
    """Who this token signs in as, with the roles and groups they hold now."""
    return _describe(who)


@router.post("/me/tokens", status_code=201)
async def new_token(body: TokenBody, request: Request, who: Caller) -> dict[str, object]:
    """A new personal token for the caller (the secret is in this answer only)."""
    if getattr(who, "service", False):
        raise authz.Forbidden("minting a token with a service account's token", frozenset())
    url = request.app.state.settings.effective_database_url
    secret = await asyncio.to_thread(
        tokens.create_token, who.person, name=body.name,
        expires_in=timedelta(days=body.expires_in_days), actor=who.person, url=url,
    )  # fmt: skip
    return _describe(who) | {"secret": secret, "expires_in_days": body.expires_in_days}


@router.delete("/me/token")
async def sign_out(request: Request, who: Caller) -> dict[str, object]:
    """Revoke the token this request came with (`incident logout`): it stops working at once."""
    token_id = getattr(who, "token_id", None)
    if token_id is None:  # an identity provider's session, not one of our tokens
        raise authz.Forbidden("revoking this sign-in here", frozenset())
    url = request.app.state.settings.effective_database_url
    await asyncio.to_thread(tokens.revoke, token_id, who.person, url=url)
    return {"person": who.person, "revoked": token_id}
