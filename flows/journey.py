"""The per-customer step: adapts Bytewax's ``StatefulBatchLogic`` to :class:`Journey`.

Time is event time in both modes. An event first fires what fell due before
it, then is handled. What falls due after a customer's last event fires at
the end of a replay (as of the replay's end time), or, in Kafka mode, when the
wall clock passes its due time (still decided as of the due time).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bytewax.operators import StatefulBatchLogic

from flows.metrics import CUSTOMERS, CUSTOMERS_EVICTED
from flows.progress import InputFrontier
from operators.decide import Output
from operators.handover import Adopt, Retire, Transfer
from operators.journey import Journey
from operators.model import Decision, Event
from operators.policy import Policy
from operators.records import Emitted, Order
from operators.resolution import ForCustomer
from operators.state import CustomerState


def wall_clock_ms() -> int:
    """Now on the wall clock, in ms: when Kafka mode's timers fire (never what they decide)."""
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class JourneyConfig:
    """What every customer's logic shares: the policy and how its clock runs."""

    policy: Policy
    wall_clock_timers: bool
    """Kafka mode: pending timers fire when the wall clock passes them."""
    frontier: InputFrontier = field(default_factory=InputFrontier)
    """How far the whole input has been resolved, which holds wall-clock timers back while
    any partition catches up; and, at the end of input, the time timers fire up to."""
    clock: Callable[[], int] = wall_clock_ms
    """The wall clock (ms), for when timers fire in Kafka mode."""


JourneyOutput = Emitted | Transfer


class JourneyLogic(StatefulBatchLogic[ForCustomer, JourneyOutput, bytes]):
    """One customer's journey inside the dataflow."""

    def __init__(self, config: JourneyConfig, resume: bytes | None) -> None:
        self._config = config
        self._journey: Journey | None = _resumed(resume) if resume is not None else None
        CUSTOMERS.inc()

    def on_batch(self, values: list[ForCustomer]) -> tuple[Iterable[JourneyOutput], bool]:
        policy = self._config.policy
        journey = self._journey
        if journey is None:
            journey = self._journey = Journey(CustomerState(values[0].customer_id))
        out: list[JourneyOutput] = []
        for _, item in values:
            if isinstance(item, Event):
                outputs = journey.on_event(policy, item)
                _emit(out, outputs, item.origin.line or 0, item.received_at)
                continue
            if isinstance(item, Retire):
                outputs, handed = journey.on_retire(policy, item)
            elif isinstance(item, Adopt):
                outputs, handed = journey.on_adopt(policy, item)
            else:
                outputs, handed = journey.on_transfer(policy, item)
            lines, journey.released_lines = journey.released_lines, ()
            out.extend(
                Emitted(o, Order.of_line(line, n), 0.0)
                for n, (o, line) in enumerate(zip(outputs, lines, strict=True))
            )
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
        until = self._config.frontier.safe_until(self._config.clock())
        return self._fired(
            self._journey.fire_due(self._config.policy, until, inclusive=True), until
        )

    def on_eof(self) -> tuple[Iterable[JourneyOutput], bool]:
        frontier = self._config.frontier
        if self._journey is None or frontier.interrupted or frontier.end_at is None:
            return (), StatefulBatchLogic.RETAIN
        end = frontier.end_at
        return self._fired(self._journey.fire_due(self._config.policy, end, inclusive=True), end)

    def notify_at(self) -> datetime | None:
        if self._journey is None or not self._config.wall_clock_timers:
            return None
        now = self._config.clock()
        wake = self._journey.wake_at(
            self._config.policy, now, self._config.frontier.safe_until(now)
        )
        return datetime.fromtimestamp(wake / 1000, UTC) if wake is not None else None

    def snapshot(self) -> bytes:
        return pickle.dumps(self._journey, protocol=pickle.HIGHEST_PROTOCOL)

    def _fired(self, outputs: list[Output], now: int) -> tuple[Iterable[JourneyOutput], bool]:
        """Emit what the timers decided; then forget the customer if, as of ``now``, they
        have been idle long enough with nothing pending."""
        assert self._journey is not None
        customer = self._journey.state.customer_id
        emitted = [
            Emitted(output, Order.of_timer(_at(output), customer, n), 0.0)
            for n, output in enumerate(outputs)
        ]
        if self._journey.evictable(self._config.policy, now):
            CUSTOMERS.dec()
            CUSTOMERS_EVICTED.inc()
            return emitted, StatefulBatchLogic.DISCARD
        return emitted, StatefulBatchLogic.RETAIN


class IncompatibleSnapshot(RuntimeError):
    """A recovery snapshot written by a version whose customer state had another shape."""


def _resumed(snapshot: bytes) -> Journey:
    try:
        journey = pickle.loads(snapshot)
    except (AttributeError, ImportError, TypeError, ValueError) as err:
        raise IncompatibleSnapshot(
            f"the recovery snapshot holds customer state this version cannot read ({err}): "
            "it was written by another version; see the README's known limits on upgrading"
        ) from None
    if not isinstance(journey, Journey):
        raise IncompatibleSnapshot("the recovery snapshot holds no customer journey")
    return journey


def _emit(out: list[JourneyOutput], outputs: list[Output], line: int, received_at: float) -> None:
    out.extend(Emitted(o, Order.of_line(line, n), received_at) for n, o in enumerate(outputs))


def _at(output: Output) -> int:
    return output.at if isinstance(output, Decision) else output.decided_at
