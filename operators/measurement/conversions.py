"""Conversions: what counts as success after a sent or held-out decision.

Each such decision waits for each conversion type that counts for its action
(:class:`operators.model.state.Watch`), for ``within`` after the decision, its end included.
The customer's first event of that type in the window converts it, once; one event
converts every decision whose window it falls in. Sent and held-out decisions wait
alike, so the two groups' conversion rates can be set side by side (the lift).
"""

from __future__ import annotations

from operators.model.records import Conversion, Decision, Event, Outcome
from operators.model.state import CustomerState, Watch
from operators.policy.compiled import Policy

MAX_WATCHES = 256
"""Decisions kept waiting per customer (the latest), beyond which older ones stop waiting."""


def watch_for_conversions(policy: Policy, state: CustomerState, decision: Decision) -> None:
    """Let a sent or held-out ``decision`` wait for the conversions its action counts (once
    each: a decision taken again with the same action id keeps its first wait)."""
    specs = policy.conversions_by_action.get(decision.action, ())
    if not specs or decision.action_id is None:
        return
    held_out = decision.outcome is Outcome.HELD_OUT
    horizon = decision.at - policy.allowed_lateness
    watches = [w for w in state.watches if w.until >= horizon]
    waiting = {(w.action_id, w.conversion) for w in watches}
    watches.extend(
        Watch(
            decision.at + spec.within,
            spec.type,
            decision.action_id,
            decision.action,
            held_out,
            decision.at,
        )
        for spec in specs
        if (decision.action_id, spec.type) not in waiting
    )
    state.watches = tuple(watches[-MAX_WATCHES:])


def convert(policy: Policy, state: CustomerState, event: Event) -> list[Conversion]:
    """The decisions ``event`` converts (they stop waiting for its type). An event out of
    order by up to ``allowed_lateness`` converts as if it had come in order; a late one
    (further behind) converts nothing, as it counts in no window. So waits that ended
    longer than that before the customer's latest event are forgotten: nothing can
    convert them any more."""
    if not state.watches or event.late or event.type not in policy.conversions_by_type:
        return []
    converted: list[Conversion] = []
    kept: list[Watch] = []
    latest = max(event.time, state.last_event_at or event.time)
    horizon = latest - policy.allowed_lateness
    for watch in state.watches:
        if watch.conversion == event.type and watch.decided_at <= event.time <= watch.until:
            converted.append(
                Conversion(
                    customer_id=state.customer_id,
                    action_id=watch.action_id,
                    action=watch.action,
                    outcome=Outcome.HELD_OUT if watch.held_out else Outcome.SENT,
                    conversion=watch.conversion,
                    event_id=event.event_id,
                    at=event.time,
                    decided_at=watch.decided_at,
                    first=not watch.converted,
                )
            )
        elif watch.until >= horizon:
            kept.append(watch)
    if converted:
        done = {c.action_id for c in converted}
        kept = [w._replace(converted=True) if w.action_id in done else w for w in kept]
    state.watches = tuple(kept)
    return converted


def watching_until(state: CustomerState) -> int | None:
    """Until when some decision still waits for a conversion."""
    return max((watch.until for watch in state.watches), default=None)


def merge_watches(survivor: CustomerState, retired: CustomerState) -> None:
    """Decisions of either profile go on waiting, each once (by action id and type)."""
    if not retired.watches:
        return
    watches = {(w.action_id, w.conversion): w for w in survivor.watches}
    for watch in retired.watches:
        watches.setdefault((watch.action_id, watch.conversion), watch)
    ordered = sorted(watches.values(), key=lambda w: (w.decided_at, w.action_id, w.conversion))
    survivor.watches = tuple(ordered[-MAX_WATCHES:])
