"""Salesforce REST client: OAuth 2.0 (client credentials or JWT bearer), the sObject and query
calls the activities need, and the classification of every error into retryable or not.

The token comes from ``CR_SALESFORCE_BASE_URL`` (the My Domain host; ``CR_SALESFORCE_LOGIN_URL`` for
JWT) and every REST call goes to the ``instance_url`` the token response names, as with a real org,
whose instance host need not be the host that issued the token. The access token is cached per
worker process and refreshed at most once per call on 401 INVALID_SESSION_ID (Salesforce issues no
refresh token or expiry for these flows, so a 401 is the only signal). Every response's
``Sforce-Limit-Info`` is kept so activities can log and expose the org's API usage. An error keeps
Salesforce's ``errorCode`` and field names, never its message, which can quote a field's value.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import jwt
from temporalio.exceptions import ApplicationError

from activities.vendor_http import described, permanent, retryable, send
from settings import Settings

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LOGIN_HOSTS = {"login.salesforce.com", "test.salesforce.com"}


@dataclass(frozen=True)
class Token:
    access_token: str
    instance_url: str


# Per worker process: (token URL, client id, flow) -> token.
_tokens: dict[tuple[str, str, str], Token] = {}
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def forget_tokens() -> None:
    """Drop cached tokens (tests; credential rotation)."""
    _tokens.clear()


def _lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    return _locks.setdefault(loop, asyncio.Lock())


def soql_quote(value: str) -> str:
    """A SOQL string literal: backslash and quote escaped, so ids from outside cannot inject."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_errors(response: httpx.Response) -> list[tuple[str, str]]:
    """(errorCode, message) pairs from either body shape: the documented array or a bare object."""
    try:
        body = response.json()
    except ValueError:
        return [("", response.text[:200])] if response.text else []
    items = body if isinstance(body, list) else [body]
    out = []
    for item in items:
        if isinstance(item, dict):
            code = item.get("errorCode") or item.get("error") or ""
            message = item.get("message") or item.get("error_description") or ""
            out.append((str(code), str(message)))
        else:  # 300 Multiple Choices: a list of record URLs
            out.append(("MULTIPLE_CHOICES", str(item)))
    return out


def error_fields(response: httpx.Response) -> list[str]:
    """The field names a Salesforce error array names (``fields``), for the error's message."""
    try:
        body = response.json()
    except ValueError:
        return []
    items = body if isinstance(body, list) else [body]
    return [str(f) for i in items if isinstance(i, dict) for f in i.get("fields") or []]


def classify(response: httpx.Response, settings: Settings) -> ApplicationError:
    """The ApplicationError for a failed Salesforce response (shared/api-contracts.md section 1);
    its message names the type, status, ``errorCode`` and fields: never Salesforce's text."""
    status = response.status_code
    errors = parse_errors(response)
    code, message = errors[0] if errors else ("", response.reason_phrase)
    fields = error_fields(response)

    def text(type: str, where: str | None = None) -> str:
        return described(type, status, where=where, code=code, fields=fields)

    if status == 300:
        return permanent(
            f"SalesforceAmbiguous 300: external id matches {len(errors)} records",
            "SalesforceAmbiguous",
        )
    if code == "UNABLE_TO_LOCK_ROW":
        return retryable(text("SalesforceRowLocked"), "SalesforceRowLocked")
    if status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
        if "TotalRequests" in message:  # the daily allowance: only tomorrow helps
            return retryable(text("SalesforceDailyLimit", "TotalRequests"), "SalesforceDailyLimit",
                             settings.salesforce_limit_retry_seconds)  # fmt: skip
        return retryable(text("SalesforceConcurrencyLimit"), "SalesforceConcurrencyLimit")
    if status == 401:
        return retryable(text("SalesforceAuthError"), "SalesforceAuthError")
    if status >= 500:
        return retryable(text("VendorServerError"), "VendorServerError")
    if status == 410:
        where = f"(CR_SALESFORCE_API_VERSION={settings.salesforce_api_version})"
        return permanent(text("SalesforceApiRetired", where), "SalesforceApiRetired")
    if status == 404:
        return permanent(text("SalesforceNotFound"), "SalesforceNotFound")
    kind = "SalesforceValidationError" if status == 400 else "SalesforceError"
    return permanent(text(kind), kind)


