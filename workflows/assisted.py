"""The ``record_triage`` Update (issue 14): a commander asked for a triage suggestion on an open
incident and records it with their choice, signed by the API like every commander action. The
same ``triage`` entry an incident opened with a suggestion records at open
(``workflows/triage.py``); refused before it reaches history when the note names another
playbook than the incident's or a severity that is none, or the incident is closed.
"""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from playbooks.schema import SEVERITIES
    from workflows.limits import Name, Role
    from workflows.linked import IncidentLinks
    from workflows.models import Signature, TimelineEntry
    from workflows.triage import TriageNote, triage_entry, triage_problem


class TriageRequest(BaseModel):
    """Update ``record_triage``: who records the suggestion and their choice."""

    actor: Name
    role: Role = "ic"
    note: TriageNote
    signature: Signature | None = None


class IncidentAssisted(IncidentLinks):
    """Suggestions recorded on an open incident."""

    @workflow.update
    async def record_triage(self, request: TriageRequest) -> TimelineEntry:
        self._admitted("record_triage", request, "record_triage", raise_refusal=True)
        detail, data = triage_entry(request.note)
        return self._record("triage", detail, actor=request.actor, role=request.role, data=data)

    @record_triage.validator
    def _validate_triage(self, request: TriageRequest) -> None:
        self._refuse_if_closed()
        note = request.note
        problem = triage_problem(note, self.inp.playbook.name, note.chosen_severity)
        if problem is None and note.chosen_severity not in SEVERITIES:
            problem = f"triage: chosen severity must be one of {', '.join(SEVERITIES)}"
        if problem is None and note.chosen_by != request.actor:
            problem = "triage: the choice is the actor's own"
        if problem is not None:
            raise ApplicationError(problem, type="invalid_triage", non_retryable=True)
