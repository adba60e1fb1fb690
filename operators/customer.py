"""One customer's journey, event by event: context -> moments -> decisions.

This is the core the dataflow's per-customer step calls. Time is event time:
an event is handled as of its timestamp, and absence signals fire as of their
due time, whether the clock that reached it was the next event, the end of a
replay, or the wall clock in Kafka mode.
"""

from __future__ import annotations

from operators.context import (
    CustomerState,
    SignalFired,
    due_absences,
    names_a_phrase,
    open_moments,
    record_consent,
    start_suppressions,
    watch_absences,
)
from operators.decide import Output, decide
from operators.model import Event
from operators.policy import Policy
from operators.windows import count


def handle_event(policy: Policy, state: CustomerState, event: Event) -> list[Output]:
    """Fire what fell due before the input's event time reached ``event`` (its watermark:
    later than its own time when it arrived late), then let ``event`` update context and
    decide.

    Suppressions the event or its signals start take hold before any decision it
    causes: a complaint that also completes a window gets no marketing for it.
    """
    outputs = fire_due(policy, state, max(event.time, event.watermark), inclusive=False)
    state.seq += 1
    event_type = event.type
    if event_type == "consent_changed":
        record_consent(policy, state, event)
    start_suppressions(state, policy.suppressions_by_event.get(event_type, ()), event.time, event)
    if event_type == "feedback":
        outcome = event.properties.get("outcome")
        if isinstance(outcome, str):
            start_suppressions(
                state, policy.suppressions_by_feedback.get(outcome, ()), event.time, event
            )
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
    watch_absences(state, policy.absence_signals, event)
    if state.last_event_at is None or event.time > state.last_event_at:
        state.last_event_at = event.time
    for signal_fired in fired:
        start_suppressions(
            state, policy.suppressions_by_signal.get(signal_fired.signal, ()), signal_fired.at, None
        )
    for signal_fired in fired:
        now = max(event.time, signal_fired.at)
        for key in open_moments(state, policy, signal_fired, event.event_id):
            outputs.extend(decide(policy, state, key, now))
    return outputs


def fire_due(policy: Policy, state: CustomerState, until: int, inclusive: bool) -> list[Output]:
    """Fire the absence signals due before ``until`` (or at it, if ``inclusive``), each
    deciding as of its own due time."""
    outputs: list[Output] = []
    for signal_fired in due_absences(state, until, inclusive):
        start_suppressions(
            state, policy.suppressions_by_signal.get(signal_fired.signal, ()), signal_fired.at, None
        )
        for key in open_moments(state, policy, signal_fired, signal_fired.triggered_by[0]):
            outputs.extend(decide(policy, state, key, signal_fired.at))
    return outputs
