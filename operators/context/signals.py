"""Signals: what a customer's events say (intent, friction, lifecycle, sensitive
circumstances), each firing at an instant for a group.

Counting signals fire from windows (:mod:`operators.context.windows`), absence signals from
timers (:mod:`operators.context.absences`); text signals fire here, from what an event's text
names.
"""

from __future__ import annotations

from dataclasses import dataclass

from operators.model.fast_init import fast_init
from operators.model.records import Event, lookup
from operators.model.state import Group
from operators.policy.compiled import TextSignal


@fast_init
@dataclass(frozen=True, slots=True)
class SignalFired:
    """A signal that fired at ``at``, for ``group``, because of ``triggered_by`` (event ids)."""

    signal: str
    group: Group
    at: int
    triggered_by: tuple[str, ...]


def names_a_phrase(signal: TextSignal, event: Event) -> SignalFired | None:
    """A text signal fires when its text field names one of its phrases. What the text
    says is not kept: the signal carries only the event id."""
    text = lookup(signal.text_field, event)
    if not isinstance(text, str) or not signal.matcher.matches(text):
        return None
    return SignalFired(signal.name, None, event.time, (event.event_id,))
