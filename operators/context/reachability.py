"""Reachability: whether a channel can reach the customer at all.

A channel the policy's ``reachability`` lists is tried only while the customer's profile
holds an identifier of one of its types (an email for ``email``); the identity step says
which types a profile holds with each event (:attr:`operators.model.records.Event.profile_kinds`).
A ``bounced`` feedback makes that channel unreachable until the profile gains a new
identifier of one of its types. Channels not listed are always reachable.
"""

from __future__ import annotations

from operators.model.records import Event
from operators.model.state import CustomerState
from operators.policy.compiled import Policy


def record_profile(policy: Policy, state: CustomerState, event: Event) -> None:
    """Take in what the identity step found of the profile's identifier types; a new
    identifier of a channel's type makes a bounced channel reachable again."""
    if event.profile_kinds is None:
        return  # feedback, which names an action, not identifiers
    state.identifier_kinds = event.profile_kinds
    if event.gained_kinds and state.bounced:
        gained = set(event.gained_kinds)
        state.bounced = tuple(
            (channel, at)
            for channel, at in state.bounced
            if gained.isdisjoint(policy.reachability.get(channel, ()))
        )


def record_bounce(policy: Policy, state: CustomerState, channel: str, at: int) -> None:
    """A send on ``channel`` bounced at ``at``: the channel is unreachable from now on, until
    the profile gains a new identifier of one of its types."""
    if channel not in policy.reachability:
        return  # always reachable: nothing on the profile to replace
    kept = tuple((c, t) for c, t in state.bounced if c != channel)
    state.bounced = tuple(sorted((*kept, (channel, at))))


def unreachable_because(policy: Policy, state: CustomerState, channel: str) -> str | None:
    """Why ``channel`` cannot reach the customer now, or None if it can."""
    kinds = policy.reachability.get(channel)
    if kinds is None:
        return None
    if any(c == channel for c, _ in state.bounced):
        return f"{channel} bounced"
    if kinds.isdisjoint(state.identifier_kinds):
        return f"no {' or '.join(sorted(kinds))} for {channel}"
    return None


def merge_reachability(survivor: CustomerState, retired: CustomerState) -> None:
    """The merged profile holds both profiles' identifier types; a bounce on either stays
    (the later one), until the profile gains a new identifier of the channel's type (the
    merge itself may bring one: the identity step says so with the event that merged)."""
    survivor.identifier_kinds = tuple(
        sorted(set(survivor.identifier_kinds) | set(retired.identifier_kinds))
    )
    bounced = dict(survivor.bounced)
    for channel, at in retired.bounced:
        bounced[channel] = max(at, bounced.get(channel, at))
    survivor.bounced = tuple(sorted(bounced.items()))
