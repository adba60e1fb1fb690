"""Policy durations (``30m``, ``7d``) as milliseconds."""

from __future__ import annotations

import re

_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^([0-9]+)([smhd])$")


def parse_duration_ms(text: str) -> int:
    """Return the length of ``text`` (digits then ``s``, ``m``, ``h`` or ``d``) in ms."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (expected digits then s, m, h or d)")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def format_duration(ms: int) -> str:
    """``ms`` in the largest unit that divides it exactly (``86400000`` -> ``1d``)."""
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_MS[unit]
        if ms % size == 0 and ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
