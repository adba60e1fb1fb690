"""Quiet hours in the customer's own time zone (daylight saving transitions included)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from operators.policy import QuietHours


def quiet_until(quiet: QuietHours, now: int, tz: ZoneInfo) -> int | None:
    """When the quiet hours around ``now`` end (ms), or None if ``now`` is outside them.

    Quiet hours start at ``start`` (inclusive) and end at ``end`` (exclusive), local
    time; the end instant is computed in the zone, so on a daylight saving change the
    night is an hour shorter or longer in UTC.
    """
    local = datetime.fromtimestamp(now / 1000, tz)
    minute = local.hour * 60 + local.minute
    start, end = quiet.start, quiet.end
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
