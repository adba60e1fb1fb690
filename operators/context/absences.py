"""Absence signals: timers that fire when an awaited event does not come.

A checkout starts one that fires 30 minutes later unless a purchase comes first;
any event restarts the inactivity one. They fire in event time, as of their due time
(see :func:`operators.journey.fire_due`).
"""

from __future__ import annotations

from operators.context.signals import SignalFired
from operators.model.records import Event
from operators.model.state import CustomerState, PendingAbsence
from operators.policy.compiled import AbsenceSignal


def watch_absences(
    state: CustomerState, signals: tuple[AbsenceSignal, ...], event: Event, start: bool = True
) -> None:
    """An event cancels the absence signals awaiting it, if it happened after they started,
    and (with ``start``: not for a late event, whose moment has passed) starts those it
    begins, unless an awaited event already came after it."""
    at = event.time
    for signal in signals:
        name = signal.name
        if signal.unless is None or event.type in signal.unless:
            cancel_timer(state, name, at)
        if start and (signal.on is None or event.type in signal.on):
            pending = state.pending.get(name)
            if (pending is None or at >= pending.started_at) and state.cancelled_at.get(
                name, -1
            ) <= at:
                state.pending[name] = PendingAbsence(at + signal.after, event.event_id, at)


def cancel_timer(state: CustomerState, name: str, at: int) -> None:
    """An awaited event at ``at`` cancels the timer of signal ``name`` if it started by
    then, and is remembered so that an older start arriving later starts nothing."""
    pending = state.pending.get(name)
    if pending is not None and at >= pending.started_at:
        del state.pending[name]
    if at > state.cancelled_at.get(name, -1):
        state.cancelled_at[name] = at


def due_absences(state: CustomerState, until: int, inclusive: bool) -> list[SignalFired]:
    """Pop the absence signals due before ``until`` (or at it, if ``inclusive``), in due order."""
    due = [
        (pending.due, name, pending)
        for name, pending in state.pending.items()
        if pending.due < until or (inclusive and pending.due == until)
    ]
    due.sort()
    fired = []
    for at, name, pending in due:
        del state.pending[name]
        fired.append(SignalFired(name, None, at, (pending.started_by,)))
    return fired


def merge_absences(survivor: CustomerState, retired: CustomerState) -> None:
    """A pending absence survives unless the other profile saw what it awaits after it
    started (at the same instant, both could be the start: it survives); of two
    survivors, the later start wins. What each profile saw last of the awaited events
    is kept."""
    kept: dict[str, PendingAbsence] = {}
    for mine, theirs in ((survivor, retired), (retired, survivor)):
        for name, pending in mine.pending.items():
            if theirs.cancelled_at.get(name, -1) > pending.started_at:
                continue
            if name not in kept or pending.started_at > kept[name].started_at:
                kept[name] = pending
    survivor.pending = kept
    for name, at in retired.cancelled_at.items():
        survivor.cancelled_at[name] = max(at, survivor.cancelled_at.get(name, at))
