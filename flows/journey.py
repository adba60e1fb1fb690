"""The per-customer step: adapts Bytewax's ``StatefulBatchLogic`` to :class:`Journey`.

Time is event time in both modes. An event first fires what fell due before
it, then is handled. What falls due after a customer's last event fires at
the end of a replay (as of the replay's end time), or, in Kafka mode, when the
wall clock passes its due time (still decided as of the due time).
"""

from __future__ import annotations

import pickle
import struct
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bytewax.operators import StatefulBatchLogic

from flows.barrier import Ack, Final, Owed, Tick
from flows.metrics import (
    CUSTOMERS,
    CUSTOMERS_EVICTED,
    CUSTOMERS_PACKED,
    CUSTOMERS_REVIVED,
    DEFERRED_DECISIONS,
    LEARNING_MODEL_VERSION,
    SIGNAL_TIMERS,
)
from flows.progress import InputFrontier
from operators.context.timezones import timezone_of
from operators.decisions.capacity import Answer, Request
from operators.decisions.decide import Asked, Output
from operators.identity.alignment import FOREVER, NEVER
from operators.identity.resolution import ForCustomer
from operators.journey import BY_TIMER, Journey, wake_time
from operators.learning.population import Complete
from operators.model.encoding import Emitted, Order
from operators.model.handover import Adopt, Forget, Retire, Transfer
from operators.model.records import Action, Event
from operators.model.state import CustomerState
from operators.policy.compiled import Policy


def wall_clock_ms() -> int:
    """Now on the wall clock, in ms: when Kafka mode's timers fire (never what they decide)."""
    return int(time.time() * 1000)


FRONTIER_POLL_MS = 100
"""Replay with the barrier: how often a customer with a timer the input frontier has not
passed yet looks again, at least (see :data:`FRONTIER_POLL_MAX_MS`)."""
FRONTIER_POLL_MAX_MS = 1000
"""... and at most: one whose timer the frontier, at its recent pace, will take longer to
reach looks again halfway there, up to this."""

PACK_IDLE_MS = 10_000
"""How long a customer stays live after their last event, merge or timer (wall clock)."""


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
    pack_idle_ms: int | None = PACK_IDLE_MS
    """Kafka mode: a customer untouched this long on the wall clock is packed (None: never)."""
    left_pending: Counter[tuple[str, str]] | None = None
    """Replay: what is still pending once timers have fired up to the end of event time, as
    (``timer``, signal), (``decision``, moment) -> customers and (``trial``, action) -> trials
    whose window had not closed."""
    zones: ZoneChanges | None = None
    """Replay: each customer's time zone when they were decided about, for ``explain`` and
    ``report``, which show local times."""
    barrier: bool = False
    """Each customer tells their worker what they still owe and ticks are answered (see
    :mod:`flows.barrier`); in replay, timers then fire as the input frontier passes them."""
    acks: list[Ack] | None = None
    """Where the answers to ticks go (replay)."""
    end_by_clock: bool = False
    """Reading Kafka to its end: the end of input fires up to the wall clock."""
    owed: Owed = field(default_factory=Owed)
    """With the barrier: what each worker's customers still owe, for the answers to ticks."""


JourneyOutput = Emitted | Transfer | Ack | Request
ZoneChanges = dict[str, list[tuple[int, str]]]
"""Customer -> (from when, time zone), in time order: a new entry only when the zone in
which they were decided about changed."""


PACKED_MAGIC = b"cj2"
_PACKED_HEAD = struct.Struct("<3sqq?HH")
"""A packed customer's head: :data:`PACKED_MAGIC`, their next timer and when they become
evictable (-1: none), whether a merge holds their input back, how many signal timers and
deferred decisions they have pending (one per signal, and per moment and group: the
policy's limits keep them far below 65,535). Then their pickled :class:`Journey`,
zlib-compressed.
The head is what ``notify_at`` and the timers-pending gauge need, without reviving them; one
``bytes`` object, which the garbage collector does not track."""
OLD_PACKED_MAGIC = b"cj1"
_OLD_PACKED_HEAD = struct.Struct("<3sqq?")
"""The head 0.4.0 and 0.5.0 packed customers with: no counts of what is pending."""