class SalesforceClient:
    """One activity's view of the org: shared token cache and HTTP pool, its own usage reading."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limit_info: str | None = None

    # --- OAuth ------------------------------------------------------------------------------

    @property
    def _token_url(self) -> str:
        s = self.settings
        host = s.salesforce_login_url if s.salesforce_auth_flow == "jwt" else None
        return (host or s.effective_salesforce_url).rstrip("/") + "/services/oauth2/token"

    @property
    def _cache_key(self) -> tuple[str, str, str]:
        s = self.settings
        return (self._token_url, s.salesforce_client_id, s.salesforce_auth_flow)

    def _grant(self) -> dict[str, str]:
        s = self.settings
        if s.salesforce_auth_flow == "jwt":
            return {"grant_type": JWT_GRANT, "assertion": self._assertion()}
        if s.salesforce_auth_flow != "client_credentials":
            raise permanent(f"unknown CR_SALESFORCE_AUTH_FLOW {s.salesforce_auth_flow!r}",
                            "SalesforceConfigError")  # fmt: skip
        if urlsplit(self._token_url).hostname in LOGIN_HOSTS:
            raise permanent("client credentials need the My Domain host, not login/test",
                            "SalesforceConfigError")  # fmt: skip
        return {
            "grant_type": "client_credentials",
            "client_id": s.salesforce_client_id,
            "client_secret": s.salesforce_client_secret.get_secret_value(),
        }

    def _assertion(self) -> str:
        s = self.settings
        if s.salesforce_private_key is not None:
            key = s.salesforce_private_key.get_secret_value()
        elif s.salesforce_private_key_file is not None:
            key = s.salesforce_private_key_file.read_text()
        else:
            raise permanent(
                "JWT flow needs CR_SALESFORCE_PRIVATE_KEY(_FILE)", "SalesforceConfigError"
            )
        claims = {
            "iss": s.salesforce_client_id,
            "sub": s.salesforce_username,
            "aud": s.salesforce_jwt_audience,
            "exp": int(time.time()) + 180,  # seconds, a few minutes ahead
        }
        return jwt.encode(claims, key, algorithm="RS256")

    async def _fetch_token(self) -> Token:
        response = await send(
            "POST", self._token_url, vendor="salesforce", data=self._grant(),
            timeout=self.settings.http_timeout_seconds,
        )  # fmt: skip
        if response.status_code != 200:
            err = classify(response, self.settings)
            if response.status_code == 400:  # invalid_client / invalid_grant: configuration
                errors = parse_errors(response)
                code = errors[0][0] if errors else None
                raise permanent(
                    described("SalesforceAuthError", 400, where="token", code=code),
                    "SalesforceAuthError",
                )
            raise err
        try:
            body = response.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        instance = str(body.get("instance_url") or "").rstrip("/")
        if not body.get("access_token") or not instance.startswith(("https://", "http://")):
            raise permanent(
                "Salesforce token: the response has no access_token or instance_url",
                "SalesforceAuthError",
            )
        return Token(str(body["access_token"]), instance)

    async def token(self, stale: Token | None = None) -> Token:
        """The cached token, fetching one if there is none or the cached one is ``stale``."""
        key = self._cache_key
        async with _lock():
            current = _tokens.get(key)
            if current is None or current == stale:
                current = await self._fetch_token()
                _tokens[key] = current
            return current

    # --- REST ---------------------------------------------------------------------------------

    def _url(self, token: Token, path: str) -> str:
        if path.startswith("/services/"):
            return token.instance_url + path
        return f"{token.instance_url}/services/data/{self.settings.salesforce_api_version}{path}"

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authenticated call; one token refresh on 401, then errors are classified."""
        token = await self.token()
        response = await self._send(token, method, path, **kwargs)
        if response.status_code == 401:
            token = await self.token(stale=token)
            response = await self._send(token, method, path, **kwargs)
        if response.status_code >= 300:
            raise classify(response, self.settings)
        return response

    async def _send(self, token: Token, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token.access_token}"}
        response = await send(
            method, self._url(token, path), vendor="salesforce", headers=headers,
            timeout=self.settings.http_timeout_seconds, **kwargs,
        )  # fmt: skip
        self.limit_info = response.headers.get("sforce-limit-info", self.limit_info)
        return response

    def limit_data(self) -> dict[str, str]:
        """``Sforce-Limit-Info`` usage for logs and ``ActionResult.data`` (e.g. ``18/15000``)."""
        if not self.limit_info:
            return {}
        parts = dict(p.strip().split("=", 1) for p in self.limit_info.split(",") if "=" in p)
        return {"api_usage": parts.get("api-usage", self.limit_info)}

    async def upsert(
        self, sobject: str, field: str, value: str, fields: dict[str, Any]
    ) -> tuple[str, bool]:
        """(record id, created) for an upsert by external id."""
        path = f"/sobjects/{sobject}/{field}/{quote(value, safe='')}"
        response = await self.call("PATCH", path, json=fields)
        if response.status_code == 204:  # API <= 45.0 answers an update with no body
            rows = await self.query(
                f"SELECT Id FROM {sobject} WHERE {field} = {soql_quote(value)} LIMIT 1"
            )
            return str(rows[0]["Id"]), False
        body = response.json()
        return str(body["id"]), bool(body.get("created", response.status_code == 201))

    async def create(self, sobject: str, fields: dict[str, Any]) -> str:
        response = await self.call("POST", f"/sobjects/{sobject}/", json=fields)
        return str(response.json()["id"])

    async def update(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None:
        await self.call("PATCH", f"/sobjects/{sobject}/{record_id}", json=fields)

    async def query(self, soql: str) -> list[dict[str, Any]]:
        """All records of a SOQL query, following ``nextRecordsUrl``."""
        body = (await self.call("GET", "/query", params={"q": soql})).json()
        records = list(body.get("records", []))
        while not body.get("done", True) and body.get("nextRecordsUrl"):
            body = (await self.call("GET", body["nextRecordsUrl"])).json()
            records.extend(body.get("records", []))
        return records

    async def find_marked(
        self, sobject: str, parent_field: str, parent_id: str, text_field: str, marker: str
    ) -> str | None:
        """Id of the child record whose text carries ``marker``, if one was already created.

        Long text fields cannot be filtered in SOQL, so the children are listed and matched here.
        """
        soql = (
            f"SELECT Id, {text_field} FROM {sobject} WHERE {parent_field} = "
            f"{soql_quote(parent_id)} ORDER BY CreatedDate DESC"
        )
        for row in await self.query(soql):
            if marker in str(row.get(text_field) or ""):
                return str(row["Id"])
        return None
