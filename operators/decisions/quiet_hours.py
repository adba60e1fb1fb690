"""Quiet hours in the customer's own time zone (daylight saving transitions included)."""

from __future__ import annotations

import hashlib
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from operators.policy.compiled import QuietHours


def quiet_until(
    quiet: QuietHours, now: int, tz: ZoneInfo, channel: str | None = None
) -> int | None:
    """When the quiet hours around ``now`` on ``channel`` end (ms), or None if ``now`` is
    outside them.

    Quiet hours start at ``start`` (inclusive) and end at ``end`` (exclusive), local
    time; the end instant is computed in the zone, so on a daylight saving change the
    night is an hour shorter or longer in UTC.
    """
    local = datetime.fromtimestamp(now / 1000, tz)
    minute = local.hour * 60 + local.minute
    start, end = quiet.window(channel)
    if start < end:
        if not start <= minute < end:
            return None
        end_day = local.date()
    elif minute >= start:
        end_day = local.date() + timedelta(days=1)
    elif minute < end:
        end_day = local.date()
    else:
        return None
    ends = datetime.combine(end_day, time(end // 60, end % 60), tzinfo=tz)
    at = int(ends.timestamp() * 1000)
    if at <= now:  # inside the hour a fall-back repeats: the end is its second pass
        at = int(ends.replace(fold=1).timestamp() * 1000)
    return at if at > now else None


def release_offset(quiet: QuietHours, customer_id: str) -> int:
    """How long after quiet hours end this customer's deferred actions leave: a stable
    place in ``[0, release_over)`` ms from a digest of the canonical id, so 10,000
    deferrals do not all leave in the same second, and one customer's always leave at the
    same offset."""
    if not quiet.release_over:
        return 0
    digest = hashlib.sha256(customer_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % quiet.release_over
