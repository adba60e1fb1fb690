"""Customer context: what one event changes in a customer's state, and the signals it fires.

Consent, suppressions and feedback take hold first, so that a complaint which also
completes a window gets no marketing for it (the journey decides once the signals
are in: :mod:`operators.journey`).
"""

from __future__ import annotations

from operators.context.absences import watch_absences
from operators.context.attributes import record_attributes
from operators.context.consent import record_consent
from operators.context.dates import watch_dates
from operators.context.feedback import apply_feedback
from operators.context.reachability import record_profile
from operators.context.signals import SignalFired, names_a_phrase
from operators.context.suppression import start_suppressions
from operators.context.timezones import record_timezone
from operators.context.windows import count
from operators.model.records import Event
from operators.model.state import CustomerState
from operators.policy.compiled import Policy


def update_context(policy: Policy, state: CustomerState, event: Event) -> list[SignalFired]:
    """Let ``event`` change the context; return the counting, text and date signals it
    fired (a date signal fires at once when its date is already within ``before``).

    A late event still changes consent and suppressions, cancels timers and counts as
    activity, but counts in no window and starts no absence timer: those moments have
    passed.
    """
    state.seq += 1
    event_type = event.type
    record_timezone(state, event)
    if policy.attributes:
        record_attributes(policy, state, event)
    if policy.reachability:
        record_profile(policy, state, event)
    if event_type == "consent_changed":
        record_consent(policy, state, event)
    start_suppressions(state, policy.suppressions_by_event.get(event_type, ()), event.time, event)
    if event_type == "feedback":
        apply_feedback(policy, state, event)
    fired: list[SignalFired] = []
    if not event.late:
        for signal in policy.counting_by_type.get(event_type, ()):
            counted = count(state, signal, event, policy.allowed_lateness)
            if counted is not None:
                fired.append(counted)
    for text_signal in policy.text_by_type.get(event_type, ()):
        named = names_a_phrase(text_signal, event)
        if named is not None:
            fired.append(named)
    watch_absences(state, policy.absence_signals, event, start=not event.late)
    if policy.date_signals:
        fired.extend(watch_dates(policy, state, event, start=not event.late))
    if state.last_event_at is None or event.time > state.last_event_at:
        state.last_event_at = event.time
    return fired
