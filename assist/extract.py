"""The fields a playbook declares, read out of a case's text by simple extractors.

One extractor per field type (``playbooks/fields.py``): emails, phone numbers, dates, ids after
the words the field's name is made of, choices named in the text (with a few synonyms, e.g. a
European city for ``jurisdiction: eu``), and the requesting agency. Each value comes with the words
that led to it and a confidence; a value that does not pass the field's own ``validate`` is
dropped. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from playbooks.fields import FieldSpec

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PHONE = re.compile(r"\+[1-9]\d{6,14}")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:\d{2})?)?\b")
_AGENCY = re.compile(
    r"\b((?:[A-Z][\w.'-]*\s){0,4}(?:PD|Police(?: Department)?|Sheriff's Office|Polizei \w+|"
    r"Gendarmerie \w+|FBI[\w ]*?field office|Metropolitan Police))"
)
# Words for a choice value beyond its own name (whole words, case-insensitive).
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "jurisdiction": {
        "us": (
            "us",
            "usa",
            "united states",
            "ohio",
            "texas",
            "chicago",
            "seattle",
            "california",
            "new york",
        ),
        "eu": (
            "eu",
            "europe",
            "berlin",
            "paris",
            "madrid",
            "dublin",
            "germany",
            "france",
            "spain",
            "ireland",
            "italy",
        ),
        "uk": ("uk", "united kingdom", "london", "manchester", "leeds", "england", "scotland"),
        "other": ("toronto", "sydney", "canada", "australia"),
    },
    "process_type": {
        "subpoena": ("subpoena",),
        "court_order": ("court order", "2703(d)"),
        "warrant": ("warrant",),
    },  # fmt: skip
    "threat_type": {
        "self_harm": ("suicide", "kill themselves", "self-harm", "end their life"),
        "violence": ("shoot", "bomb", "kill his", "kill her", "violence"),
    },  # fmt: skip
    "recall_class": {
        "class_i": ("class i",),
        "class_ii": ("class ii",),
        "class_iii": ("class iii",),
    },  # fmt: skip
    "category": {
        "sexual_assault": ("sexual assault",),
        "physical_assault": ("assault",),
        "serious_injury": ("serious injury",),
        "harassment": ("harassment",),
        "threat": ("threatened", "threat"),
    },  # fmt: skip
    "child_in_danger": {"yes": ("in danger",)},
}


@dataclass(frozen=True)
class FieldGuess:
    """A field's suggested value, how sure the extractor is, and the words that led to it."""

    name: str
    value: str
    confidence: float
    words: str


def _name_words(name: str) -> list[str]:
    return [w for w in name.split("_") if w not in ("id", "ids", "at", "ref")]


def _after_words(name: str, text: str) -> tuple[str, str] | None:
    """An id written after the words of the field's name: ``account acct-123``, ``UPC 0123``."""
    words = _name_words(name) or [name]
    for word in words:
        pattern = rf"\b{re.escape(word)}s?\b[\s:#]*([A-Za-z0-9][A-Za-z0-9._:/#@+-]*)"
        for m in re.finditer(pattern, text, re.IGNORECASE):
            if any(ch.isdigit() for ch in m.group(1)):
                return m.group(1).rstrip(".,;:)"), m.group(0)
    return None


def _choice(name: str, spec: FieldSpec, text: str) -> tuple[str, str] | None:
    lowered = text.lower()
    # The last mention wins (a case names the requester's city before the place it happened),
    # then the longest phrase ending there (class iii over class i, sexual assault over assault).
    best: tuple[int, int, str, str] | None = None
    for value in spec.choices or []:
        phrases = (value.replace("_", " "), *SYNONYMS.get(name, {}).get(value, ()))
        for phrase in phrases:
            if len(phrase) < 2:
                continue
            pattern = rf"(?<![\w-]){re.escape(phrase.lower())}(?![\w-])"
            for m in re.finditer(pattern, lowered):
                key = (m.end(), len(phrase), value, text[m.start() : m.end()])
                best = key if best is None or key[:2] > best[:2] else best
    return (best[2], best[3]) if best else None


def extract_fields(fields: dict[str, FieldSpec], text: str) -> list[FieldGuess]:
    """Every declared field the text gives a valid value for."""
    guesses: list[FieldGuess] = []
    emails = _EMAIL.findall(text)
    email_fields = [n for n, s in fields.items() if s.type == "email"]
    for name, spec in fields.items():
        found: tuple[str, str] | None = None
        confidence = 0.9
        if spec.type == "email" and emails:
            i = email_fields.index(name)
            found = (emails[i], emails[i]) if i < len(emails) else None
            confidence = 0.9 if i == 0 else 0.5
        elif spec.type == "phone" and (m := _PHONE.search(text)):
            found = (m.group(0), m.group(0))
        elif spec.type == "datetime" and (m := _DATE.search(text)):
            near = _after_words(name, text)
            found = (m.group(0), m.group(0))
            confidence = 0.8 if near else 0.5
        elif spec.type == "id":
            found = _after_words(name, text)
            confidence = 0.8
        elif spec.type == "choice":
            found = _choice(name, spec, text)
            confidence = 0.7
        elif spec.type == "text" and "agency" in name and (m := _AGENCY.search(text)):
            found = (m.group(1).strip(), m.group(1).strip())
            confidence = 0.6
        if found and spec.validate(found[0], name) is None:
            guesses.append(FieldGuess(name, found[0], confidence, found[1]))
    return guesses
