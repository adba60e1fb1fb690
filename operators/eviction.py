"""Eviction: a customer idle long enough, with nothing pending, is forgotten.

Pending means a timer, a moment still worth acting on, a window still counting, a
cooldown or a suppression still running, a send a cap still counts, a decision still
waiting for a conversion, or a trial learning has yet to score. Learning's evidence is
not: it is forgotten with the customer. Consent is
not: a forgotten customer has none, so nothing marketing reaches them until they
grant it again (opt-in).
"""

from __future__ import annotations

from operators.context.moments import worth_keeping_until
from operators.context.sends import counted_until
from operators.context.suppression import suppressed_until
from operators.context.windows import counting_until
from operators.decisions.cooldowns import cooling_down_until
from operators.measurement.conversions import watching_until
from operators.model.state import CustomerState
from operators.policy.compiled import Policy


def evict_at(policy: Policy, state: CustomerState) -> int | None:
    """When this customer may be forgotten: ``evict_idle_after`` past their last event, or
    once nothing is pending if that is later. None while a timer is pending (it has to
    fire first)."""
    if state.pending or state.deferred or state.trials or state.last_event_at is None:
        return None
    at = state.last_event_at + policy.evict_idle_after
    for until in (
        worth_keeping_until(policy, state),
        counting_until(policy, state),
        cooling_down_until(policy, state),
        suppressed_until(state),
        counted_until(policy, state),
        watching_until(state),
    ):
        if until is not None:
            at = max(at, until)
    return at
