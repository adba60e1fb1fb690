"""Guardrails that depend on time: frequency caps over rolling windows and quiet hours
in the customer's own time zone (daylight saving transitions included)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from operators.policy import CapSpec, QuietHours

Send = tuple[int, str, str, str, str, str | None]
"""A recent send: (time, action id, action, channel, category, moment group)."""


@lru_cache(maxsize=4096)
def zone(name: str) -> ZoneInfo | None:
    """The time zone called ``name``, or None if there is no such zone (``Europe``, a
    directory of zones, is none either)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
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
    at = int(ends.timestamp() * 1000)
    if at <= now:  # inside the hour a fall-back repeats: the end is its second pass
        at = int(ends.replace(fold=1).timestamp() * 1000)
    return at if at > now else None


def full_cap(
    caps: tuple[CapSpec, ...], sends: list[Send], action: str, channel: str, category: str, now: int
) -> tuple[CapSpec, int | None] | None:
    """The first cap a send of ``action`` on ``channel`` at ``now`` would exceed, with when
    a slot frees (None: never, for a cap of 0); None if every cap has room.

    A window is ``(end - window, end]``: a send exactly ``window`` before ``end`` no longer
    counts. Every window that would hold the new send must have room, including those
    ending at sends made after ``now`` (a decision taken for an earlier event time, when
    events arrive out of order). Sends are counted once per action id.
    """
    for cap in caps:
        if not cap.matches(action, channel, category):
            continue
        counted: dict[str, int] = {}
        for at, action_id, sent_action, sent_channel, sent_category, _ in sends:
            if now - cap.window < at < now + cap.window and cap.matches(
                sent_action, sent_channel, sent_category
            ):
                counted.setdefault(action_id, at)
        times = sorted(counted.values())
        later = [t for t in times if t > now]
        for end in (now, *later):
            inside = [t for t in times if end - cap.window < t <= end]
            if len(inside) < cap.max:
                continue
            if cap.max == 0:
                return cap, None
            if later:
                return cap, times[-1] + cap.window
            return cap, inside[len(inside) - cap.max] + cap.window
    return None
