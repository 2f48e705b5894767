"""Durations in playbooks: ``90d``, ``1h30m``, ``15m``, ``2w`` or seconds, parsed and printed.

Pure (the workflow sandbox imports it through ``playbooks.schema``). ``format_duration`` is the
canonical spelling the content hash sees, so it must never change for whole seconds.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
MAX_SECONDS = 36_500 * 86_400  # a century: longer than any legal hold, far inside timedelta's range


def parse_duration(value: Any) -> timedelta:
    """Accept ``90d``, ``1h30m``, ``15m``, ``2w``, a number of seconds, or a timedelta.

    Negative durations are refused here so that lint can name the field.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        negative = text.startswith("-")
        body = text.lstrip("+-").replace(" ", "")
        if not body or _DURATION_PART.sub("", body):
            raise ValueError(f"not a duration: {value!r} (use e.g. 15m, 4h, 90d, 1h30m)")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(body))
        if negative:
            seconds = -seconds
    else:
        raise ValueError(f"not a duration: {value!r}")
    if seconds < 0:
        raise ValueError(f"negative duration {value!r}: durations must be zero or more")
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise ValueError(f"duration {value!r} is too long: at most 100 years (36500d)")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Inverse of ``parse_duration``, used for hashing and for humans (``1d2h``, ``0.05s``).

    Sub-second parts are kept (a retry interval of 50 ms must reach the workflow as such); whole
    seconds print exactly as before, so existing playbook hashes do not change.
    """
    total = value.total_seconds()
    seconds, fraction = int(total), round(total - int(total), 6)
    parts = []
    for unit in ("d", "h", "m", "s"):
        n, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if unit == "s" and fraction:
            parts.append(f"{n + fraction:g}s")
        elif n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
