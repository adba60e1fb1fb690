"""Journey moments: opened by signals with a value that halves every half-life.

A moment's value now is ``value * 2 ** (-age / half_life)``; once it has decayed
below its action's ``min_value`` it is stale. At most one moment of each kind and
group is open; a signal that fires again refreshes it.
"""

from __future__ import annotations

from operators.context.decay import decayed, falls_below_at
from operators.context.signals import SignalFired
from operators.model.bounded import keep_latest_groups, make_room
from operators.model.state import CustomerState, MomentKey, OpenMoment
from operators.policy.compiled import Policy

MAX_TRIGGERS = 16
"""Event ids a moment keeps as its explanation (the latest)."""


def value_now(moment: OpenMoment, half_life: int, now: int) -> float:
    """What ``moment`` is worth at ``now``, decayed since it opened."""
    return decayed(moment.value_at_open, now - moment.opened_at, half_life)


def open_moments(
    state: CustomerState, policy: Policy, fired: SignalFired, event_id: str
) -> list[MomentKey]:
    """Open (or refresh) every moment ``fired`` feeds; return their keys."""
    opened = []
    for spec in policy.moments_by_signal.get(fired.signal, ()):
        key = MomentKey(spec.name, fired.group)
        moment = state.moments.get(key)
        if moment is None:
            make_room(state.moments, spec.name, _opened_at)
            state.moments[key] = OpenMoment(
                spec.value, fired.at, event_id, (fired.signal,), fired.triggered_by[-MAX_TRIGGERS:]
            )
        else:
            moment.value_at_open = spec.value
            moment.opened_at = max(moment.opened_at, fired.at)
            if fired.signal not in moment.signals:
                moment.signals = (*moment.signals, fired.signal)
            moment.triggered_by = _latest_unique(moment.triggered_by, fired.triggered_by)
        opened.append(key)
    return opened


def close_moment(state: CustomerState, key: MomentKey) -> None:
    """Close a moment (a customer acted on it), and any decision waiting for it."""
    state.moments.pop(key, None)
    state.deferred.pop(key, None)


def worth_keeping_until(policy: Policy, state: CustomerState) -> int | None:
    """When the last open moment will have decayed below every threshold of its actions."""
    until: int | None = None
    for (name, _), moment in state.moments.items():
        spec = policy.moments.get(name)
        threshold = policy.lowest_min_value.get(name)
        if spec is not None and threshold is not None:
            end = falls_below_at(moment.value_at_open, moment.opened_at, spec.half_life, threshold)
            until = end if until is None else max(until, end)
    return until


def merge_moments(policy: Policy, survivor: CustomerState, retired: CustomerState) -> None:
    """Of two open moments of one kind and group, the one worth more now stays ("now": the
    later of the two profiles' last events)."""
    now = max(survivor.last_event_at or 0, retired.last_event_at or 0)
    for key, moment in retired.moments.items():
        mine = survivor.moments.get(key)
        spec = policy.moments.get(key.moment)
        if (
            mine is None
            or spec is None
            or value_now(moment, spec.half_life, now) > value_now(mine, spec.half_life, now)
        ):
            survivor.moments[key] = moment
    keep_latest_groups(survivor.moments, _opened_at)


def _opened_at(moment: OpenMoment) -> int:
    return moment.opened_at


def _latest_unique(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    merged = list(old)
    for event_id in new:
        if event_id not in merged:
            merged.append(event_id)
    return tuple(merged[-MAX_TRIGGERS:])
