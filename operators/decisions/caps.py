"""Frequency caps over rolling windows, counted per canonical customer."""

from __future__ import annotations

from operators.model.state import Send
from operators.policy.compiled import CapSpec


def full_cap(
    caps: tuple[CapSpec, ...], sends: list[Send], action: str, channel: str, category: str, now: int
) -> tuple[CapSpec, int | None] | None:
    """The first cap a send of ``action`` on ``channel`` at ``now`` would exceed, with when
    a slot frees (None: never, for a cap of 0); None if every cap has room.

    A window is ``(end - window, end]``: a send exactly ``window`` before ``end`` no longer
    counts. Every window that would hold the new send must have room, including those
    ending at sends made after ``now`` (a decision taken for an earlier event time, when
    events arrive out of order). Sends are counted once per action id; a bounced one
    reached nobody and is not counted.
    """
    for cap in caps:
        if not cap.matches(action, channel, category):
            continue
        counted: dict[str, int] = {}
        for at, action_id, sent_action, sent_channel, sent_category, _, _, bounced, _ in sends:
            if bounced:
                continue
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