def pack(journey: Journey, policy: Policy) -> bytes:
    """A customer as one compact ``bytes``: see :data:`_PACKED_HEAD`."""
    body = zlib.compress(pickle.dumps(journey, protocol=pickle.HIGHEST_PROTOCOL), 1)
    return _head(journey, policy) + body


def _head(journey: Journey, policy: Policy) -> bytes:
    state = journey.state
    due = state.next_due()
    eviction = journey.next_eviction(policy)
    return _PACKED_HEAD.pack(
        PACKED_MAGIC,
        -1 if due is None else due,
        -1 if eviction is None else eviction,
        bool(journey.queue),
        len(state.pending),
        len(state.deferred),
    )


def _recounted(packed: bytes, policy: Policy) -> bytes:
    """A customer packed with the old head (:data:`_OLD_PACKED_HEAD`), given the new one: read
    once, at resume, to count what they have pending; the compressed journey is kept as is."""
    body = packed[_OLD_PACKED_HEAD.size :]
    return _head(_unpacked(body), policy) + body


def unpack(packed: bytes) -> Journey:
    """The customer :func:`pack` packed."""
    return _unpacked(packed[_PACKED_HEAD.size :])


def _unpacked(body: bytes) -> Journey:
    try:
        snapshot = zlib.decompress(body)
    except zlib.error as err:
        raise IncompatibleSnapshot(f"a packed customer cannot be read ({err})") from None
    return _resumed(snapshot)


def _packed_due(packed: bytes, until: int) -> bool:
    """Whether a packed customer has a timer due by ``until``, or has become evictable."""
    _, due, eviction, held, _, _ = _PACKED_HEAD.unpack_from(packed)
    return not held and (0 <= due <= until or 0 <= eviction <= until)


def _packed_wake(packed: bytes, now: int, fire_until: int) -> int | None:
    _, due, eviction, held, _, _ = _PACKED_HEAD.unpack_from(packed)
    if held:
        return None
    return wake_time(None if due < 0 else due, None if eviction < 0 else eviction, now, fire_until)


_resumed_one = False
"""Whether this process has resumed a customer from a snapshot yet."""


