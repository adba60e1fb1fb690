"""Cooldowns: the same action is not repeated to the same customer (and group) within
its ``cooldown`` of the last send."""

from __future__ import annotations

from operators.model.bounded import keep_latest_groups, make_room
from operators.model.state import CustomerState, Group
from operators.policy.compiled import ActionSpec, Policy


def start_cooldown(state: CustomerState, action: ActionSpec, group: Group, now: int) -> None:
    """``action`` was sent for ``group`` at ``now``; cooldowns that have run out are dropped."""
    key = (action.name, group)
    if key not in state.cooldowns:
        make_room(
            state.cooldowns,
            action.name,
            _sent_at,
            lambda sent: sent + action.cooldown <= now,
        )
    state.cooldowns[key] = now


def cooling_until(state: CustomerState, action: ActionSpec, group: Group, now: int) -> int | None:
    """When ``action``'s cooldown for ``group`` ends, if it is still running at ``now``."""
    last = state.cooldowns.get((action.name, group))
    if last is not None and now - last < action.cooldown:
        return last + action.cooldown
    return None


def cooling_down_until(policy: Policy, state: CustomerState) -> int | None:
    """When the last running cooldown ends (or ended), if there are any."""
    until: int | None = None
    for (name, _), sent in state.cooldowns.items():
        action = policy.actions.get(name)
        if action is not None:
            end = sent + action.cooldown
            until = end if until is None else max(until, end)
    return until


def merge_cooldowns(survivor: CustomerState, retired: CustomerState) -> None:
    """The later send starts the cooldown."""
    for key, sent in retired.cooldowns.items():
        survivor.cooldowns[key] = max(sent, survivor.cooldowns.get(key, sent))
    keep_latest_groups(survivor.cooldowns, _sent_at)


def _sent_at(sent: int) -> int:
    return sent
