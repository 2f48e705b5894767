"""Salesforce activities against the emulator over real HTTP: shapes, idempotency, auth, errors."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.exceptions import ApplicationError

from activities import salesforce
from activities.salesforce_api import SalesforceClient, parse_errors
from sandbox.server import free_port
from tests.integration_support import (
    ThreadedServer,
    configure,
    inject,
    integration_env,
    refresh_settings,
    request,
    run_activity,
    sandbox_server,
    state,
)

__all__ = ["integration_env", "sandbox_server"]  # fixtures used by name

CASE = {"subject": "Emergency disclosure request", "description": "threat", "priority": "High"}


def records(server, sobject):  # type: ignore[no-untyped-def]
    return list(state(server)["salesforce"]["records"].get(sobject, {}).values())


async def upsert(incident: str = "inc-1"):  # type: ignore[no-untyped-def]
    req = request("salesforce.upsert_case", CASE, incident=incident, step="open")
    return await run_activity(salesforce.upsert_case, req)


async def comment(body: str, key: str, incident: str = "inc-1"):  # type: ignore[no-untyped-def]
    req = request("salesforce.add_comment", {"body": body}, incident=incident, key=key)
    return await run_activity(salesforce.add_comment, req)


async def failure(coro) -> ApplicationError:  # type: ignore[no-untyped-def]
    with pytest.raises(ApplicationError) as info:
        await coro
    return info.value


async def test_upsert_creates_then_updates_one_case(integration_env, sandbox_server):
    first = await upsert()
    second = await upsert()
    assert first.data["created"] == "true" and second.data["created"] == "false"
    assert first.data["case_id"] == second.data["case_id"]
    cases = records(sandbox_server, "Case")
    assert len(cases) == 1 and cases[0]["Incident_Id__c"] == "inc-1"
    assert cases[0]["Subject"] == CASE["subject"] and cases[0]["Origin"] == "Web"
    assert second.data["api_usage"].endswith("/15000")


async def test_token_is_cached_per_worker(integration_env, sandbox_server):
    await upsert("inc-a")
    await upsert("inc-b")
    assert state(sandbox_server)["salesforce"]["tokens_issued"] == 1


async def test_expired_token_refreshes_exactly_once(integration_env, sandbox_server):
    await upsert()
    httpx.post(sandbox_server.url + "/_sandbox/faults", json={"expire_tokens": True})
    result = await comment("first note", "k1")
    assert result.data["deduplicated"] == "false"
    snapshot = state(sandbox_server)
    assert snapshot["salesforce"]["tokens_issued"] == 2
    assert snapshot["requests"]["salesforce.token"] == 2


async def test_jwt_bearer_flow(integration_env, sandbox_server, monkeypatch):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    configure(sandbox_server, jwt_public_key=public)
    refresh_settings(
        monkeypatch, salesforce_auth_flow="jwt", salesforce_private_key=private,
        salesforce_username="integration@example.com",
    )  # fmt: skip
    assert (await upsert()).data["created"] == "true"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    configure(
        sandbox_server,
        jwt_public_key=other.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    )
    refresh_settings(monkeypatch)
    err = await failure(upsert())
    assert err.non_retryable and err.type == "SalesforceAuthError"
    assert "invalid_grant" in err.message  # the code; the vendor's description stays out


async def test_comment_not_duplicated_on_retry(integration_env, sandbox_server):
    await upsert()
    first = await comment("containment done", "inc-1:s2")
    again = await comment("containment done", "inc-1:s2")
    assert again.data == {
        **again.data,
        "deduplicated": "true",
        "comment_id": first.data["comment_id"],
    }
    await comment("second note", "inc-1:s3")
    bodies = [c["CommentBody"] for c in records(sandbox_server, "CaseComment")]
    assert len(bodies) == 2
    assert bodies[0].startswith("containment done") and bodies[1].startswith("second note")


async def test_comment_dropped_after_commit_is_not_reposted(integration_env, sandbox_server):
    await upsert()
    inject(sandbox_server, route="salesforce.create", kind="drop_after_commit", times=1)
    err = await failure(comment("legal approved", "inc-1:approve"))
    assert not err.non_retryable and err.type == "ConnectionLost"
    retry = await comment("legal approved", "inc-1:approve")
    assert retry.data["deduplicated"] == "true"
    assert len(records(sandbox_server, "CaseComment")) == 1


async def test_marker_lookup_follows_query_pages(integration_env, sandbox_server):
    await upsert()
    for n in range(3):
        await comment(f"note {n}", f"k{n}")
    configure(sandbox_server, query_page_size=1)
    assert (await comment("note 0", "k0")).data["deduplicated"] == "true"
    assert len(records(sandbox_server, "CaseComment")) == 3


async def test_long_comment_is_trimmed_but_keeps_marker(integration_env, sandbox_server):
    await upsert()
    await comment("é" * 3000, "long")
    body = records(sandbox_server, "CaseComment")[0]["CommentBody"]
    assert len(body.encode()) <= 4000 and body.endswith("]") and "[ref:cr-" in body
    assert (await comment("é" * 3000, "long")).data["deduplicated"] == "true"


async def test_create_task_once(integration_env, sandbox_server):
    await upsert()
    args = {"subject": "Call back requester", "owner_id": "005000000000001AAA"}
    req = request("salesforce.create_task", args, key="inc-1:verify")
    first = await run_activity(salesforce.create_task, req)
    again = await run_activity(salesforce.create_task, req)
    assert again.data["task_id"] == first.data["task_id"] and again.data["deduplicated"] == "true"
    tasks = records(sandbox_server, "Task")
    assert len(tasks) == 1 and tasks[0]["WhatId"] == first.data["case_id"]
    assert tasks[0]["Status"] == "Not Started"


async def test_update_case(integration_env, sandbox_server):
    await upsert()
    req = request("salesforce.update_case", {"status": "Escalated", "priority": "Medium"})
    result = await run_activity(salesforce.update_case, req)
    case = records(sandbox_server, "Case")[0]
    assert (case["Status"], case["Priority"]) == ("Escalated", "Medium")
    assert result.data["case_id"] == case["Id"]


async def test_update_without_case_is_final(integration_env, sandbox_server):
    req = request("salesforce.update_case", {"status": "Closed"}, incident="inc-none")
    err = await failure(run_activity(salesforce.update_case, req))
    assert err.non_retryable and err.type == "SalesforceCaseNotFound"


async def test_validation_error_is_final_with_vendor_code_not_text(integration_env, sandbox_server):
    """The error names Salesforce's code; its message, which quotes the value sent, stays out."""
    await upsert()
    req = request("salesforce.update_case", {"status": "Bogus"})
    err = await failure(run_activity(salesforce.update_case, req))
    assert err.non_retryable and err.type == "SalesforceValidationError"
    assert "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" in err.message and "Bogus" not in err.message


