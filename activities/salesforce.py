"""Salesforce activities: the incident's Case (upserted by ``Incident_Id__c``), comments, tasks.

Every call is idempotent under Temporal's retries: the Case is upserted by the external id (a replay
updates the same record), and comments/tasks, which Salesforce cannot upsert, carry a marker
derived from the step's idempotency key that is looked up by SOQL before posting. Errors are
classified per shared/api-contracts.md section 1 (see ``salesforce_api.classify``). These
activities run on their own task queue, rate-limited fleet-wide (``salesforce_worker_options``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import activity

from activities.heartbeat import heartbeats
from activities.log import activity_logger
from activities.salesforce_api import SalesforceClient, soql_quote
from activities.vendor_http import permanent
from playbooks.operations import (
    AddCommentArgs,
    CreateTaskArgs,
    UpdateCaseArgs,
    UpsertCaseArgs,
    salesforce_queue,
)
from settings import Settings, get_settings
from workflows.models import ActionRequest, ActionResult

ArgsT = TypeVar("ArgsT", bound=BaseModel)
COMMENT_LIMIT_BYTES = 4000


def parse_args(model: type[ArgsT], req: ActionRequest) -> ArgsT:
    """The step's arguments, or a non-retryable error naming what is wrong (lint catches most)."""
    try:
        return model.model_validate(req.args)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise permanent(
            f"{req.operation}: invalid arguments: {problems}", "InvalidArguments"
        ) from exc


def record_marker(idempotency_key: str) -> str:
    """A short tag, stable across retries, identifying the record a step created."""
    return f"[ref:cr-{hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]}]"


def with_marker(text: str, marker: str, limit_bytes: int | None = None) -> str:
    """Append the marker, trimming the text (never the marker) to fit a byte limit."""
    suffix = f"\n\n{marker}"
    if limit_bytes is not None and len((text + suffix).encode()) > limit_bytes:
        room = limit_bytes - len(suffix.encode()) - len("…".encode())
        text = text.encode()[:room].decode(errors="ignore") + "…"
    return text + suffix


def _compact(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v not in (None, "")}


def _result(sf: SalesforceClient, detail: str, **data: str) -> ActionResult:
    return ActionResult(detail=detail, data={**data, **sf.limit_data()})


async def _case_id(sf: SalesforceClient, incident_id: str) -> str:
    soql = f"SELECT Id FROM Case WHERE Incident_Id__c = {soql_quote(incident_id)} LIMIT 2"
    rows = await sf.query(soql)
    if not rows:
        raise permanent(
            f"no Case has Incident_Id__c={incident_id}; run salesforce.upsert_case first",
            "SalesforceCaseNotFound",
        )
    if len(rows) > 1:
        raise permanent(f"several Cases have Incident_Id__c={incident_id}", "SalesforceAmbiguous")
    return str(rows[0]["Id"])


@activity.defn(name="salesforce.upsert_case")
@heartbeats
async def upsert_case(req: ActionRequest) -> ActionResult:
    """Create or update the incident's Case: 201 on the first call, 200 on every replay."""
    args = parse_args(UpsertCaseArgs, req)
    sf = SalesforceClient(get_settings())
    fields = _compact(
        {
            "Subject": args.subject,
            "Description": args.description,
            "Priority": args.priority,
            "Status": args.status,
            "Origin": args.origin,
            "Type": args.type,
        }
    )
    case_id, created = await sf.upsert("Case", "Incident_Id__c", req.incident_id, fields)
    activity_logger(step_id=req.step_id).info(
        "salesforce.case_upserted", case_id=case_id, created=created, **sf.limit_data()
    )
    detail = "case created" if created else "case updated"
    return _result(sf, detail, case_id=case_id, created=str(created).lower())