class JourneyLogic(StatefulBatchLogic[ForCustomer, JourneyOutput, bytes]):
    """One customer's journey inside the dataflow.

    In Kafka mode a customer untouched for :data:`PACK_IDLE_MS` of wall-clock time is
    packed (:func:`pack`: about a sixth of the memory of the live objects) and revived by
    their next event, merge or timer: most customers are idle most of the time, and one
    in the middle of a session stays live, at no cost per event.

    The timers-pending gauge moves by what each callback changed in this customer's timers
    (two lengths read before and after), so it never scans the customers.
    """

    __slots__ = ("_asked", "_config", "_journey", "_packed", "_touched")

    def __init__(self, config: JourneyConfig, resume: bytes | None) -> None:
        global _resumed_one
        self._config = config
        self._journey: Journey | None = None
        self._packed: bytes | None = None
        self._touched = config.clock() if config.wall_clock_timers else 0
        """When (wall clock, ms) this customer was last live for an event, merge or timer."""
        self._asked: Asked | None = None
        """The last request for capacity sent (one resumed from a snapshot was sent before
        it: the capacity owner's snapshot has it)."""
        if resume is not None and resume.startswith(OLD_PACKED_MAGIC):
            resume = _recounted(resume, config.policy)
        if resume is None:
            pass
        elif not resume.startswith(PACKED_MAGIC):  # written before customers were packed
            self._journey = _resumed(resume)
            _count_timers(0, 0, self._journey)
        elif _resumed_one:
            self._packed = resume
            CUSTOMERS_PACKED.inc()
            _, _, _, _, signals, decisions = _PACKED_HEAD.unpack_from(resume)
            SIGNAL_TIMERS.inc(signals)
            DEFERRED_DECISIONS.inc(decisions)
        else:
            # The first customer resumed is revived at once: a snapshot this version cannot
            # read stops the flow as it starts, not when it first touches a customer.
            self._journey = unpack(resume)
            _resumed_one = True
            _count_timers(0, 0, self._journey)
        if self._journey is not None:
            self._asked = self._journey.asking
        if resume is not None:
            CUSTOMERS.inc()
            if config.barrier:
                journey = self._journey
                config.owed.note(self, _owed(config, journey) if journey else _packed_owed(resume))

    def on_batch(self, values: list[ForCustomer]) -> tuple[Iterable[JourneyOutput], bool]:
        policy = self._config.policy
        journey = self._live()
        if self._config.wall_clock_timers:
            self._touched = self._config.clock()
        if journey is None:
            if isinstance(values[0].item, (Tick, Complete, Final)):
                return self._ticked(values), StatefulBatchLogic.DISCARD
            # an answer for a customer no longer here is a repeat (after a restart)
            values = [v for v in values if not isinstance(v.item, Answer)]
            if not values:
                return [], StatefulBatchLogic.DISCARD
            journey = self._journey = Journey(CustomerState(values[0].customer_id))
            CUSTOMERS.inc()
        state = journey.state
        signals, decisions = len(state.pending), len(state.deferred)
        out: list[JourneyOutput] = []
        for _, item in values:
            if isinstance(item, Event):
                outputs = journey.on_event(policy, item)
                line = item.origin.line or 0
                customer = journey.state.customer_id if self._config.barrier else ""
                out.extend(
                    Emitted(o, _order(self._config, o, line, customer, n), item.received_at)
                    for n, o in enumerate(outputs)
                )
                self._ask(journey, out)
                continue
            if isinstance(item, Forget):
                outputs, handed = journey.on_forget(policy, item), None
            elif isinstance(item, Answer):
                outputs, handed = journey.on_answer(policy, item)
            elif isinstance(item, Retire):
                outputs, handed = journey.on_retire(policy, item)
            elif isinstance(item, Adopt):
                outputs, handed = journey.on_adopt(policy, item)
            else:
                outputs, handed = journey.on_transfer(policy, item)
            lines, journey.released_lines = journey.released_lines, ()
            customer = journey.state.customer_id
            out.extend(
                Emitted(o, _order(self._config, o, line, customer, n), 0.0)
                for n, (o, line) in enumerate(zip(outputs, lines, strict=True))
            )
            if handed is not None:
                out.append(handed)
            self._ask(journey, out)
            if journey.retired and isinstance(item, Forget):
                break  # forgotten: nothing after it is this profile's any more
        if self._config.barrier and not self._config.wall_clock_timers and not journey.retired:
            # What the frontier has passed fires now, not at the next look: an answer may
            # have let timers go, and the barrier's next tick should find them fired.
            out.extend(self._fire_passed(journey) or ())
        if self._config.zones is not None and out:
            _note_zone(self._config, journey, out)
        if journey.evicted:
            CUSTOMERS_EVICTED.inc(journey.evicted)
            journey.evicted = 0
        if journey.retired:
            CUSTOMERS.dec()
            _count_timers(signals, decisions, None)
            if self._config.barrier:
                self._config.owed.note(self, None)
            return out, StatefulBatchLogic.DISCARD
        _count_timers(signals, decisions, journey)
        if self._config.barrier:
            self._config.owed.note(self, _owed(self._config, journey))
        return out, StatefulBatchLogic.RETAIN

    def _ask(self, journey: Journey, out: list[JourneyOutput]) -> None:
        """Send the capacity owner the request of a decision that has just asked."""
        if journey.asking is not None and journey.asking is not self._asked:
            self._asked = journey.asking
            out.append(journey.asking.request)

    def _ticked(self, values: list[ForCustomer]) -> list[JourneyOutput]:
        """Answer the identity step's ticks (see :mod:`flows.barrier`), and keep the
        population model's versions it hands over for this process: nothing is kept here."""
        acks: list[Ack] = []
        population = _population(self._config)
        for value in values:
            if isinstance(value.item, Tick):
                acks.append(self._config.owed.acked(value.item))
            elif isinstance(value.item, Final):
                population.finish(value.item.at)
            else:
                population.take(value.item)
                LEARNING_MODEL_VERSION.set(population.boundary() / 1000)
        if self._config.acks is not None:
            self._config.acks.extend(acks)
        return list(acks)

    def on_notify(self) -> tuple[Iterable[JourneyOutput], bool]:
        config = self._config
        if not config.wall_clock_timers:
            return self._fired_by_frontier(), StatefulBatchLogic.RETAIN
        now = config.clock()
        until = _versioned(config, config.frontier.safe_until(now))
        if self._journey is None and (self._packed is None or not _packed_due(self._packed, until)):
            return (), StatefulBatchLogic.RETAIN
        journey = self._live()
        assert journey is not None
        state = journey.state
        signals, decisions = len(state.pending), len(state.deferred)
        outputs = journey.fire_due(config.policy, until, True)
        if outputs:
            self._touched = now
        fired = self._fired(journey, outputs, until, signals, decisions)
        idle = config.pack_idle_ms
        if (
            fired[1] is StatefulBatchLogic.RETAIN
            and idle is not None
            and now - self._touched >= idle
            and journey.asking is None  # it waits for an answer, which revives nothing
        ):
            self._pack()
        return fired

    def on_eof(self) -> tuple[Iterable[JourneyOutput], bool]:
        frontier = self._config.frontier
        if frontier.interrupted or frontier.end_at is None:
            return (), StatefulBatchLogic.RETAIN
        journey = self._live()
        if journey is None:
            return (), StatefulBatchLogic.RETAIN
        end = frontier.end_at
        state = journey.state
        signals, decisions = len(state.pending), len(state.deferred)
        outputs = journey.fire_due(self._config.policy, end, True)
        fired = self._fired(journey, outputs, end, signals, decisions)
        left = self._config.left_pending
        if left is not None and fired[1] == StatefulBatchLogic.RETAIN:
            state = journey.state
            left.update(("timer", name) for name in state.pending)
            left.update(("decision", key.moment) for key in state.deferred)
            left.update(("trial", trial.action) for trial in state.trials)
        return fired

    def _fired_by_frontier(self) -> list[JourneyOutput]:
        """Replay with the barrier: fire what the input frontier has passed, as the
        customer's next event would have (nothing is evicted before it would have been)."""
        config = self._config
        journey = self._journey
        if not config.barrier or journey is None:
            return []
        emitted = self._fire_passed(journey)
        if emitted is None:
            return []  # nothing to fire, and nothing owed has changed
        self._config.owed.note(self, _owed(self._config, journey))
        return emitted

    def _fire_passed(self, journey: Journey) -> list[JourneyOutput] | None:
        """Fire the timers the input frontier has passed (replay with the barrier); None if
        none had."""
        config = self._config
        until = _frontier_until(config)
        due = journey.state.next_due()
        if journey.held or due is None or due > until:
            return None
        outputs = journey.fire_due(config.policy, until, True)
        emitted: list[JourneyOutput] = list(_timer_outputs(config, journey, outputs))
        self._ask(journey, emitted)
        return emitted

    def notify_at(self) -> datetime | None:
        if not self._config.wall_clock_timers:
            return self._frontier_wake()
        now = self._config.clock()
        fire_until = _versioned(self._config, self._config.frontier.safe_until(now))
        if self._journey is not None:
            wake = self._journey.wake_at(self._config.policy, now, fire_until)
            idle = self._config.pack_idle_ms
            if idle is not None:
                pack_at = self._touched + idle
                wake = pack_at if wake is None else min(wake, pack_at)
        elif self._packed is not None:
            wake = _packed_wake(self._packed, now, fire_until)
        else:
            return None
        return datetime.fromtimestamp(wake / 1000, UTC) if wake is not None else None

    def _frontier_wake(self) -> datetime | None:
        """Replay with the barrier: look again once the input frontier may have passed the
        next timer (the wall clock says nothing of event time here)."""
        journey = self._journey
        if not self._config.barrier or journey is None:
            return None
        now = self._config.clock()
        if journey.held:
            return None
        due = journey.state.next_due()
        if due is None:
            return None
        until = _frontier_until(self._config)
        wait = 0
        if due > until:
            pace = self._config.frontier.pace
            wait = FRONTIER_POLL_MS
            if pace > 0:
                halfway = (due - until) / pace / 2
                wait = int(min(FRONTIER_POLL_MAX_MS, max(FRONTIER_POLL_MS, halfway)))
        return datetime.fromtimestamp((now + wait) / 1000, UTC)

    def snapshot(self) -> bytes:
        if self._journey is not None:  # live: its pickle, as before customers were packed
            return pickle.dumps(self._journey, protocol=pickle.HIGHEST_PROTOCOL)
        assert self._packed is not None, "a customer's logic always holds a journey"
        return self._packed

    def _pack(self) -> None:
        assert self._journey is not None
        self._packed = pack(self._journey, self._config.policy)
        self._journey = None
        CUSTOMERS_PACKED.inc()

    def _live(self) -> Journey | None:
        """This customer's journey, revived from its snapshot if it was packed."""
        if self._journey is None and self._packed is not None:
            self._journey = unpack(self._packed)
            self._packed = None
            CUSTOMERS_PACKED.dec()
            CUSTOMERS_REVIVED.inc()
        return self._journey

    def _fired(
        self, journey: Journey, outputs: list[Output], now: int, signals: int, decisions: int
    ) -> tuple[Iterable[JourneyOutput], bool]:
        """Emit what the timers decided; then forget the customer if, as of ``now``, they
        have been idle long enough with nothing pending. ``signals`` and ``decisions``: the
        timers they had pending before these fired."""
        emitted: list[JourneyOutput] = list(_timer_outputs(self._config, journey, outputs))
        self._ask(journey, emitted)
        if journey.evictable(self._config.policy, now):
            CUSTOMERS.dec()
            CUSTOMERS_EVICTED.inc()
            _count_timers(signals, decisions, None)
            if self._config.barrier:
                self._config.owed.note(self, None)
            return emitted, StatefulBatchLogic.DISCARD
        _count_timers(signals, decisions, journey)
        if self._config.barrier:
            self._config.owed.note(self, _owed(self._config, journey))
        return emitted, StatefulBatchLogic.RETAIN