async def test_invalid_arguments_are_final(integration_env):
    req = request("salesforce.add_comment", {"text": "wrong name"})
    err = await failure(run_activity(salesforce.add_comment, req))
    assert err.non_retryable and err.type == "InvalidArguments" and "body" in err.message


@pytest.mark.parametrize(
    ("rule", "error_type"),
    [
        (
            {"kind": "error", "status": 400, "error_code": "UNABLE_TO_LOCK_ROW"},
            "SalesforceRowLocked",
        ),
        ({"kind": "error", "status": 503}, "VendorServerError"),
        ({"kind": "error", "status": 500}, "VendorServerError"),
        ({"kind": "throttle"}, "SalesforceConcurrencyLimit"),
    ],
)
async def test_transient_errors_are_retryable(integration_env, sandbox_server, rule, error_type):
    inject(sandbox_server, route="salesforce.upsert", times=1, **rule)
    err = await failure(upsert())
    assert not err.non_retryable and err.type == error_type and err.next_retry_delay is None
    assert (await upsert()).data["created"] == "true"  # the retry succeeds
    assert len(records(sandbox_server, "Case")) == 1


async def test_daily_limit_waits_long(integration_env, sandbox_server):
    await upsert()
    configure(sandbox_server, daily_limit=5, api_usage=5)
    err = await failure(upsert())
    assert not err.non_retryable and err.type == "SalesforceDailyLimit"
    assert err.next_retry_delay == timedelta(seconds=0.5)
    assert "TotalRequests" in err.message


async def test_timeout_is_retryable(integration_env, sandbox_server, monkeypatch):
    refresh_settings(monkeypatch, http_timeout_seconds="0.1")
    inject(sandbox_server, route="salesforce.upsert", kind="latency", latency_ms=300)
    err = await failure(upsert())
    assert not err.non_retryable and err.type == "Timeout"


async def test_retired_version_is_final(integration_env, monkeypatch):
    refresh_settings(monkeypatch, salesforce_api_version="v30.0")
    err = await failure(upsert())
    assert err.non_retryable and err.type == "SalesforceApiRetired" and "v30.0" in err.message


