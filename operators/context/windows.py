"""Counting signals: sliding windows in event time, per customer and group.

A window holds the events it counts (:data:`operators.model.state.Entry`) in time order,
and only those a future event could still need. Events arrive at most
``allowed_lateness`` behind their input's clock (later ones are *late* and not
counted), so the entries newer than ``newest - lateness`` may still gain
neighbours on either side and are all kept; of the older ones, only the
``at_least - 1`` latest can still complete a window and the rest go. That is
exact for out-of-order events within the lateness, and bounded: see
:data:`MAX_UNSETTLED` and :data:`operators.model.bounded.MAX_GROUPS`.
"""

from __future__ import annotations

from bisect import bisect_left, insort

from operators.context.signals import SignalFired
from operators.model.bounded import keep_latest_groups, make_room
from operators.model.records import Event, lookup
from operators.model.state import CustomerState, Entry, Group
from operators.policy.compiled import CountingSignal, Policy

MAX_UNSETTLED = 16
"""Entries a window keeps beyond ``at_least`` while they are within the lateness of its
newest: a burst larger than this inside the lateness is counted from its latest events."""


def count(
    state: CustomerState, signal: CountingSignal, event: Event, lateness: int
) -> SignalFired | None:
    """Count ``event`` in its window; the signal fires when ``at_least`` events of it fall
    within ``within`` (inclusive).

    The signal fires at the newest event of the completed window: the event's own
    time, unless it arrived out of order into the middle of the window.
    """
    group = group_of(signal, event)
    if group is False:
        return None
    assert group is not True
    key = (signal.name, group)
    window = state.windows.get(key)
    if window is None:
        make_room(state.windows, signal.name, _newest)
        window = state.windows[key] = []
    event_id = event.event_id
    for _, seen in window:
        if seen == event_id:
            return None
    entry = (event.time, event_id)
    insort(window, entry)
    fired = _completed(window, entry, signal, group)
    prune(window, signal, lateness)
    return fired


def group_of(signal: CountingSignal, event: Event) -> Group | bool:
    """The window group an event counts in; False when the event lacks the group field."""
    if signal.group_by is None:
        return None
    value = lookup(signal.group_by, event)
    if value is None or isinstance(value, (dict, list)):
        return False
    return str(value)


def _completed(
    window: list[Entry], entry: Entry, signal: CountingSignal, group: Group
) -> SignalFired | None:
    """The latest run of ``at_least`` consecutive entries that holds ``entry`` and spans at
    most ``within``, if there is one."""
    need = signal.at_least
    at = bisect_left(window, entry)
    for start in range(min(at, len(window) - need), max(at - need, -1), -1):
        run = window[start : start + need]
        (first, _), (last, _) = run[0], run[-1]
        if last - first <= signal.within:
            return SignalFired(signal.name, group, last, tuple(e for _, e in run))
    return None


def prune(window: list[Entry], signal: CountingSignal, lateness: int) -> None:
    """Drop the entries of a (time-ordered) window that no event within the lateness of
    its newest could still need."""
    if not window:
        return
    settled = _newest(window) - lateness
    first_unsettled = bisect_left(window, (settled, ""))
    start = max(0, first_unsettled - (signal.at_least - 1))
    horizon = settled - signal.within
    while start < first_unsettled:
        at, _ = window[start]
        if at >= horizon:
            break
        start += 1
    start = max(start, len(window) - (signal.at_least + MAX_UNSETTLED))
    if start:
        del window[:start]


def counting_until(policy: Policy, state: CustomerState) -> int | None:
    """When the last window still counting stops counting (its newest event's ``within``
    has passed), if any window holds events."""
    until: int | None = None
    for (signal, _), window in state.windows.items():
        counting = policy.counting.get(signal)
        if counting is not None and window:
            end = _newest(window) + counting.within
            until = end if until is None else max(until, end)
    return until


def merge_windows(policy: Policy, survivor: CustomerState, retired: CustomerState) -> None:
    """Windows merge in time order, each event once, pruned as one window."""
    for key, events in retired.windows.items():
        merged = _unique_events(sorted(set(survivor.windows.get(key, [])) | set(events)))
        signal_name, _ = key
        signal = policy.counting.get(signal_name)
        if signal is not None:
            prune(merged, signal, policy.allowed_lateness)
        survivor.windows[key] = merged
    keep_latest_groups(survivor.windows, _newest)


def _newest(window: list[Entry]) -> int:
    at, _ = window[-1]
    return at


def _unique_events(entries: list[Entry]) -> list[Entry]:
    seen: set[str] = set()
    unique = []
    for at, event_id in entries:
        if event_id not in seen:
            seen.add(event_id)
            unique.append((at, event_id))
    return unique
