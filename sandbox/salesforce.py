"""Emulated Salesforce REST subset: OAuth token, versions, limits, sObject create/update/upsert,
SOQL query.

Served on Salesforce's own paths at the sandbox's root (``/services/oauth2/token``,
``/services/data/vXX.X/...``), and the token response's ``instance_url`` is that root, so any
Salesforce client works against it unchanged. Status codes and bodies follow
shared/api-contracts.md section 1: errors are JSON arrays, upsert answers 201/200 (204 below v46),
300 for an ambiguous external id, 401 INVALID_SESSION_ID once a token is expired, 403
REQUEST_LIMIT_EXCEEDED when the daily allowance is spent, 410 for retired versions, and every data
response carries ``Sforce-Limit-Info``.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.faults import emulated, form_body, json_body, state_of
from sandbox.state import SalesforceOrg

FIELDS = {
    "Case": {"Subject", "Description", "Priority", "Status", "Origin", "Type", "Reason",
             "OwnerId", "AccountId", "ContactId", "Incident_Id__c"},
    "CaseComment": {"ParentId", "CommentBody", "IsPublished"},
    "Task": {"Subject", "Description", "Status", "Priority", "WhatId", "WhoId", "OwnerId",
             "ActivityDate"},
}  # fmt: skip
READ_ONLY = {"Id", "CreatedDate", "CaseNumber", "IsClosed"}
PICKLISTS = {
    ("Case", "Priority"): {"High", "Medium", "Low"},
    ("Case", "Status"): {"New", "Working", "Escalated", "Closed"},
    ("Case", "Origin"): {"Phone", "Email", "Web"},
}
EXTERNAL_IDS = {"Case": "Incident_Id__c"}
LATEST_VERSION = 66.0
ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
SOQL_RE = re.compile(
    r"^SELECT\s+(?P<fields>[\w\s,.]+?)\s+FROM\s+(?P<obj>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ORDER\s+BY\s+(?P<order>\w+)(?:\s+(?P<dir>ASC|DESC))?)?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
COND_RE = re.compile(r"^\s*(\w+)\s*=\s*'((?:[^'\\]|\\.)*)'\s*$", re.DOTALL)


class SfError(Exception):
    """An error answered as Salesforce does: a JSON array of {message, errorCode[, fields]}."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.status, self.code, self.fields = status, code, fields

    def response(self) -> Response:
        item: dict[str, Any] = {"message": str(self), "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = self.fields
        return JSONResponse([item], self.status)


def _org(request: Request) -> SalesforceOrg:
    return state_of(request).salesforce


def _limit_header(org: SalesforceOrg) -> dict[str, str]:
    return {"Sforce-Limit-Info": f"api-usage={org.api_usage}/{org.daily_limit}"}


def _instance_url(request: Request) -> str:
    """The host root, as a real org answers (``https://acme.my.salesforce.com``)."""
    return str(request.base_url).rstrip("/")


async def token(request: Request) -> Response:
    form = await form_body(request)
    org, cfg = _org(request), request.app.state.settings
    grant = form.get("grant_type")
    if grant == "client_credentials":
        ok = form.get("client_id") == cfg.salesforce_client_id and (
            form.get("client_secret") == cfg.salesforce_client_secret.get_secret_value()
        )
        if not ok:
            return _oauth_error("invalid_client", "invalid client credentials")
    elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
        problem = _check_assertion(str(form.get("assertion", "")), org, cfg.salesforce_client_id)
        if problem:
            return _oauth_error("invalid_grant", problem)
    else:
        return _oauth_error("unsupported_grant_type", "grant type not supported")
    access = "00Dsandbox!" + secrets.token_urlsafe(24)
    with state_of(request).lock:
        org.tokens[access] = True
        org.tokens_issued += 1
    body = {
        "access_token": access,
        "instance_url": _instance_url(request),
        "id": "https://login.salesforce.com/id/00D000000000001/005000000000001",
        "token_type": "Bearer",
        "scope": "api",
    }
    if grant == "client_credentials":
        body |= {"signature": "sandbox", "token_format": "opaque",
                 "issued_at": str(int(time.time() * 1000))}  # fmt: skip
    return JSONResponse(body)


def _check_assertion(assertion: str, org: SalesforceOrg, client_id: str) -> str | None:
    if not org.jwt_public_key:
        return "no certificate uploaded for this connected app"
    try:
        claims = jwt.decode(
            assertion,
            org.jwt_public_key,
            algorithms=["RS256"],
            audience=["https://login.salesforce.com", "https://test.salesforce.com"],
            options={"require": ["iss", "sub", "aud", "exp"]},
        )
    except jwt.PyJWTError as exc:
        return f"invalid assertion: {exc}"
    return None if claims["iss"] == client_id else "invalid assertion: unknown issuer"


def _oauth_error(error: str, description: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, 400)


@emulated("salesforce.versions")
async def versions(request: Request) -> Response:
    base = "/services/data"
    out = [
        {"label": "Sandbox", "url": f"{base}/v{v:.1f}", "version": f"{v:.1f}"}
        for v in (float(n) for n in range(31, int(LATEST_VERSION) + 1))
    ]
    return JSONResponse(out)


def _gate(request: Request) -> SalesforceOrg:
    """Auth, version and daily-limit checks every data call passes, counting it against usage."""
    org = _org(request)
    auth = request.headers.get("authorization", "")
    if not org.tokens.get(auth.removeprefix("Bearer ").strip(), False):
        raise SfError(401, "INVALID_SESSION_ID", "Session expired or invalid")
    version = float(request.path_params["version"])
    if version < org.min_api_version:
        raise SfError(410, "GONE", f"API version {version:.1f} has been retired")
    if version > LATEST_VERSION:
        raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
    with state_of(request).lock:
        if org.api_usage >= org.daily_limit:
            raise SfError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        org.api_usage += 1
    return org


def data_route(route: str):  # type: ignore[no-untyped-def]
    """Wrap a data handler: faults, gate, Salesforce-shaped errors, Sforce-Limit-Info."""

    def wrap(handler):  # type: ignore[no-untyped-def]
        @emulated(route)
        async def run(request: Request) -> Response:
            try:
                org = _gate(request)
                response: Response = await handler(request, org)
            except SfError as exc:
                response = exc.response()
            response.headers.update(_limit_header(_org(request)))
            return response

        return run

    return wrap


@data_route("salesforce.limits")
async def limits(request: Request, org: SalesforceOrg) -> Response:
    daily = {"Max": org.daily_limit, "Remaining": max(org.daily_limit - org.api_usage, 0)}
    return JSONResponse({"DailyApiRequests": daily})


def _check_fields(sobject: str, body: Any) -> dict[str, Any]:
    if sobject not in FIELDS:
        raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
    if not isinstance(body, dict):
        raise SfError(400, "JSON_PARSER_ERROR", "Request body is not a JSON object")
    for name, value in body.items():
        if name not in FIELDS[sobject]:
            msg = f"No such column '{name}' on sobject of type {sobject}"
            raise SfError(400, "INVALID_FIELD", msg, [name])
        allowed = PICKLISTS.get((sobject, name))
        if allowed is not None and value not in allowed:
            msg = f"{name}: bad value for restricted picklist field: {value}"
            raise SfError(400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", msg, [name])
    if sobject == "CaseComment" and len(str(body.get("CommentBody", "")).encode()) > 4000:
        raise SfError(400, "STRING_TOO_LONG", "Body: data value too large", ["CommentBody"])
    return body


def _insert(org: SalesforceOrg, sobject: str, fields: dict[str, Any]) -> str:
    if sobject == "CaseComment":
        parent = fields.get("ParentId")
        if not parent:
            raise SfError(400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [ParentId]",
                          ["ParentId"])  # fmt: skip
        if parent not in org.records.get("Case", {}):
            msg = "Parent Case: id value of incorrect type"
            raise SfError(400, "FIELD_INTEGRITY_EXCEPTION", msg, ["ParentId"])
    rid = org.new_id(sobject)
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    record = {"Id": rid, "CreatedDate": created, **fields}
    if sobject == "Case":
        record.setdefault("Status", "New")
        record["CaseNumber"] = f"{len(org.records.get('Case', {})) + 1:08d}"
    org.records.setdefault(sobject, {})[rid] = record
    return rid


@data_route("salesforce.create")
async def create(request: Request, org: SalesforceOrg) -> Response:
    sobject = request.path_params["sobject"]
    fields = _check_fields(sobject, await json_body(request))
    with state_of(request).lock:
        rid = _insert(org, sobject, fields)
    return JSONResponse({"id": rid, "success": True, "errors": []}, 201)


@data_route("salesforce.update")
async def update(request: Request, org: SalesforceOrg) -> Response:
    sobject, rid = request.path_params["sobject"], request.path_params["rid"]
    fields = _check_fields(sobject, await json_body(request))
    if not ID_RE.match(rid):
        raise SfError(400, "MALFORMED_ID", f"Case ID: id value of incorrect type: {rid}")
    with state_of(request).lock:
        record = org.records.get(sobject, {}).get(rid)
        if record is None:
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        record.update(fields)
    return Response(status_code=204)


@data_route("salesforce.get")
async def get(request: Request, org: SalesforceOrg) -> Response:
    sobject, rid = request.path_params["sobject"], request.path_params["rid"]
    record = org.records.get(sobject, {}).get(rid)
    if record is None:
        raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
    return JSONResponse(_with_attributes(sobject, record, request))


@data_route("salesforce.upsert")
async def upsert(request: Request, org: SalesforceOrg) -> Response:
    sobject, field, value = (request.path_params[k] for k in ("sobject", "field", "value"))
    if EXTERNAL_IDS.get(sobject) != field:
        raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
    fields = _check_fields(sobject, await json_body(request))
    version = float(request.path_params["version"])
    with state_of(request).lock:
        matches = [r for r in org.records.get(sobject, {}).values() if r.get(field) == value]
        if len(matches) > 1:
            urls = [_record_url(request, sobject, r["Id"]) for r in matches]
            return JSONResponse(urls, 300)
        if not matches:
            if request.query_params.get("updateOnly") == "true":
                raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
            rid = _insert(org, sobject, {**fields, field: value})
            return JSONResponse({"id": rid, "success": True, "errors": [], "created": True}, 201)
        matches[0].update(fields)
        rid = matches[0]["Id"]
    if version < 46.0:
        return Response(status_code=204)
    return JSONResponse({"id": rid, "success": True, "errors": [], "created": False}, 200)


@data_route("salesforce.query")
async def query(request: Request, org: SalesforceOrg) -> Response:
    match = SOQL_RE.match(request.query_params.get("q", ""))
    if not match:
        raise SfError(400, "MALFORMED_QUERY", "unexpected token in query")
    sobject = match["obj"]
    if sobject not in FIELDS:
        raise SfError(400, "INVALID_TYPE", f"sObject type '{sobject}' is not supported.")
    wanted = [f.strip() for f in match["fields"].split(",")]
    conditions = _conditions(match["where"])
    for name in [*wanted, *conditions, *(match["order"] and [match["order"]] or [])]:
        if name not in FIELDS[sobject] | READ_ONLY:
            raise SfError(400, "INVALID_FIELD", f"No such column '{name}' on entity '{sobject}'")
    with state_of(request).lock:
        rows = [
            r for r in org.records.get(sobject, {}).values()
            if all(str(r.get(k, "")) == v for k, v in conditions.items())
        ]  # fmt: skip
    if match["order"]:
        rows.sort(key=lambda r: str(r.get(match["order"], "")), reverse=match["dir"] == "DESC")
    if match["limit"]:
        rows = rows[: int(match["limit"])]
    out = [_with_attributes(sobject, {k: r.get(k) for k in wanted}, request) for r in rows]
    return _page(request, org, out, len(out))


@data_route("salesforce.query")
async def query_more(request: Request, org: SalesforceOrg) -> Response:
    with state_of(request).lock:
        rest = org.cursors.pop(request.path_params["locator"], None)
    if rest is None:
        raise SfError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    return _page(request, org, rest, int(request.path_params["locator"].split("-")[1]))


def _page(request: Request, org: SalesforceOrg, rows: list[dict[str, Any]], total: int) -> Response:
    page, rest = rows[: org.query_page_size], rows[org.query_page_size :]
    body: dict[str, Any] = {"totalSize": total, "done": not rest, "records": page}
    if rest:
        locator = f"01g{secrets.token_hex(6)}-{total}"
        with state_of(request).lock:
            org.cursors[locator] = rest
        version = request.path_params["version"]
        body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}"
    return JSONResponse(body)


def _conditions(where: str | None) -> dict[str, str]:
    if not where:
        return {}
    out = {}
    for part in re.split(r"\s+AND\s+", where, flags=re.IGNORECASE):
        cond = COND_RE.match(part)
        if not cond:
            raise SfError(400, "MALFORMED_QUERY", "only field = 'value' conditions are emulated")
        out[cond[1]] = re.sub(r"\\(.)", r"\1", cond[2])
    return out


def _record_url(request: Request, sobject: str, rid: str) -> str:
    return f"/services/data/v{request.path_params['version']}/sobjects/{sobject}/{rid}"


def _with_attributes(sobject: str, record: dict[str, Any], request: Request) -> dict[str, Any]:
    rid = record.get("Id", "")
    attributes = {"type": sobject, "url": _record_url(request, sobject, rid)}
    return {"attributes": attributes, **record}


_DATA = "/services/data/v{version:float}"
ROUTES = [
    Route("/services/oauth2/token", emulated("salesforce.token")(token), methods=["POST"]),
    Route("/services/data/", versions, methods=["GET"]),
    Route("/services/data", versions, methods=["GET"]),
    Route(_DATA + "/limits", limits, methods=["GET"]),
    Route(_DATA + "/limits/", limits, methods=["GET"]),
    Route(_DATA + "/sobjects/{sobject}/", create, methods=["POST"]),
    Route(_DATA + "/sobjects/{sobject}", create, methods=["POST"]),
    Route(_DATA + "/sobjects/{sobject}/{rid}", update, methods=["PATCH"]),
    Route(_DATA + "/sobjects/{sobject}/{rid}", get, methods=["GET"]),
    Route(_DATA + "/sobjects/{sobject}/{field}/{value}", upsert, methods=["PATCH"]),
    Route(_DATA + "/query", query, methods=["GET"]),
    Route(_DATA + "/query/", query, methods=["GET"]),
    Route(_DATA + "/query/{locator}", query_more, methods=["GET"]),
]
