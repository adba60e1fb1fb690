"""The handover of a merge, which crosses customers: how a retired profile's context
reaches its survivor.

When the identity graph merges profile A into B, A's context has to reach B before
B decides anything more. The dataflow cannot send it from A's step to B's directly,
so it travels as a :class:`Transfer`: A is told to :class:`Retire` and hands over its
context; B is told to :class:`Adopt` A and holds its own events back until A's
context has arrived and been folded in (:func:`operators.identity.merging.merge_states`).
Merge ids make this safe under at-least-once delivery: a transfer that comes twice is
folded in once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def merge_id(sequence: int, retired: str, survivor: str) -> str:
    """The id of the merge of ``retired`` into ``survivor`` at the identity graph's
    operation ``sequence``: the same after a replay from a snapshot."""
    return f"{sequence}:{retired}>{survivor}"


@dataclass(frozen=True, slots=True)
class Retire:
    """Tell a profile it was merged into ``into``: hand over the context and stop.
    ``at`` is the input's event time when the merge happened."""

    merge_id: str
    into: str
    at: int = 0
    line: int = 0
    """The input line of the event that caused the merge (replay's output order)."""


@dataclass(frozen=True, slots=True)
class Adopt:
    """Tell a profile that ``retired`` was merged into it: wait for its context.
    ``at`` is the input's event time when the merge happened."""

    merge_id: str
    retired: str
    at: int = 0
    line: int = 0
    """The input line of the event that caused the merge (replay's output order)."""


@dataclass(frozen=True, slots=True)
class Forget:
    """Tell a profile the graph forgot it (an erasure, or its retention ran out): drop its
    whole context, timers and deferrals with it, after firing what fell due before ``at``
    (as Kafka mode's wall clock would have). Nothing is decided for it again."""

    at: int
    line: int = 0
    """The input line of the event that caused it (replay's output order)."""


@dataclass(frozen=True, slots=True)
class Transfer:
    """A retired profile's context on its way to the survivor."""

    merge_id: str
    retired: str
    survivor: str
    state: dict[str, Any] | None
    """The context as a record (:mod:`operators.model.state_records`); None when it was lost on the
    way (too large for the brokers to take): the merge completes with nothing folded in."""
