"""The incident page's link to its Salesforce Case: the Case is found by its external id
(``Incident_Id__c``, as ``salesforce.upsert_case`` wrote it) when the link is followed, through
the same Salesforce client the activities use, after the API's read check on the incident; then
the browser goes to the Case in Salesforce (the org's Lightning address)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from activities.salesforce_api import SalesforceClient, soql_quote
from api import routes
from console import session
from console.pages import refusal_page
from console.verdict import Verdict
from console.web import page

router = APIRouter(prefix="/console")
LOOKUP_SECONDS = 5.0  # the client retries an outage; a person waits this long at most


@router.get("/incidents/{incident_id}/case", include_in_schema=False)
async def case(request: Request, incident_id: str) -> Response:
    who = session.viewer(request)
    try:
        await routes.status(incident_id, request, who)  # read, and visible to this person
    except Exception as err:  # noqa: BLE001 - the API's handler decides the status and words
        return await refusal_page(request, who, err)
    settings = request.app.state.settings
    soql = f"SELECT Id FROM Case WHERE Incident_Id__c = {soql_quote(incident_id)} LIMIT 1"
    try:
        rows = await asyncio.wait_for(SalesforceClient(settings).query(soql), LOOKUP_SECONDS)
    except Exception as err:  # noqa: BLE001 - one line: the vendor's type, never its text
        why = f"salesforce: the Case could not be looked up ({type(err).__name__})"
        return page(request, "refused.html", who, 502, verdict=Verdict(False, 502, why))
    if not rows:
        why = f"salesforce: no Case has Incident_Id__c={incident_id} yet"
        return page(request, "refused.html", who, 404, verdict=Verdict(False, 404, why))
    base = settings.effective_salesforce_url.rstrip("/")
    return RedirectResponse(f"{base}/lightning/r/Case/{rows[0]['Id']}/view", 303)
