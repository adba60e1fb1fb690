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
    count,
    due_absences,
    open_moments,
    record_consent,
    watch_absences,
)
from operators.decide import Output, decide
from operators.model import Event
from operators.policy import Policy


def handle_event(policy: Policy, state: CustomerState, event: Event) -> list[Output]:
    """Fire what fell due before the input's event time reached ``event`` (its watermark:
    later than its own time when it arrived late), then let ``event`` update context and
    decide."""
    outputs = fire_due(policy, state, max(event.time, event.watermark), inclusive=False)
    state.seq += 1
    if event.type == "consent_changed":
        record_consent(state, event)
    fired: list[SignalFired] = []
    for signal in policy.counting_by_type.get(event.type, ()):
        signal_fired = count(state, signal, event)
        if signal_fired is not None:
            fired.append(signal_fired)
    watch_absences(state, policy.absence_signals, event)
    if state.last_event_at is None or event.time > state.last_event_at:
        state.last_event_at = event.time
    for signal_fired in fired:
        for key in open_moments(state, policy, signal_fired, event.event_id):
            outputs.extend(decide(policy, state, key, event.time))
    return outputs


def fire_due(policy: Policy, state: CustomerState, until: int, inclusive: bool) -> list[Output]:
    """Fire the absence signals due before ``until`` (or at it, if ``inclusive``), each
    deciding as of its own due time."""
    outputs: list[Output] = []
    for signal_fired in due_absences(state, until, inclusive):
        for key in open_moments(state, policy, signal_fired, signal_fired.triggered_by[0]):
            outputs.extend(decide(policy, state, key, signal_fired.at))
    return outputs
