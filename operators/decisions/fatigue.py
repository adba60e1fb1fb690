"""Fatigue: a customer who ignores what we send hears from us less.

A send is ignored when ``engaged_within`` passes with no ``opened``, ``clicked`` or
``converted`` feedback for it (:func:`operators.context.sends.mark_engaged`). While the last
``ignored`` sends a fatigue rule matches within its ``within`` were all ignored, the
actions it matches are held back until the oldest of them leaves ``within``. Only sends
that reached a channel count: held-out and bounced ones do not. A send whose
``engaged_within`` has not passed is not ignored yet, so a customer is never held back
while an answer to the latest send may still come.
"""

from __future__ import annotations

from operators.model.state import CustomerState, Send
from operators.policy.compiled import ActionSpec, FatigueRule, Policy


def fatigued_by(
    policy: Policy, state: CustomerState, action: ActionSpec, channel: str, now: int
) -> tuple[FatigueRule, int] | None:
    """The first fatigue rule holding back ``action`` on ``channel`` at ``now``, with until
    when; None if none does."""
    for rule in policy.fatigue:
        if not rule.matches(action.name, channel, action.category):
            continue
        until = _fatigued_until(rule, state.sends, now)
        if until is not None:
            return rule, until
    return None


def _fatigued_until(rule: FatigueRule, sends: list[Send], now: int) -> int | None:
    since = now - rule.within
    counted = [
        send
        for send in sends
        if since < send.at <= now
        and not (send.held_out or send.bounced)
        and rule.matches(send.action, send.channel, send.category)
    ]
    if len(counted) < rule.ignored:
        return None
    last = counted[-rule.ignored :]
    if all(_ignored(rule, send, now) for send in last):
        return last[0].at + rule.within
    return None


def _ignored(rule: FatigueRule, send: Send, now: int) -> bool:
    answer_by = send.at + rule.engaged_within
    if answer_by > now:
        return False
    return send.engaged_at is None or send.engaged_at > answer_by
