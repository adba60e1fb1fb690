"""Moment value with a half-life: ``value * 2 ** (-age / half_life)``."""

from __future__ import annotations

import math

NEVER_EXPIRES_HALF_LIVES = 64


def decayed(value: float, age: int, half_life: int) -> float:
    """``value`` after ``age`` ms of decay with ``half_life`` ms."""
    if age <= 0:
        return value
    factor: float = 2.0 ** (-age / half_life)
    return value * factor


def falls_below_at(value: float, opened_at: int, half_life: int, threshold: float) -> int:
    """The ms instant at which a moment opened at ``opened_at`` decays to ``threshold``."""
    if threshold <= 0:
        return opened_at + NEVER_EXPIRES_HALF_LIVES * half_life
    if value <= threshold:
        return opened_at
    return opened_at + math.floor(half_life * math.log2(value / threshold))
