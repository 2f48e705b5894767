"""The triage providers behind ``assist/suggestion.py``'s interface, and which one is configured.

``LocalProvider`` asks the local model (``assist/model.py``; the trained one in the data directory,
else the seed model) and reads the fields with ``assist/extract.py``. ``provider_for`` picks it, or
the chat provider when ``CR_ASSIST_CHAT_URL`` is set and ``chat`` is asked for.
"""

from __future__ import annotations

from pathlib import Path

from assist.extract import extract_fields
from assist.model import TriageModel
from assist.store import load
from assist.suggestion import Provider, Scored, Suggestion
from playbooks.loader import scan_playbooks
from playbooks.schema import Playbook
from settings import Settings, get_settings

MODEL_NAME = "tfidf-logreg"


class LocalProvider:
    """The embedded default: works with no network, from the team's own closed incidents."""

    name = "local"

    def __init__(self, model: TriageModel | None = None, data_dir: Path | None = None) -> None:
        self.model = model or load(data_dir)

    def suggest(self, text: str, playbooks: dict[str, Playbook]) -> Suggestion:
        ranked = [r for r in self.model.playbook.rank(text) if r.label in playbooks]
        if not ranked:
            raise ValueError("the triage model knows none of the installed playbooks")
        best = ranked[0]
        severity = self.model.severity.rank(text)[0]
        fields = {
            g.name: Scored(value=g.value, confidence=g.confidence, words=[g.words[:100]])
            for g in extract_fields(playbooks[best.label].fields, text)
        }
        return Suggestion(
            playbook=Scored(value=best.label, confidence=best.confidence, words=best.words),
            severity=Scored(
                value=severity.label, confidence=severity.confidence, words=severity.words
            ),  # fmt: skip
            fields=fields,
            alternatives=[
                Scored(value=r.label, confidence=r.confidence, words=r.words) for r in ranked[1:3]
            ],  # fmt: skip
            provider=self.name,
            model=MODEL_NAME,
            version=self.model.version,
        )


def installed_playbooks(settings: Settings | None = None) -> dict[str, Playbook]:
    settings = settings or get_settings()
    return {lp.playbook.name: lp.playbook for lp in scan_playbooks(settings.playbooks_dir)[0]}


def provider_for(name: str = "local", settings: Settings | None = None) -> Provider:
    """The provider called ``name`` (``local``, or ``chat`` when an endpoint is configured)."""
    settings = settings or get_settings()
    if name == "local":
        return LocalProvider(data_dir=settings.data_dir)
    if name == "chat":
        from assist.chat import ChatProvider

        return ChatProvider.from_settings(settings)
    raise ValueError(f"--provider must be local or chat, not {name!r}")
