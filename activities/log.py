"""The activities' logger: every line carries the incident, workflow, run, activity and attempt.

PII (summaries, free text, phone numbers, emails) is never logged, only ids and outcomes.
"""

from __future__ import annotations

import structlog
from temporalio import activity

from workflows.names import incident_id_of


def activity_logger(**extra: object) -> structlog.stdlib.BoundLogger:
    """A logger bound to the current activity's incident, workflow, run and step."""
    bound: dict[str, object] = {}
    if activity.in_activity():
        info = activity.info()
        bound = {
            "workflow_id": info.workflow_id,
            "run_id": info.workflow_run_id,
            "activity": info.activity_type,
            "attempt": info.attempt,
        }
        incident_id = incident_id_of(info.workflow_id or "")
        if incident_id is not None:
            bound["incident_id"] = incident_id
    return structlog.get_logger().bind(**bound, **extra)
