"""Suppressions: spells during which some actions are held back for a customer.

A complaint holds marketing back for 14 days, a purchase nudges about what was
bought, a sensitive circumstance marketing and retention for 90. A spell holds
from its start (not before: an older decision arriving late is not held back by
it) until its end; another start while it holds extends it.
"""

from __future__ import annotations

from operators.context import CustomerState, Group, lookup, make_room
from operators.model import Event
from operators.policy import ActionSpec, Policy, SuppressionSpec


def start_suppressions(
    state: CustomerState, suppressions: tuple[SuppressionSpec, ...], at: int, event: Event | None
) -> None:
    """Start (or extend) ``suppressions`` at ``at``. With ``same``, one holds only for the
    starting event's value at that path; without the value, it holds for every group."""
    for spec in suppressions:
        value: Group = None
        if spec.same is not None and event is not None:
            found = lookup(spec.same, event)
            if found is not None and not isinstance(found, (dict, list)):
                value = str(found)
        key = (spec.name, value)
        held = state.suppressions.get(key)
        if held is None:
            make_room(state.suppressions, spec.name, lambda spell: spell[1], lambda s: s[1] <= at)
            state.suppressions[key] = (at, at + spec.duration)
        else:
            state.suppressions[key] = joined(held, (at, at + spec.duration))


def joined(one: tuple[int, int], other: tuple[int, int]) -> tuple[int, int]:
    """Two spells of a suppression as one: their union if they overlap, else the later."""
    first, second = sorted((one, other))
    if second[0] <= first[1]:
        return (first[0], max(first[1], second[1]))
    return second


def suppressed_by(
    policy: Policy, state: CustomerState, action: ActionSpec, channel: str, group: Group, now: int
) -> tuple[str, int] | None:
    """The suppression holding ``action`` back on ``channel`` at ``now`` (name, until), if any;
    of several, the one that holds longest. A suppression holds from the moment it
    started, not before: an older decision that arrives late is not held back by it."""
    found: tuple[str, int] | None = None
    for (name, value), (start, until) in state.suppressions.items():
        if not start <= now < until or (found is not None and until <= found[1]):
            continue
        spec = policy.suppressions.get(name)
        if spec is None or not spec.selects(action, channel):
            continue
        if value is not None and group is not None and value != group:
            continue
        found = (name, until)
    return found