class IncompatibleSnapshot(RuntimeError):
    """A recovery snapshot written by a version whose customer state had another shape."""


def _resumed(snapshot: bytes) -> Journey:
    try:
        journey = pickle.loads(snapshot)
    except (AttributeError, ImportError, TypeError, ValueError) as err:
        raise IncompatibleSnapshot(
            f"the recovery snapshot holds customer state this version cannot read ({err}): "
            "it was written by another version (0.3.0 or before: this one reads the customer "
            "state of 0.4.0 and later); see docs/limits.md, upgrading"
        ) from None
    if not isinstance(journey, Journey):
        raise IncompatibleSnapshot("the recovery snapshot holds no customer journey")
    return journey


def _population(config: JourneyConfig) -> Any:
    """The population model's versions, when the barrier runs and the policy has them."""
    learning = config.policy.learning
    if not config.barrier or learning is None:
        return None
    return learning.population


def _timer_outputs(config: JourneyConfig, journey: Journey, outputs: list[Output]) -> list[Emitted]:
    """What ``journey``'s timers decided, in replay's order of timers (with the customer's
    time zone noted for replay)."""
    customer = journey.state.customer_id
    emitted = [
        Emitted(output, _order(config, output, BY_TIMER, customer, n), 0.0)
        for n, output in enumerate(outputs)
    ]
    if config.zones is not None and emitted:
        _note_zone(config, journey, emitted)
    return emitted


