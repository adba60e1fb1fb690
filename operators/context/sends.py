"""Sends: what a customer was sent lately, which caps count and feedback refers to."""

from __future__ import annotations

from operators.model.state import CustomerState, Group, Send
from operators.policy.compiled import ActionSpec, Policy

MAX_SENDS = 256
"""Sends kept per customer (the latest), beyond which older ones are forgotten."""
FATIGUE_WINDOW = 7 * 86_400_000
"""The fatigue measure counts a customer's actions over this rolling window."""


def record_send(
    policy: Policy,
    state: CustomerState,
    action_id: str,
    action: ActionSpec,
    channel: str,
    group: Group,
    now: int,
    held_out: bool = False,
) -> None:
    """Remember a send, or a held-out one (caps count it once per action id); sends older
    than :attr:`Policy.longest_send_memory` are dropped."""
    horizon = now - policy.longest_send_memory
    kept = [s for s in state.sends if s.at > horizon and s.action_id != action_id]
    kept.append(Send(now, action_id, action.name, channel, action.category, group, held_out))
    kept.sort(key=_order)
    state.sends = kept[-MAX_SENDS:]


def recent_sends(state: CustomerState, now: int) -> int:
    """Actions written to a channel for this customer in the :data:`FATIGUE_WINDOW` up to
    ``now``, ``now`` included: what the fatigue measure observes at each send."""
    since = now - FATIGUE_WINDOW
    return sum(1 for send in state.sends if send.at > since and not (send.held_out or send.bounced))


def sent(state: CustomerState, action_id: object) -> Send | None:
    """The remembered send with ``action_id`` (the latest, if it was sent twice)."""
    found = None
    for send in state.sends:
        if send.action_id == action_id:
            found = send
    return found


def mark_bounced(state: CustomerState, action_id: str) -> Send | None:
    """The channel said the send with ``action_id`` bounced: it stops counting. The send,
    if it is remembered."""
    send = sent(state, action_id)
    if send is not None:
        state.sends = [s._replace(bounced=True) if s is send else s for s in state.sends]
    return send


def mark_engaged(state: CustomerState, action_id: str, at: int) -> None:
    """The customer opened, clicked or converted on the send with ``action_id`` at ``at``;
    the earliest such word is kept (what fatigue asks is whether it came in time)."""
    send = sent(state, action_id)
    if send is not None and (send.engaged_at is None or at < send.engaged_at):
        state.sends = [s._replace(engaged_at=at) if s is send else s for s in state.sends]


def counted_until(policy: Policy, state: CustomerState) -> int | None:
    """Until when the latest send still counts against some cap or fatigue rule."""
    if state.sends and (policy.caps or policy.fatigue):
        longest = max([policy.longest_cap_window, *(rule.within for rule in policy.fatigue)])
        return state.sends[-1].at + longest
    return None


def merge_sends(survivor: CustomerState, retired: CustomerState) -> None:
    """Sends count once each (by action id) against the caps; what either profile heard
    about a send (bounced, engaged) stays known."""
    sends = {send.action_id: send for send in survivor.sends}
    for send in retired.sends:
        known = sends.get(send.action_id)
        sends[send.action_id] = send if known is None else _combined(known, send)
    survivor.sends = sorted(sends.values(), key=_order)[-MAX_SENDS:]


def _combined(kept: Send, other: Send) -> Send:
    engaged = [at for at in (kept.engaged_at, other.engaged_at) if at is not None]
    return kept._replace(
        bounced=kept.bounced or other.bounced, engaged_at=min(engaged) if engaged else None
    )


def _order(send: Send) -> tuple[int, str]:
    return (send.at, send.action_id)
