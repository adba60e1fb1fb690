"""Bounded tables: per customer, at most :data:`MAX_GROUPS` groups of any one name.

Windows, moments, cooldowns and suppressions are tables keyed by (name, group);
a customer who views a thousand products keeps only the most recent groups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from operators.model.state import Group

MAX_GROUPS = 32
"""Groups (products, say) kept per customer for each signal's windows, each moment kind,
each action's cooldowns and each suppression: a new group pushes out the least recent."""

K = TypeVar("K", bound=tuple[str, Group])
V = TypeVar("V")


def keep_latest(table: dict[K, V], name: str, recency: Callable[[V], int], keep: int) -> None:
    """Leave at most ``keep`` groups of ``name`` in ``table``: the most recent by
    ``recency(value)`` (ties: by group)."""
    keys = _keys_named(table, name)
    if len(keys) > keep:

        def order(key: K) -> tuple[int, str]:
            _, group = key
            return (recency(table[key]), str(group))

        keys.sort(key=order)
        for key in keys[: len(keys) - keep]:
            del table[key]


def keep_latest_groups(table: dict[K, V], recency: Callable[[V], int]) -> None:
    """At most :data:`MAX_GROUPS` groups of every name: the most recent by ``recency``."""
    for name in {name for name, _ in table}:
        keep_latest(table, name, recency, MAX_GROUPS)


def make_room(
    table: dict[K, V],
    name: str,
    recency: Callable[[V], int],
    expired: Callable[[V], bool] | None = None,
) -> None:
    """Before a new group of ``name`` joins ``table``: drop its groups that have
    ``expired``, then, if :data:`MAX_GROUPS` are left, the least recent."""
    if expired is not None:
        for key in [key for key in _keys_named(table, name) if expired(table[key])]:
            del table[key]
    keep_latest(table, name, recency, MAX_GROUPS - 1)


def _keys_named(table: dict[K, V], name: str) -> list[K]:
    return [key for key in table if key[0] == name]
