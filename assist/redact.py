"""Personal data out of any text before it leaves the process (the chat endpoint sees only this).

Replaced with a typed placeholder: URLs, email addresses, IP addresses (v4 and v6), card-like
numbers (13-19 digits, spaces or dashes allowed), phone numbers (international or 7+ digits with
separators), account and record ids (a token of letters and at least three digits,
``acct-1234567``, ``5003000000D8cuI``), street addresses (a number, words, then a street type),
and every value the incident's declared fields hold that is not a choice, a date or a number
(names, agencies, ids). Conservative by design: a UPC or a lot number is redacted too; the
fields are read by the local extractors from the original text, in the process.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from playbooks.fields import FieldSpec

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("url", re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)),
    ("email", re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")),
    ("ip", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")),
    # IPv6: hex groups and at least two colons (``2001:db8::1``, ``::1``); a clock time with
    # seconds reads as one too, which only costs a redaction.
    ("ip", re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)[0-9A-Fa-f]{0,4}"
                      r"(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")),
    ("card", re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")),
    ("phone", re.compile(r"(?<![\w+-])\+?\(?\d[\d\s().-]{5,}\d(?!\w)")),
    # An id: letters and at least three digits in one token (``acct-1234567``, ``5003000000D8cuI``);
    # numbers alone are phones or cards above when long, statute numbers (2703) when short.
    ("id", re.compile(r"(?<![\w-])(?=[\w-]*[A-Za-z])(?=(?:[\w-]*?\d){3})[A-Za-z0-9][\w-]{3,}\b")),
    ("address", re.compile(
        r"\b\d{1,6}\s+(?:[A-Z][\w'.-]*\s+){1,4}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|"
        r"Lane|Ln|Drive|Dr|Way|Court|Ct|Place|Pl|Terrace|Strasse|Straße)\b\.?")),
]  # fmt: skip
KEPT_TYPES = ("choice", "datetime", "number")  # a field of these types names no one
_DIGITS = re.compile(r"\d")


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _phone_like(match: re.Match[str]) -> bool:
    """Seven digits or more, and no date in it (a date and a time name no one)."""
    return len(_DIGITS.findall(match.group(0))) >= 7 and not _DATE.search(match.group(0))


def redact(text: str, fields: dict[str, str] | None = None,
           specs: dict[str, FieldSpec] | None = None, names: Iterable[str] = ()) -> str:  # fmt: skip
    """``text`` with personal data replaced by ``[email]``, ``[phone]``, ``[field:<name>]`` ..."""
    out = text
    for name, value in sorted((fields or {}).items(), key=lambda kv: -len(kv[1])):
        spec = (specs or {}).get(name)
        if len(value.strip()) >= 3 and (spec is None or spec.type not in KEPT_TYPES):
            out = re.sub(re.escape(value.strip()), f"[field:{name}]", out, flags=re.IGNORECASE)
    for name in sorted(names, key=len, reverse=True):
        if len(name.strip()) >= 3:
            out = re.sub(re.escape(name.strip()), "[name]", out, flags=re.IGNORECASE)
    for label, pattern in _PATTERNS:
        if label == "phone":
            out = pattern.sub(lambda m: "[phone]" if _phone_like(m) else m.group(0), out)
        else:
            out = pattern.sub(f"[{label}]", out)
    return out
