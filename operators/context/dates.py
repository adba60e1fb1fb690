"""Date signals: timers at a time an event carries (a renewal date).

``renewal_scheduled`` with ``properties.renewal_date`` starts a timer ``before`` ahead of
that date; an RFC 3339 date-time is that instant, a plain date is midnight in the
customer's time zone. A date already past starts nothing (and takes the place of the
timer an earlier statement started); a date only within ``before`` fires the signal at
once. A later statement moves the timer; an ``unless`` event after the statement cancels
it, as for absence signals (:mod:`operators.context.absences`, whose timers these share). A
missing or unreadable date changes nothing here: ingest counts it (:func:`bad_dates`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from operators.context.absences import cancel_timer
from operators.context.signals import SignalFired
from operators.context.timezones import timezone_of
from operators.model.records import Event, lookup
from operators.model.state import CustomerState, PendingAbsence
from operators.model.timefmt import EARLIEST, LATEST, InvalidTimestamp, parse_ms, zone
from operators.policy.compiled import Policy

MISSING = "missing"
"""The event has no value at the signal's ``at``."""
NOT_A_DATE = "not_a_date"
"""The value is not an RFC 3339 date-time or date, or names no real day in 1970-9000."""
REASONS = (MISSING, NOT_A_DATE)

_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_MS_PER_S = 1000


class BadDate(ValueError):
    """A date signal's value that names no instant; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def instant_of(value: Any, timezone: str) -> int:
    """The instant ``value`` names, in ms: an RFC 3339 date-time, or a date at midnight in
    ``timezone`` (the first instant of that day there, where a clock change skips
    midnight)."""
    if value is None:
        raise BadDate(MISSING)
    if not isinstance(value, str):
        raise BadDate(NOT_A_DATE)
    if _DATE_TIME.fullmatch(value):
        try:
            return parse_ms(value)
        except InvalidTimestamp:
            raise BadDate(NOT_A_DATE) from None
    day = _DATE.fullmatch(value)
    if day is None:
        raise BadDate(NOT_A_DATE)
    year, month, date = (int(part) for part in day.groups())
    try:
        midnight = datetime(year, month, date, tzinfo=zone(timezone))
    except ValueError:
        raise BadDate(NOT_A_DATE) from None
    ms = int(midnight.timestamp()) * _MS_PER_S
    if not EARLIEST <= ms < LATEST:
        raise BadDate(NOT_A_DATE)
    return ms


def watch_dates(
    policy: Policy, state: CustomerState, event: Event, start: bool = True
) -> list[SignalFired]:
    """Let ``event`` cancel, start or move the date signals' timers; return those that fire
    at once (their date is within ``before`` already). With ``start`` False (a late
    event) it only cancels, as for absence signals."""
    fired: list[SignalFired] = []
    at = event.time
    for signal in policy.date_signals:
        name = signal.name
        if signal.unless is None or event.type in signal.unless:
            cancel_timer(state, name, at)
        if not start or event.type not in signal.on:
            continue
        pending = state.pending.get(name)
        if (pending is not None and at < pending.started_at) or state.cancelled_at.get(
            name, -1
        ) > at:
            continue  # a later statement, or what cancels it, came first
        try:
            date = instant_of(lookup(signal.at, event), timezone_of(policy, state))
        except BadDate:
            continue  # counted at ingest; the timer an earlier statement started stays
        state.pending.pop(name, None)
        due = date - signal.before
        if date <= at:
            continue
        if due <= at:
            fired.append(SignalFired(name, None, at, (event.event_id,)))
        else:
            state.pending[name] = PendingAbsence(due, event.event_id, at)
    return fired


def bad_dates(policy: Policy, event: Event) -> Iterator[tuple[str, str]]:
    """(signal, reason) for each date signal ``event`` starts but whose date it lacks."""
    for signal in policy.date_signals:
        if event.type in signal.on:
            try:
                instant_of(lookup(signal.at, event), policy.default_timezone)
            except BadDate as bad:
                yield signal.name, bad.reason
