"""From a suggestion to the record of a person's choice, and back out of the records.

``suggest_within`` asks a provider with a deadline (intake and the API never wait on a slow or
failing provider: past it, they carry on without a suggestion). ``note_for`` turns a suggestion
and the person's choice into the ``TriageNote`` the incident records as its ``triage`` entry
(``workflows/triage.py``); the records' audit log keeps that entry like any other, sealed, and
``recorded_choices`` reads them back, so ``incident triage-eval`` can say how often the
suggestions people saw were the ones they chose.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass

from sqlmodel import Session, col, select

from assist.providers import installed_playbooks, provider_for
from assist.suggestion import Provider, Suggestion
from encryption.keystore import DataKeyError
from playbooks.schema import Playbook
from records.sealed import SealedColumnError, opened_columns
from records.tables import AuditRow, records_engine
from settings import Settings
from workflows.triage import TriageNote


class SuggestionUnavailable(Exception):
    """The provider did not answer in time, or failed (the message says which, never the text)."""


async def suggest_within(provider: Provider, text: str, playbooks: dict[str, Playbook],
                         seconds: float) -> Suggestion:  # fmt: skip
    """The provider's suggestion, or SuggestionUnavailable after ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            return await asyncio.to_thread(provider.suggest, text, playbooks)
    except TimeoutError:
        raise SuggestionUnavailable(
            f"{provider.name} gave no suggestion within {seconds:g}s"
        ) from None
    except (ValueError, OSError) as err:
        raise SuggestionUnavailable(f"{provider.name} failed: {type(err).__name__}") from None


def budget(settings: Settings, provider: str) -> float:
    """How long a person's request waits for ``provider`` (the local model answers in ms)."""
    return settings.assist_chat_timeout_seconds if provider == "chat" else 10.0


async def triage_note(settings: Settings, provider: str | None, text: str, *, playbook: str,
                      severity: str, by: str, seconds: float | None = None) -> TriageNote | None:  # fmt: skip
    """The suggestion of ``provider`` for ``text`` and the choice ``by`` made; None when no
    provider is asked or none answered in time (the incident opens all the same)."""
    if provider is None:
        return None
    try:
        found = await suggest_within(provider_for(provider, settings), text,
                                     installed_playbooks(settings),
                                     seconds or budget(settings, provider))  # fmt: skip
    except (SuggestionUnavailable, ValueError):
        return None
    return note_for(found, playbook=playbook, severity=severity, by=by)


def note_for(suggestion: Suggestion, *, playbook: str, severity: str, by: str) -> TriageNote:
    """The record of ``suggestion`` and of the choice ``by`` made (playbook, severity)."""
    return TriageNote(
        provider=suggestion.provider,
        model=suggestion.model,
        version=suggestion.version,
        suggested_playbook=suggestion.playbook.value,
        playbook_confidence=suggestion.playbook.confidence,
        suggested_severity=suggestion.severity.value,
        severity_confidence=suggestion.severity.confidence,
        words=[w[:100] for w in suggestion.playbook.words],
        suggested_fields={k: v.value for k, v in suggestion.fields.items()},
        chosen_playbook=playbook,
        chosen_severity=severity,
        chosen_by=by,
    )


@dataclass(frozen=True)
class Choice:
    """One recorded suggestion and what the person chose."""

    incident_id: str
    provider: str
    version: str
    suggested_playbook: str
    suggested_severity: str
    chosen_playbook: str
    chosen_severity: str


def recorded_choices(url: str | None = None) -> list[Choice]:
    """Every ``triage`` entry in the records that still opens (a purged incident's does not)."""
    with Session(records_engine(url)) as s:
        rows = s.exec(select(AuditRow).where(AuditRow.action == "triage")
                      .order_by(col(AuditRow.id))).all()  # fmt: skip
    choices = []
    for row in rows:
        try:
            data = json.loads(opened_columns(row)[1] or "{}")
        except (DataKeyError, SealedColumnError):
            continue
        choices.append(Choice(row.incident_id, data.get("provider", ""), data.get("version", ""),
                              data.get("suggested_playbook", ""),
                              data.get("suggested_severity", ""),
                              data.get("chosen_playbook", ""), data.get("chosen_severity", "")))  # fmt: skip
    return choices


def agreement(choices: list[Choice]) -> dict[str, dict[str, float | int]]:
    """Per chosen playbook: how many suggestions, how often the playbook and the severity the
    person chose were the ones suggested."""
    total: Counter[str] = Counter()
    playbook_right: Counter[str] = Counter()
    severity_right: Counter[str] = Counter()
    for c in choices:
        total[c.chosen_playbook] += 1
        playbook_right[c.chosen_playbook] += c.suggested_playbook == c.chosen_playbook
        severity_right[c.chosen_playbook] += c.suggested_severity == c.chosen_severity
    return {
        name: {"suggestions": n, "playbook_right": round(playbook_right[name] / n, 4),
               "severity_right": round(severity_right[name] / n, 4)}
        for name, n in sorted(total.items())
    }  # fmt: skip
