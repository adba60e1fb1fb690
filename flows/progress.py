"""How far the input has got: what the identity step tells every process.

The identity step sees every input partition (each sends its progress with its events,
:class:`operators.identity.alignment.Progress`), so it alone can tell how far the whole cluster's
input has got. It says so in a :class:`FrontierMark`: in replay straight into this
process's :class:`InputFrontier`; in Kafka mode through the internal topic
``<prefix>frontier``, which a reader in every process applies
(:class:`flows.kafka.connectors.FrontierReader`).

- :attr:`InputFrontier.settled` holds wall-clock timers back: a timer fires only once no
  partition of the cluster is still behind its due time. If the identity step's owner is
  down, no mark comes and timers wait; nothing fires early.
- :attr:`InputFrontier.drained` ends the input (replay, ``--stop-at-end``): every partition
  has ended, every event has been resolved and every merge's context has been delivered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from operators.identity.alignment import NEVER


@dataclass(frozen=True, slots=True)
class FrontierMark:
    """What the identity step says about the whole input, as of ``published`` (wall ms)."""

    settled: int
    """Every event before this (event time, ms) has been resolved."""
    drained: bool
    end_at: int | None
    """Once drained: the event time the end of input fires timers up to."""
    published: int
    run: str
    """Which start of the identity step said it."""

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "settled": self.settled,
                "drained": self.drained,
                "end_at": self.end_at,
                "published": self.published,
                "run": self.run,
            }
        )

    @staticmethod
    def decode(value: bytes) -> FrontierMark:
        record: dict[str, Any] = orjson.loads(value)
        return FrontierMark(
            int(record["settled"]),
            bool(record["drained"]),
            None if record["end_at"] is None else int(record["end_at"]),
            int(record["published"]),
            str(record["run"]),
        )


PACE_SAMPLE_MS = 500
"""How often (wall clock) :attr:`InputFrontier.pace` is measured again."""


class InputFrontier:
    """The latest :class:`FrontierMark` this process has heard; worker threads share it."""

    def __init__(self) -> None:
        self.settled = NEVER
        self.drained = False
        self.end_at: int | None = None
        self.interrupted = False
        """Set when input ended because the flow was told to stop, not because it was read
        to its end: what is due then waits for the next start."""
        self.pace = 0.0
        """How fast :attr:`settled` has moved lately: event-time ms per wall-clock ms (0:
        not known yet). Only a guess at when to look again (replay's timers)."""
        self._sample: tuple[float, int] | None = None

    def apply(self, mark: FrontierMark) -> None:
        if mark.settled > self.settled > NEVER:
            wall = time.monotonic() * 1000
            if self._sample is None:
                self._sample = (wall, self.settled)
            elif wall - self._sample[0] >= PACE_SAMPLE_MS:
                since, was = self._sample
                self.pace = (mark.settled - was) / (wall - since)
                self._sample = (wall, mark.settled)
        self.settled = mark.settled
        if mark.drained:
            # Replay's source knows where its input ends (``--until``); Kafka mode's identity
            # step says when the cluster drained.
            if mark.end_at is not None:
                self.end_at = mark.end_at
            self.drained = True

    def safe_until(self, now: int) -> int:
        """The latest due time that may fire now: the wall clock, held back while any
        partition of the cluster is still behind it."""
        return min(now, self.settled - 1)
