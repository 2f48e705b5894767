"""A triage suggestion and the person's choice, as the incident records them (issue 14).

The front door (the API, intake) asks a provider (``assist/``) what a case is, a person confirms
or changes it, and the incident is opened with both in ``IncidentInput.triage``. The workflow
checks the note again (``triage_problem``: the choice must be what the incident was opened with)
and records it as its second timeline entry, ``triage`` (``triage_entry``), or, when the note does
not hold, a ``message_refused`` entry; either way the incident runs. Pure: no I/O, no clock.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from workflows.limits import LABEL_MAX, Fields, Name
from workflows.limits import TRIAGE_WORDS_MAX as WORDS_MAX


class TriageNote(BaseModel):
    """What the machine suggested (provider, model, version, playbook, severity, fields, each
    with a confidence and the words behind it) and what the person chose."""

    provider: str = Field(max_length=40)
    model: str = Field(max_length=LABEL_MAX)
    version: str = Field(max_length=LABEL_MAX)
    suggested_playbook: str = Field(max_length=LABEL_MAX)
    playbook_confidence: float = Field(ge=0.0, le=1.0)
    suggested_severity: str = Field(max_length=LABEL_MAX)
    severity_confidence: float = Field(ge=0.0, le=1.0)
    words: list[str] = Field(default_factory=list, max_length=WORDS_MAX)
    suggested_fields: Fields = Field(default_factory=dict)
    chosen_playbook: str = Field(max_length=LABEL_MAX)
    chosen_severity: str = Field(max_length=LABEL_MAX)
    chosen_by: Name

    @property
    def accepted(self) -> bool:
        return (self.suggested_playbook, self.suggested_severity) == (
            self.chosen_playbook,
            self.chosen_severity,
        )


def triage_problem(note: TriageNote, playbook: str, severity: str) -> str | None:
    """Why the note cannot be recorded for an incident opened with ``playbook`` and ``severity``
    (None: it can)."""
    if note.chosen_playbook != playbook:
        return (
            f"triage: chosen playbook {note.chosen_playbook!r} is not the incident's {playbook!r}"
        )
    if note.chosen_severity != severity:
        return (
            f"triage: chosen severity {note.chosen_severity!r} is not the incident's {severity!r}"
        )
    if any(len(w) > LABEL_MAX for w in note.words):
        return f"triage: a word is over {LABEL_MAX} characters"
    return None


def triage_entry(note: TriageNote) -> tuple[str, dict[str, str]]:
    """The ``triage`` entry's detail and data (every value text, as timeline data is)."""
    verdict = "accepted" if note.accepted else "changed"
    detail = (
        f"suggested {note.suggested_playbook} ({note.playbook_confidence:.0%}) "
        f"{note.suggested_severity} ({note.severity_confidence:.0%}) by {note.provider} "
        f"{note.model} {note.version}; {note.chosen_by} chose {note.chosen_playbook} "
        f"{note.chosen_severity} ({verdict})"
    )
    data = {
        "provider": note.provider,
        "model": note.model,
        "version": note.version,
        "suggested_playbook": note.suggested_playbook,
        "playbook_confidence": f"{note.playbook_confidence:.4f}",
        "suggested_severity": note.suggested_severity,
        "severity_confidence": f"{note.severity_confidence:.4f}",
        "words": ", ".join(note.words),
        "chosen_playbook": note.chosen_playbook,
        "chosen_severity": note.chosen_severity,
        "chosen_by": note.chosen_by,
        "accepted": "yes" if note.accepted else "no",
        **{f"field.{k}": v for k, v in sorted(note.suggested_fields.items())},
    }
    return detail, data
