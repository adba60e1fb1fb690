"""Feedback: a channel service's word on an action it was sent.

It may start suppressions (a complaint), revoke consent (an unsubscribe) and, when
the customer acted on the action (clicked, converted), close its moment, so no
other channel repeats it (cross-channel continuity); an open, click or conversion marks
the send engaged (fatigue). A bounce uncounts the send and makes its channel unreachable.
"""

from __future__ import annotations

from operators.context.consent import EVERY_CHANNEL, revoke_consent
from operators.context.moments import close_moment
from operators.context.reachability import record_bounce
from operators.context.sends import mark_bounced, mark_engaged, sent
from operators.context.suppression import start_suppressions
from operators.model.action_ids import action_of_action_id
from operators.model.records import Event
from operators.model.state import CustomerState, Group, MomentKey
from operators.policy.compiled import Policy

ACTED_ON = frozenset({"clicked", "converted"})
ENGAGED = frozenset({"opened", *ACTED_ON})
"""The customer did not ignore the send (:mod:`operators.decisions.fatigue`)."""
BOUNCED = "bounced"
"""The send reached nobody: caps stop counting it, and its channel becomes unreachable
(:mod:`operators.context.reachability`)."""
FROM_FEEDBACK = "from_feedback"
"""A revocation's channel meaning the feedback's own channel."""


def apply_feedback(policy: Policy, state: CustomerState, event: Event) -> None:
    """What a ``feedback`` event's outcome does; ``complained`` also does what a complaint
    event does."""
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
        if channel == FROM_FEEDBACK:
            # the feedback's channel, else the channel the action went out on, else all
            channel = props.get("channel") or _sent_on(state, props.get("action_id"))
        if isinstance(channel, str):
            revoke_consent(policy, state, channel, purpose, event.time)
    action_id = props.get("action_id")
    if outcome in ENGAGED and isinstance(action_id, str):
        mark_engaged(state, action_id, event.time)
    if outcome in ACTED_ON and isinstance(action_id, str):
        _acted_on(policy, state, action_id)
    elif outcome == BOUNCED and isinstance(action_id, str):
        bounced = mark_bounced(state, action_id)
        on = props.get("channel") or (bounced.channel if bounced is not None else None)
        if isinstance(on, str):
            record_bounce(policy, state, on, event.time)


def _sent_on(state: CustomerState, action_id: object) -> str:
    send = sent(state, action_id)
    return send.channel if send is not None else EVERY_CHANNEL


def _acted_on(policy: Policy, state: CustomerState, action_id: str) -> None:
    """Close the moment the action was for: of the send's group while the send is
    remembered, else the ungrouped one."""
    send = sent(state, action_id)
    name = send.action if send is not None else action_of_action_id(action_id)
    group: Group = send.group if send is not None else None
    action = policy.actions.get(name) if name is not None else None
    if action is not None:
        close_moment(state, MomentKey(action.moment, group))