async def test_ambiguous_external_id_is_final(integration_env, sandbox_server):
    sf = SalesforceClient(integration_env)
    for _ in range(2):
        await sf.create("Case", {"Subject": "dup", "Incident_Id__c": "inc-dup"})
    err = await failure(upsert("inc-dup"))
    assert err.non_retryable and err.type == "SalesforceAmbiguous" and "2 records" in err.message


async def test_unknown_external_id_field_is_not_found(integration_env):
    sf = SalesforceClient(integration_env)
    err = await failure(sf.upsert("Case", "No_Such__c", "x", {"Subject": "s"}))
    assert err.non_retryable and err.type == "SalesforceNotFound"


async def test_bad_client_secret_is_final(integration_env, monkeypatch):
    refresh_settings(monkeypatch, salesforce_client_secret="wrong")
    err = await failure(upsert())
    assert (
        err.non_retryable and err.type == "SalesforceAuthError" and "invalid_client" in err.message
    )


async def test_client_credentials_refuse_login_host(integration_env, monkeypatch):
    refresh_settings(monkeypatch, salesforce_base_url="https://login.salesforce.com")
    err = await failure(upsert())
    assert err.non_retryable and err.type == "SalesforceConfigError"


async def test_rest_calls_follow_instance_url_not_the_login_host(
    integration_env, sandbox_server, monkeypatch
):
    """My Domain login host and instance host differ in production: the token comes from
    CR_SALESFORCE_BASE_URL, every REST call goes to the token response's ``instance_url``. The
    login host here answers only the token endpoint (relaying it to the sandbox)."""
    seen: list[str] = []

    async def relay_token(request: Request) -> Response:
        seen.append(request.url.path)
        async with httpx.AsyncClient() as http:
            answer = await http.post(sandbox_server.url + "/services/oauth2/token",
                                     content=await request.body(),
                                     headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
        return JSONResponse(answer.json(), answer.status_code)

    async def elsewhere(request: Request) -> Response:
        seen.append(request.url.path)
        return JSONResponse([{"errorCode": "NOT_FOUND", "message": "login host"}], 404)

    login = Starlette(routes=[
        Route("/services/oauth2/token", relay_token, methods=["POST"]),
        Route("/{rest:path}", elsewhere, methods=["GET", "POST", "PATCH"]),
    ])  # fmt: skip
    config = uvicorn.Config(login, host="127.0.0.1", port=free_port(), log_level="warning",
                            lifespan="off", log_config=None)  # fmt: skip
    with ThreadedServer(uvicorn.Server(config)) as login_host:
        refresh_settings(monkeypatch, salesforce_base_url=login_host.url)
        first = await upsert()
        await comment("via the instance", "inc-1:instance")
    assert first.data["created"] == "true"
    assert seen == ["/services/oauth2/token"]  # nothing but the token went to the login host
    assert [c["Incident_Id__c"] for c in records(sandbox_server, "Case")] == ["inc-1"]
    assert len(records(sandbox_server, "CaseComment")) == 1


def test_parse_errors_both_shapes():
    def resp(status, body):  # type: ignore[no-untyped-def]
        return httpx.Response(status, json=body)

    array = [{"message": "Required fields are missing", "errorCode": "REQUIRED_FIELD_MISSING",
              "fields": ["ParentId"]}]  # fmt: skip
    assert parse_errors(resp(400, array)) == [("REQUIRED_FIELD_MISSING", array[0]["message"])]
    obj = {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    assert parse_errors(resp(401, obj)) == [("INVALID_SESSION_ID", obj["message"])]
    oauth = {"error": "invalid_grant", "error_description": "request not supported on this domain"}
    assert parse_errors(resp(400, oauth)) == [("invalid_grant", oauth["error_description"])]
    urls = ["/services/data/v62.0/sobjects/Case/1", "/services/data/v62.0/sobjects/Case/2"]
    assert [c for c, _ in parse_errors(resp(300, urls))] == ["MULTIPLE_CHOICES"] * 2
    assert parse_errors(httpx.Response(502, text="Bad Gateway")) == [("", "Bad Gateway")]


def test_worker_options(integration_env):
    options = salesforce.salesforce_worker_options(integration_env)
    assert options["task_queue"] == "critical-response-salesforce"
    assert options["max_task_queue_activities_per_second"] == 20.0
    names = {fn.__temporal_activity_definition.name for fn in options["activities"]}
    assert names == {f"salesforce.{n}" for n in ("upsert_case", "update_case", "add_comment",
                                                 "create_task")}  # fmt: skip
