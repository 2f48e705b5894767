"""The names every part of critical-response agrees on: workflow ids, search attributes, and the
activities and child workflows the interpreter calls by name.

One place for each, so the CLI, intake, the audit tools, the embedded stack and the workflow itself
cannot drift apart. Pure: safe to import in workflow code.
"""

from __future__ import annotations

import hashlib

from temporalio.common import SearchAttributeKey

WORKFLOW_ID_PREFIX = "incident-"

# Search attributes hold no personal data: only what `incident list` filters on.
SA_SEVERITY = SearchAttributeKey.for_keyword("IncidentSeverity")
SA_PLAYBOOK = SearchAttributeKey.for_keyword("IncidentPlaybook")
SA_STATUS = SearchAttributeKey.for_keyword("IncidentStatus")
SA_BREACHED = SearchAttributeKey.for_bool("SlaBreached")
SA_ATTENTION = SearchAttributeKey.for_bool("NeedsAttention")  # a failed step, a halted walk
SA_PARENT = SearchAttributeKey.for_keyword(
    "IncidentParent"
)  # a linked incident's parent (set at start)
SEARCH_ATTRIBUTES = (SA_SEVERITY, SA_PLAYBOOK, SA_STATUS, SA_BREACHED, SA_ATTENTION, SA_PARENT)
# The memo an incident starts with (continue-as-new carries it): the ids of the keys its messages
# must be signed by, which the API reads with ``describe`` before it acts (incidents/actions.py).
MEMO_TRUSTED_KEYS = "trusted_key_ids"

RECORDS_ACTIVITY = "records.append"
ARCHIVE_ACTIVITY = "records.archive_history"
ARCHIVE_START_ACTIVITY = "records.start_archive"  # a closing run starts its archiver (lean runs)
REPORT_SUMMARY_ACTIVITY = "records.report_summary"
RECONCILE_ACTIVITY = "records.reconcile"  # the sweep for incidents ended out of band
ON_CALL_ACTIVITY = "roster.on_call"  # who holds a role now (approval requests and pages)
LINKED_ACTIVITY = "incidents.open_linked"  # an open_incident step opens its child (issue 14)
COVERAGE_GAPS_ACTIVITY = "records.coverage_gaps"  # the next 24 hours' gaps (daily check)
ARCHIVE_WORKFLOW = "ArchiveIncidentWorkflow"

# Signals the incident accepts (any other name is refused and recorded; see workflows/signals.py).
SIGNAL_EVENT = "event"
SIGNAL_APPROVE = "approve_signal"
SIGNAL_REJECT = "reject_signal"
SIGNAL_LINKED = "linked_state"  # a linked (child) incident tells its parent it closed


def linked_incident_id(parent_id: str, step_id: str) -> str:
    """The id of the incident a parent's ``open_incident`` step opens: the same on every attempt
    (``<parent>--<step>``; past 100 characters, cut and made unique by a digest)."""
    whole = f"{parent_id}--{step_id}"
    if len(whole) <= 100:
        return whole
    digest = hashlib.sha256(whole.encode()).hexdigest()[:12]
    return f"{whole[:87]}-{digest}"


def workflow_id_for(incident_id: str) -> str:
    """The workflow id of incident ``incident_id`` (unique forever)."""
    return f"{WORKFLOW_ID_PREFIX}{incident_id}"


def incident_id_of(workflow_id: str) -> str | None:
    """The incident id behind an incident workflow id; None for any other workflow."""
    if not workflow_id.startswith(WORKFLOW_ID_PREFIX):
        return None
    return workflow_id.removeprefix(WORKFLOW_ID_PREFIX)


def archive_workflow_id(workflow_id: str, run_id: str) -> str:
    """One archiver per closing run, so re-archiving after a reset never collides."""
    return f"archive-{workflow_id}-{run_id}"