@activity.defn(name="salesforce.update_case")
@heartbeats
async def update_case(req: ActionRequest) -> ActionResult:
    """Change the Case's status, priority or owner (a PATCH is naturally idempotent)."""
    args = parse_args(UpdateCaseArgs, req)
    sf = SalesforceClient(get_settings())
    fields = _compact({"Status": args.status, "Priority": args.priority, "OwnerId": args.owner_id})
    case_id = await _case_id(sf, req.incident_id)
    if fields:
        await sf.update("Case", case_id, fields)
    activity_logger(step_id=req.step_id).info(
        "salesforce.case_updated", case_id=case_id, changed=sorted(fields), **sf.limit_data()
    )
    return _result(sf, "case updated" if fields else "nothing to update", case_id=case_id)


async def _create_once(
    req: ActionRequest,
    sobject: str,
    parent_field: str,
    marker_field: str,
    build: Callable[[str, str], dict[str, Any]],
    noun: str,
    said: tuple[str, str],
) -> ActionResult:
    """Create a record under the incident's Case once per step: a retry whose first answer was
    lost finds the record by the step's marker (SOQL) instead of creating it again."""
    sf = SalesforceClient(get_settings())
    case_id = await _case_id(sf, req.incident_id)
    marker = record_marker(req.idempotency_key)
    key, (created_text, existing_text) = f"{noun}_id", said
    log = activity_logger(step_id=req.step_id, case_id=case_id)
    existing = await sf.find_marked(sobject, parent_field, case_id, marker_field, marker)
    if existing:
        log.info(f"salesforce.{noun}_deduplicated", **{key: existing})
        return _result(sf, existing_text, case_id=case_id, deduplicated="true",
                       **{key: existing})  # fmt: skip
    record_id = await sf.create(sobject, build(case_id, marker))
    log.info(f"salesforce.{noun}_{created_text.split()[-1]}", **{key: record_id}, **sf.limit_data())
    return _result(sf, created_text, case_id=case_id, deduplicated="false",
                   **{key: record_id})  # fmt: skip


@activity.defn(name="salesforce.add_comment")
@heartbeats
async def add_comment(req: ActionRequest) -> ActionResult:
    """Post a CaseComment once per step, even when a retry follows a post whose answer was lost."""
    args = parse_args(AddCommentArgs, req)

    def comment(case_id: str, marker: str) -> dict[str, Any]:
        body = with_marker(args.body, marker, COMMENT_LIMIT_BYTES)
        return {"ParentId": case_id, "CommentBody": body, "IsPublished": args.public}

    said = ("comment added", "comment already posted")
    return await _create_once(
        req, "CaseComment", "ParentId", "CommentBody", comment, "comment", said
    )


@activity.defn(name="salesforce.create_task")
@heartbeats
async def create_task(req: ActionRequest) -> ActionResult:
    """Create a Task on the Case once per step (same marker lookup as comments)."""
    args = parse_args(CreateTaskArgs, req)

    def task(case_id: str, marker: str) -> dict[str, Any]:
        return _compact({
            "WhatId": case_id, "Subject": args.subject,
            "Description": with_marker(args.description, marker), "Priority": args.priority,
            "Status": "Not Started", "OwnerId": args.owner_id,
        })  # fmt: skip

    said = ("task created", "task already created")
    return await _create_once(req, "Task", "WhatId", "Description", task, "task", said)


ACTIVITIES = [upsert_case, update_case, add_comment, create_task]


def salesforce_worker_options(settings: Settings | None = None) -> dict[str, Any]:
    """Keyword arguments for ``Worker(client, **...)``: the Salesforce queue and its rate limit.

    ``max_task_queue_activities_per_second`` is enforced by the server across every worker polling
    the queue, so the whole fleet stays under the org's API allowance together.
    """
    settings = settings or get_settings()
    return {
        "task_queue": salesforce_queue(settings.task_queue),
        "activities": list(ACTIVITIES),
        "max_task_queue_activities_per_second": settings.salesforce_max_activities_per_second,
    }
