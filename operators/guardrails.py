"""Guardrails that depend on time: frequency caps over rolling windows and quiet hours
in the customer's own time zone (daylight saving transitions included)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from operators.policy import CapSpec, QuietHours

Send = tuple[int, str, str, str, str, str | None]
"""A recent send: (time, action id, action, channel, category, moment group)."""


@cache
def zone(name: str) -> ZoneInfo | None:
    """The time zone called ``name``, or None if there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


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
    return int(ends.timestamp() * 1000)


def full_cap(
    caps: tuple[CapSpec, ...], sends: list[Send], action: str, channel: str, category: str, now: int
) -> tuple[CapSpec, int | None] | None:
    """The first cap a send of ``action`` on ``channel`` at ``now`` would exceed, with when
    a slot frees (None: never, for a cap of 0); None if every cap has room.

    A window is ``(now - window, now]``: a send exactly ``window`` ago no longer counts.
    Sends are counted once per action id.
    """
    for cap in caps:
        if not cap.matches(action, channel, category):
            continue
        counted: dict[str, int] = {}
        for at, action_id, sent_action, sent_channel, sent_category, _ in sends:
            if now - cap.window < at <= now and cap.matches(
                sent_action, sent_channel, sent_category
            ):
                counted.setdefault(action_id, at)
        if len(counted) >= cap.max:
            times = sorted(counted.values())
            frees = times[len(times) - cap.max] + cap.window if cap.max > 0 else None
            return cap, frees
    return None
