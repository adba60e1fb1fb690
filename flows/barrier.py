"""The journey barrier: how far in event time every worker's journey step has got.

The identity step is the one sender into the journey step, and Bytewax delivers one
sender's items to each worker in the order sent; within an activation the journey step
handles its keys in sorted order. So a :class:`Tick` the identity step sends to a key that
lives on worker ``w`` (:func:`flows.routing.key_for_worker`) and sorts after every customer
(:data:`flows.routing.LAST`) is handled after every event the identity step released
before it for ``w``'s customers.

What the tick finds on its worker says what an :class:`Ack` may promise: every event
before ``at`` handled, every timer due before ``at`` fired, nothing before ``at`` held back
by a merge. Customers' logics keep their worker's part of the run's :class:`Owed` up to date
(a dict per worker thread: Bytewax runs a worker per thread and gives no other handle on it).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from flows.routing import FIRST, LAST, key_for_worker

TICK_PREFIX = LAST + "tick-"


@dataclass(frozen=True, slots=True)
class Tick:
    """From the identity step to worker ``worker``: every event before ``at`` (event time,
    ms) has been sent."""

    at: int
    worker: int
    past_end: bool = False
    """The input has ended before ``at``: nothing comes at ``at - 1`` or after (the capacity
    owner must hear it, to answer what was decided at the very end)."""


@dataclass(frozen=True, slots=True)
class Ack:
    """Worker ``worker`` has handled every event and fired every timer before ``at``."""

    worker: int
    at: int
    past_end: bool = False
    """Answers a tick past the end of input: the learner takes it as ``at - 1`` (a later run
    may give more input at the end's instant)."""


@dataclass(frozen=True, slots=True)
class Final:
    """From the identity step to every worker: the input has ended, the last event released
    was at ``at``; what is decided after it uses the population model's version ``at``
    did, whatever the learner builds later."""

    at: int


def tick_keys(workers: int) -> list[str]:
    """The key each worker's tick goes to, worker by worker."""
    return [key_for_worker(w, workers, TICK_PREFIX) for w in range(workers)]


def model_keys(workers: int) -> list[str]:
    """The key each worker's population model's versions go to, worker by worker: one that
    sorts before every customer, so a version is kept before any event that came with it
    is handled."""
    return [key_for_worker(w, workers, FIRST + "models-") for w in range(workers)]


class Owed:
    """What each worker's customers still owe, in one run of the flow (its
    :class:`~flows.journey.JourneyConfig` holds it: a registry that outlived a run would
    answer the next run's ticks with what the last one's customers owed)."""

    def __init__(self) -> None:
        self._by_worker: dict[int, dict[int, int]] = {}
        """Worker thread -> customer's logic (its id: a resumed customer is known before
        their id is read) -> the earliest event time they still owe: their next timer, or
        the first event a merge holds back."""

    def note(self, logic: object, at: int | None) -> None:
        """Note what the customer ``logic`` keeps (on this worker) still owes, from ``at``
        (None: nothing)."""
        mine = self._by_worker.setdefault(threading.get_ident(), {})
        if at is None:
            mine.pop(id(logic), None)
        else:
            mine[id(logic)] = at

    def acked(self, tick: Tick) -> Ack:
        """What this worker can promise as the tick reaches it."""
        mine = self._by_worker.get(threading.get_ident(), {})
        at = min(tick.at, min(mine.values(), default=tick.at))
        return Ack(tick.worker, at, tick.past_end)
