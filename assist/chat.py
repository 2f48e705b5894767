"""The chat provider: any OpenAI-compatible chat endpoint, by configuration.

``POST {CR_ASSIST_CHAT_URL}/v1/chat/completions`` with ``CR_ASSIST_CHAT_MODEL`` and the API key
(``CR_ASSIST_CHAT_API_KEY``, a secret), JSON mode; the answer is validated by ``ChatAnswer`` (an
unknown playbook or severity is a refusal, never a suggestion). Only redacted text leaves the
process (``assist/redact.py``); the fields are read from the original text here, by the local
extractors. The sandbox emulates such an endpoint (``sandbox/openai.py``) for tests and figures.
``rewrite`` asks it to reword a handover summary; the caller checks the rewrite's facts.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr, ValidationError

from assist.extract import extract_fields
from assist.redact import redact
from assist.suggestion import Scored, Suggestion
from playbooks.schema import SEVERITIES, Playbook
from settings import Settings

SYSTEM = (
    "You triage Trust & Safety cases. Personal data was replaced by placeholders in brackets. "
    'Answer with one JSON object: {"playbook": one of the names given, "severity": one of '
    "sev0 (life at risk now), sev1 (serious harm or a legal clock), sev2 (time-bound legal or "
    'safety work), sev3 (routine), "playbook_confidence" and "severity_confidence" between 0 '
    'and 1, "words": up to 5 words of the case that decided it}.'
)


class ChatAnswer(BaseModel):
    """The JSON a chat model must answer with."""

    playbook: str = Field(max_length=100)
    severity: str = Field(max_length=10)
    playbook_confidence: float = Field(ge=0.0, le=1.0)
    severity_confidence: float = Field(ge=0.0, le=1.0)
    words: list[str] = Field(default_factory=list, max_length=8)


class ChatError(ValueError):
    """The endpoint failed or answered something unusable (type and status, never its text)."""


class ChatProvider:
    """Suggestions from an OpenAI-compatible endpoint, on redacted text."""

    name = "chat"

    def __init__(self, base_url: str, model: str, api_key: SecretStr | None,
                 timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.transport = transport

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatProvider:
        if not settings.assist_chat_url:
            raise ValueError(
                "provider chat needs CR_ASSIST_CHAT_URL (an OpenAI-compatible base URL)"
            )
        return cls(settings.assist_chat_url, settings.assist_chat_model,
                   settings.assist_chat_api_key, settings.assist_chat_timeout_seconds)  # fmt: skip

    def complete(self, system: str, user: str) -> str:
        """The assistant message's content for one exchange (JSON mode)."""
        headers = {"content-type": "application/json"}
        if self.api_key is not None:
            headers["authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        body = {"model": self.model, "temperature": 0,
                "response_format": {"type": "json_object"},
                "messages": [{"role": "system", "content": system},
                             {"role": "user", "content": user}]}  # fmt: skip
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport) as http:
                response = http.post(f"{self.base_url}/v1/chat/completions", json=body,
                                     headers=headers)  # fmt: skip
        except httpx.HTTPError as err:
            raise ChatError(f"chat endpoint unreachable: {type(err).__name__}") from None
        if not response.is_success:
            raise ChatError(f"chat endpoint answered HTTP {response.status_code}")
        try:
            return str(response.json()["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise ChatError("chat endpoint answered no message content") from None

    def suggest(self, text: str, playbooks: dict[str, Playbook]) -> Suggestion:
        catalog = "\n".join(f"- {name}: {pb.title}" for name, pb in sorted(playbooks.items()))
        content = self.complete(SYSTEM, f"Playbooks:\n{catalog}\n\nCase:\n{redact(text)}")
        try:
            answer = ChatAnswer.model_validate(json.loads(content))
        except (ValueError, ValidationError):
            raise ChatError("chat answer is not the JSON asked for") from None
        if answer.playbook not in playbooks:
            raise ChatError(f"chat answer names no installed playbook ({answer.playbook[:40]!r})")
        if answer.severity not in SEVERITIES:
            raise ChatError(f"chat answer names no severity ({answer.severity[:10]!r})")
        words = [w[:100] for w in answer.words if w and w.lower() in text.lower()]
        fields = {g.name: Scored(value=g.value, confidence=g.confidence, words=[g.words[:100]])
                  for g in extract_fields(playbooks[answer.playbook].fields, text)}  # fmt: skip
        return Suggestion(
            playbook=Scored(
                value=answer.playbook, confidence=answer.playbook_confidence, words=words
            ),  # fmt: skip
            severity=Scored(value=answer.severity, confidence=answer.severity_confidence),
            fields=fields,
            provider=self.name,
            model=self.model[:100],
            version=self.model[:100],
        )

    def rewrite(self, sentences: list[str]) -> str:
        """The sentences reworded as one short handover paragraph (redacted before sending)."""
        content = self.complete(
            "Rewrite these handover sentences as one short paragraph for the next shift. Use "
            'only the facts given; add none. Answer JSON: {"text": "..."}.',
            json.dumps([redact(s) for s in sentences]),
        )
        try:
            data: Any = json.loads(content)
            return str(data["text"])
        except (ValueError, KeyError, TypeError):
            raise ChatError("chat answer is not the JSON asked for") from None
