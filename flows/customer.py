"""The per-customer step: adapts Bytewax's ``StatefulBatchLogic`` to the core's journey functions.

Time is event time in both modes. An event first fires what fell due before
it, then is handled. What falls due after a customer's last event fires at
the end of a replay (as of the replay's end time), or, in Kafka mode, when the
wall clock passes its due time (still decided as of the due time).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bytewax.operators import StatefulBatchLogic

from flows.metrics import CUSTOMERS, CUSTOMERS_EVICTED
from operators.context import CustomerState
from operators.decide import Output
from operators.merging import Adopt, Journey, Retire, Transfer
from operators.model import Decision, Event
from operators.policy import Policy
from operators.records import Emitted


@dataclass(slots=True)
class EndOfInput:
    """Where event time stands when a replay's input ends; set by the replay source."""

    at: int | None = None


GATED_RETRY_MS = 2_000


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


@dataclass(frozen=True, slots=True)
class JourneyConfig:
    """What every customer's logic shares: the policy and how its clock runs."""

    policy: Policy
    wall_clock_timers: bool
    """Kafka mode: pending timers fire when the wall clock passes them."""
    end_of_input: EndOfInput = field(default_factory=EndOfInput)
    """Replay: at the end of input, timers due by this time fire."""
    frontier: InputFrontier = field(default_factory=InputFrontier)
    """Kafka mode: how far the input has been read, which holds timers back while catching up."""


JourneyInput = tuple[str, Event | Adopt | Retire | Transfer]
"""(canonical customer id, item): the step's key travels with each item so a new
customer's logic knows who it is."""
JourneyOutput = Emitted | Transfer


class CustomerLogic(StatefulBatchLogic[JourneyInput, JourneyOutput, bytes]):
    """One customer's context and decisions inside the dataflow."""

    def __init__(self, config: JourneyConfig, resume: bytes | None) -> None:
        self._config = config
        self._journey: Journey | None = pickle.loads(resume) if resume is not None else None
        CUSTOMERS.inc()

    def on_batch(self, values: list[JourneyInput]) -> tuple[Iterable[JourneyOutput], bool]:
        policy = self._config.policy
        journey = self._journey
        if journey is None:
            journey = self._journey = Journey(CustomerState(values[0][0]))
        out: list[JourneyOutput] = []
        for _, item in values:
            if isinstance(item, Event):
                line = item.origin.line if item.origin.line is not None else 0
                outputs = journey.on_event(policy, item)
                out.extend(
                    Emitted(o, (0, line, "", n), item.received_at) for n, o in enumerate(outputs)
                )
            elif isinstance(item, (Adopt, Transfer)):
                held = [e.origin.line or 0 for e in journey.held]
                if isinstance(item, Adopt):
                    outputs, handed = journey.on_adopt(policy, item)
                    held.append(item.line)
                else:
                    outputs, handed = journey.on_transfer(policy, item)
                line = max(held, default=0)
                out.extend(Emitted(o, (0, line, "", n), 0.0) for n, o in enumerate(outputs))
                if handed is not None:
                    out.append(handed)
            else:
                outputs, handed = journey.on_retire(policy, item)
                out.extend(Emitted(o, (0, item.line, "", n), 0.0) for n, o in enumerate(outputs))
                if handed is not None:
                    out.append(handed)
        if journey.evicted:
            CUSTOMERS_EVICTED.inc(journey.evicted)
            journey.evicted = 0
        if journey.retired:
            CUSTOMERS.dec()
            return out, StatefulBatchLogic.DISCARD
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[JourneyOutput], bool]:
        if self._journey is None or not self._config.wall_clock_timers:
            return (), StatefulBatchLogic.RETAIN
        until = self._config.frontier.safe_until(int(time.time() * 1000))
        return self._fired(
            self._journey.fire_due(self._config.policy, until, inclusive=True), until
        )

    def on_eof(self) -> tuple[Iterable[JourneyOutput], bool]:
        if self._journey is None:
            return (), StatefulBatchLogic.RETAIN
        if self._config.frontier.interrupted:
            return (), StatefulBatchLogic.RETAIN
        if self._config.wall_clock_timers:
            end = self._config.frontier.safe_until(int(time.time() * 1000))
        else:
            if self._config.end_of_input.at is None:
                return (), StatefulBatchLogic.RETAIN
            end = self._config.end_of_input.at
        return self._fired(self._journey.fire_due(self._config.policy, end, inclusive=True), end)

    def notify_at(self) -> datetime | None:
        if self._journey is None or not self._config.wall_clock_timers:
            return None
        if self._journey.awaiting:
            return None
        due = self._journey.state.next_due()
        if due is None:
            due = self._journey.next_eviction(self._config.policy)
        if due is None:
            return None
        now = int(time.time() * 1000)
        if due <= now and due > self._config.frontier.safe_until(now):
            due = now + GATED_RETRY_MS
        return datetime.fromtimestamp(due / 1000, UTC)

    def snapshot(self) -> bytes:
        return pickle.dumps(self._journey, protocol=pickle.HIGHEST_PROTOCOL)

    def _fired(self, outputs: list[Output], now: int) -> tuple[Iterable[JourneyOutput], bool]:
        """Emit what the timers decided; then forget the customer if, as of ``now``, they
        have been idle long enough with nothing pending."""
        assert self._journey is not None
        customer = self._journey.state.customer_id
        emitted = [
            Emitted(output, (1, _at(output), customer, n), 0.0) for n, output in enumerate(outputs)
        ]
        if self._journey.evictable(self._config.policy, now):
            CUSTOMERS.dec()
            CUSTOMERS_EVICTED.inc()
            return emitted, StatefulBatchLogic.DISCARD
        return emitted, StatefulBatchLogic.RETAIN


def _at(output: Output) -> int:
    return output.at if isinstance(output, Decision) else output.decided_at
