"""How far the input has got: the bookkeeping the sources keep and the steps consult.

- :class:`InputFrontier` (Kafka mode): how far each input partition of this process has
  read in event time, which holds wall-clock timers back while a backlog is read.
- :class:`EndOfInput` (replay, ``--stop-at-end``): where event time stands when the input
  has ended, so what is due by then fires.
- :class:`LoopCounters`: how far merges have got, so an input that ends can tell whether
  transfers of merged contexts are still on their way.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(slots=True)
class EndOfInput:
    """Where event time stands when the input ends; set by the source."""

    at: int | None = None


class InputFrontier:
    """How far this process's input partitions have read, in event time (Kafka mode).

    A timer may fire on the wall clock only once no partition is still reading
    a backlog from before its due time: otherwise, catching up after an outage,
    a timer would fire before the unread event that cancels it, and Kafka mode
    would decide differently from replay.
    """

    def __init__(self) -> None:
        self._parts: dict[str, tuple[int | None, bool]] = {}
        self.interrupted = False
        """Set when input ended because the flow was told to stop, not because it was read
        to its end: what is due then waits for the next start."""

    def update(self, part: str, clock: int | None, caught_up: bool) -> None:
        """Partition ``part`` has read up to event time ``clock``; ``caught_up`` when it
        has nothing more to read right now."""
        self._parts[part] = (clock, caught_up)

    def safe_until(self, now: int) -> int:
        """The latest due time that may fire now: the wall clock, held back by any
        partition still behind it."""
        bound = now
        for clock, caught_up in self._parts.values():
            if not caught_up:
                bound = min(bound, clock if clock is not None else -1)
        return bound


@dataclass
class LoopCounters:
    """How far merges have got, so an input that ends can tell whether transfers are due.
    Worker threads of one process share it."""

    inputs_open: int = 0
    events_read: int = 0
    events_resolved: int = 0
    merges_issued: int = 0
    transfers_delivered: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, counter: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + n)

    def drained(self) -> bool:
        """Every input has ended and every merge it caused has delivered its transfer."""
        with self._lock:
            inputs_closed = self.inputs_open == 0
        return inputs_closed and self.settled()

    def settled(self) -> bool:
        """Every event read has been resolved and every merge issued has its transfer in."""
        with self._lock:
            return (
                self.events_resolved >= self.events_read
                and self.transfers_delivered >= self.merges_issued
            )