def _frontier_until(config: JourneyConfig) -> int:
    """Replay with the barrier (or Kafka read to its end): how far timers may fire as the
    input frontier passes them, up to the end and to the versions this process has."""
    return _versioned(config, min(config.frontier.settled - 1, _end(config)))


def _end(config: JourneyConfig) -> int:
    """How far timers fired as the frontier passes them may go: replay's end, or, reading
    Kafka to its end, the wall clock (what the end of input fires up to)."""
    if config.end_by_clock:
        return config.clock()
    end = config.frontier.end_at
    return FOREVER if end is None else end


def _versioned(config: JourneyConfig, until: int) -> int:
    """``until``, held back to the last event time whose population model's version this
    process has: the frontier may come (on its own topic) before the version does."""
    population = _population(config)
    if population is None:
        return until
    ready = population.ready_until()
    return min(until, NEVER if ready is None else ready)


def _packed_owed(packed: bytes) -> int | None:
    """What a packed customer owes their worker (see :func:`_owed`), from their head: a
    merge holding events back owes from the start of time."""
    _, due, _, held, _, _ = _PACKED_HEAD.unpack_from(packed)
    return NEVER if held else None if due < 0 else due


def _owed(config: JourneyConfig, journey: Journey) -> int | None:
    """The earliest event time ``journey`` still owes its worker: its next timer (unless it
    is due past where the end of input fires timers up to: it never fires in this run), or
    the first thing a pending merge holds back. That is the merge itself: the retired
    profile fired what fell due before it, and what it had due after travels in its
    context, which only this journey will fire."""
    due = journey.state.next_due()
    if due is not None and due > _end(config):
        due = None
    held = [item.time if isinstance(item, Event) else item.at for item in journey.queue]
    asking = journey.asking
    if asking is not None:
        # After the answer, what is held and what is due is decided no earlier than the
        # floor (the instant after the request), and so is any timer the answer leaves; a
        # customer who will ask nothing more owes nothing, and holds no one else back.
        owed = [t for t in (due, asking.later, *held) if t is not None]
        return max(min(owed), journey.floor) if owed else None
    if held:
        return min(held) if due is None else min(due, *held)
    return due


