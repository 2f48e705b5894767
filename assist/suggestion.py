"""What a triage suggestion is, whoever made it: the playbook, the severity and the fields, each
with a confidence and the words of the case that led to it, and the model and version that said
so. The API returns it, the console shows it, the workflow's timeline and the records keep it.

``Provider`` is the one small interface both providers implement (``assist/providers.py``: the
local model; ``assist/chat.py``: an OpenAI-compatible chat endpoint).
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field

from playbooks.schema import Playbook

WORDS_MAX = 8


class Scored(BaseModel):
    """One suggested value: the value, a probability in [0, 1], the words behind it."""

    value: str = Field(max_length=100)
    confidence: float = Field(ge=0.0, le=1.0)
    words: list[str] = Field(default_factory=list, max_length=WORDS_MAX)


class Suggestion(BaseModel):
    """A provider's answer for one case."""

    playbook: Scored
    severity: Scored
    fields: dict[str, Scored] = Field(default_factory=dict, max_length=50)
    alternatives: list[Scored] = Field(default_factory=list, max_length=3)  # next playbooks
    provider: str = Field(max_length=40)  # "local" or "chat"
    model: str = Field(max_length=100)  # e.g. "tfidf-logreg" or the chat model's name
    version: str = Field(max_length=100)


class Provider(Protocol):
    """Suggest a playbook, severity and fields for a case's text."""

    name: str

    def suggest(self, text: str, playbooks: dict[str, Playbook]) -> Suggestion: ...
