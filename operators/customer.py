"""One customer's journey, event by event: context -> moments -> decisions.

This is the core the dataflow's per-customer step calls. Time is event time:
an event is handled as of its timestamp, and timers (absence signals, decisions
deferred by quiet hours or a full cap) fire as of their due time, whether the
clock that reached it was the next event, the end of a replay, or the wall
clock in Kafka mode.
"""

from __future__ import annotations

from operators.context import (
    CustomerState,
    SignalFired,
    close_moment,
    due_absences,
    names_a_phrase,
    open_moments,
    record_consent,
    record_timezone,
    revoke_consent,
    sent_on,
    watch_absences,
)
from operators.decide import MomentKey, Output, decide
from operators.model import Event
from operators.policy import Policy
from operators.suppression import start_suppressions
from operators.windows import count

ACTED_ON = frozenset({"clicked", "converted"})


def handle_event(policy: Policy, state: CustomerState, event: Event) -> list[Output]:
    """Fire what fell due before the input's event time reached ``event`` (its watermark:
    later than its own time when it arrived late), then let ``event`` update context and
    decide."""
    outputs = fire_due(policy, state, max(event.time, event.watermark), inclusive=False)
    outputs.extend(apply_event(policy, state, event))
    return outputs


def apply_event(policy: Policy, state: CustomerState, event: Event) -> list[Output]:
    """Let ``event`` update context and decide, once what fell due before it has fired.

    Consent, suppressions and feedback take hold before any decision the event
    causes: a complaint that also completes a window gets no marketing for it.
    """
    state.seq += 1
    event_type = event.type
    record_timezone(state, event)
    if event_type == "consent_changed":
        record_consent(policy, state, event)
    start_suppressions(state, policy.suppressions_by_event.get(event_type, ()), event.time, event)
    if event_type == "feedback":
        _feedback(policy, state, event)
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
    if state.last_event_at is None or event.time > state.last_event_at:
        state.last_event_at = event.time
    if not fired:
        return []
    keys: list[MomentKey] = []
    for signal_fired in fired:
        keys.extend(_take(policy, state, signal_fired, event.event_id))
    return decide(policy, state, keys, max(event.time, *(f.at for f in fired)))


def _take(
    policy: Policy, state: CustomerState, fired: SignalFired, opening_event: str
) -> list[MomentKey]:
    """A fired signal starts its suppressions and opens its moments (the keys returned);
    the caller decides once every signal of the instant is taken."""
    start_suppressions(state, policy.suppressions_by_signal.get(fired.signal, ()), fired.at, None)
    return open_moments(state, policy, fired, opening_event)


def _feedback(policy: Policy, state: CustomerState, event: Event) -> None:
    """A channel service's word on an action: suppressions it starts, consent it revokes
    (an unsubscribe), a moment it closes (clicked, converted); ``complained`` also does
    what a complaint event does."""
    props = event.properties
    outcome = props.get("outcome")
    if not isinstance(outcome, str):
        return
    start_suppressions(state, policy.suppressions_by_feedback.get(outcome, ()), event.time, event)
    if outcome == "complained":
        start_suppressions(
            state, policy.suppressions_by_event.get("complaint", ()), event.time, event
        )
    for channel, purpose in policy.consent_revocations.get(outcome, ()):
        named = channel
        if channel == "from_feedback":
            # the feedback's channel, else the channel the action went out on, else all
            named = props.get("channel") or sent_on(state, props.get("action_id")) or "*"
        if isinstance(named, str):
            revoke_consent(policy, state, named, purpose, event.time)
    if outcome in ACTED_ON and isinstance(props.get("action_id"), str):
        close_moment(policy, state, props["action_id"])


def fire_due(policy: Policy, state: CustomerState, until: int, inclusive: bool) -> list[Output]:
    """Fire the timers due before ``until`` (or at it, if ``inclusive``) in time order, each
    instant deciding as of itself: absence signals open their moments, deferred decisions
    are taken again."""
    outputs: list[Output] = []
    while True:
        due = state.next_due()
        if due is None or due > until or (due == until and not inclusive):
            return outputs
        keys: list[MomentKey] = []
        for signal_fired in due_absences(state, due, inclusive=True):
            keys.extend(_take(policy, state, signal_fired, signal_fired.triggered_by[0]))
        for key in [k for k, at in state.deferred.items() if at == due]:
            del state.deferred[key]
            keys.append(key)
        outputs.extend(decide(policy, state, keys, due))