def _count_timers(signals: int, decisions: int, journey: Journey | None) -> None:
    """Move the timers-pending gauge from what a customer had pending (``signals`` timers,
    ``decisions`` deferred) to what ``journey`` has now (None: nothing, it is forgotten)."""
    if journey is not None:
        state = journey.state
        signals -= len(state.pending)
        decisions -= len(state.deferred)
    if signals:
        SIGNAL_TIMERS.dec(signals)
    if decisions:
        DEFERRED_DECISIONS.dec(decisions)


def _order(config: JourneyConfig, output: Output, line: int, customer: str, n: int) -> Order:
    """Where an output goes in replay's order: after the input line that caused it, or,
    decided by a timer the end of input fired, by its time and customer. With the barrier
    (a population model, capacity), everything goes by its time and customer, then by its
    bytes: whether a timer fired as the frontier passed it or as the customer's next event
    came depends on how the threads ran, and the order must not."""
    if config.barrier:
        return Order.of_timer(_at(output), customer, 0)
    if line == BY_TIMER:
        return Order.of_timer(_at(output), customer, n)
    return Order.of_line(line, n)


def _note_zone(config: JourneyConfig, journey: Journey, out: list[JourneyOutput]) -> None:
    """Record the customer's time zone as of their first output here, if it changed."""
    assert config.zones is not None
    first = next((o.output for o in out if isinstance(o, Emitted)), None)
    if first is None:
        return
    zone = timezone_of(config.policy, journey.state)
    changes = config.zones.setdefault(first.customer_id, [])
    if not changes or changes[-1][1] != zone:
        changes.append((_at(first), zone))


def _at(output: Output) -> int:
    return output.decided_at if isinstance(output, Action) else output.at
