"""One customer's journey: the per-customer core the dataflow calls.

Each item for a customer comes here: an event (:meth:`Journey.on_event`), the notices
of a merge (:meth:`Journey.on_adopt`, :meth:`Journey.on_retire`), a merged context
arriving (:meth:`Journey.on_transfer`) and the timers (:meth:`Journey.fire_due`).
An event updates the context (:mod:`operators.context.update`); the signals it fires open
moments (:mod:`operators.context.moments`); the moments are decided
(:mod:`operators.decisions.decide`).

Time is event time: an event is handled as of its timestamp, and timers (absence
signals, decisions deferred by quiet hours or a full cap) fire as of their due time,
whether the clock that reached it was the next event, the end of a replay, or the
wall clock in Kafka mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from operators.context.absences import due_absences
from operators.context.moments import open_moments
from operators.context.signals import SignalFired
from operators.context.suppression import start_suppressions
from operators.context.update import update_context
from operators.decisions.capacity import Answer
from operators.decisions.decide import Asked, Output, decide
from operators.eviction import evict_at
from operators.identity.merging import merge_states
from operators.learning.evidence import observe
from operators.measurement.conversions import convert
from operators.model.handover import Adopt, Forget, Retire, Transfer
from operators.model.records import Conversion, Event
from operators.model.state import CustomerState, MomentKey
from operators.model.state_records import state_from_record, state_to_record
from operators.policy.compiled import Policy

GATED_RETRY_MS = 2_000
"""How soon a timer held back by input still being read is tried again (wall clock)."""


def act_on_event(
    policy: Policy, state: CustomerState, event: Event, floor: int = 0
) -> list[Output | Asked]:
    """Let ``event`` convert the decisions waiting for it, update the context and decide
    the moments its signals open, as of the latest of them (and no earlier than ``floor``);
    what fell due before it must have fired already. The last output is an
    :class:`Asked` if the decision waits for capacity."""
    converted: list[Conversion] = convert(policy, state, event) if state.watches else []
    outputs: list[Output | Asked] = [*converted]
    if policy.learning is not None and state.trials:
        outputs = [*observe(policy.learning, state, event, converted), *converted]
    fired = update_context(policy, state, event)
    if not fired:
        return outputs
    keys: list[MomentKey] = []
    for signal_fired in fired:
        keys.extend(_take(policy, state, signal_fired, event.event_id))
    decided = decide(policy, state, keys, max(event.time, *(f.at for f in fired), floor))
    return [*outputs, *decided] if outputs else decided


def fire_due(
    policy: Policy, state: CustomerState, until: int, inclusive: bool, floor: int = 0
) -> list[Output | Asked]:
    """Fire the timers due before ``until`` (or at it, if ``inclusive``) in time order, each
    instant deciding as of itself (no earlier than ``floor``): absence signals open their
    moments, deferred decisions are taken again. A decision that waits for capacity stops
    it there (its :class:`Asked` last): the rest fire once it is answered."""
    outputs: list[Output | Asked] = []
    while True:
        due = state.next_due()
        if due is None or due > until or (due == until and not inclusive):
            return outputs
        keys: list[MomentKey] = []
        for signal_fired in due_absences(state, due, inclusive=True):
            keys.extend(_take(policy, state, signal_fired, signal_fired.triggered_by[0]))
        for key in [k for k, at in state.deferred.items() if at == due]:
            del state.deferred[key]
            keys.append(key)
        decided = decide(policy, state, keys, max(due, floor))
        outputs.extend(decided)
        if decided and isinstance(decided[-1], Asked):
            return outputs


def _take(
    policy: Policy, state: CustomerState, fired: SignalFired, opening_event: str
) -> list[MomentKey]:
    """A fired signal starts its suppressions and opens its moments (the keys returned);
    the caller decides once every signal of the instant is taken."""
    start_suppressions(state, policy.suppressions_by_signal.get(fired.signal, ()), fired.at, None)
    return open_moments(state, policy, fired, opening_event)


def wake_time(due: int | None, eviction: int | None, now: int, fire_until: int) -> int | None:
    """When the wall clock should next look at a customer whose next timer is ``due`` and who
    becomes evictable at ``eviction`` (see :meth:`Journey.wake_at`)."""
    if due is None:
        due = eviction
    if due is None:
        return None
    if due <= now and due > fire_until:
        return now + GATED_RETRY_MS
    return due


Queued = Event | Adopt | Retire | Forget

BY_TIMER = -1
"""The input line of what a timer fired by the clock (not by an event) decided."""


@dataclass(slots=True)
class Journey:
    """One customer's context plus the merges it is waiting for and what it holds back
    meanwhile.

    While a merge is pending, everything that comes for the customer waits in
    :attr:`queue`, in the order the identity step sent it: events, further merges and a
    retirement. Each is taken in once everything before it is done, so an event is handled
    with exactly the merges the identity step made before it, however late their contexts
    arrive (two merges in a row wait for each other; the second never folds in ahead of
    the events between them).
    """

    # Immutable, replaced on change: most customers never merge, and an empty set or list
    # per customer would cost more than the rest of a typical customer's context.
    state: CustomerState
    queue: tuple[Queued, ...] = ()
    """What waits behind the merge at its head (an :class:`Adopt` whose context has not
    arrived), in arrival order."""
    adopted: frozenset[str] = frozenset()
    """Merge ids already folded in (so a repeated transfer changes nothing)."""
    arrived: dict[str, Transfer] = field(default_factory=dict)
    """Transfers in hand for merges the queue has not reached yet, or whose notice has not
    come (a restart can replay the transfers topic ahead of the identity step)."""
    retired: bool = False
    evicted: int = 0
    """Times this customer's context was forgotten as idle, since the step last looked."""
    released_lines: tuple[int, ...] = ()
    """For the outputs the last merge notice, transfer or capacity answer released: the
    input line of what caused each (the held event, or the merge; :data:`BY_TIMER`), so
    replay's output order depends on what was released, not on when it happened to
    arrive."""
    asking: Asked | None = None
    """A decision waiting for the capacity owner's answer: everything that comes meanwhile
    waits in :attr:`queue`, and no timer fires."""
    asked_line: int = BY_TIMER
    """The input line of what made the decision :attr:`asking` waits on."""
    floor: int = 0
    """No decision is made before this (event time, ms): the instant after the last one
    that asked for capacity, so a customer asks once per instant."""

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as the class and its values (a snapshot holds one per customer): smaller
        than the dataclass's slot names and values, and read faster."""
        return (
            Journey,
            (
                self.state,
                self.queue,
                self.adopted,
                self.arrived,
                self.retired,
                self.evicted,
                self.released_lines,
                self.asking,
                self.asked_line,
                self.floor,
            ),
        )

    @property
    def held(self) -> bool:
        """Whether what comes for this customer waits (a merge, or an answer, pending)."""
        return bool(self.queue) or self.asking is not None

    @property
    def awaiting(self) -> frozenset[str]:
        """The merges whose contexts this customer waits for."""
        return frozenset(item.merge_id for item in self.queue if isinstance(item, Adopt))

    def on_event(self, policy: Policy, event: Event) -> list[Output]:
        """Handle ``event``, or hold it back while a merge or an answer is pending."""
        if self.held:
            self.queue = (*self.queue, event)
            return []
        outputs, done = self._handle(policy, event)
        if not done:
            self.queue = (event,)
        return outputs

    def _handle(self, policy: Policy, event: Event) -> tuple[list[Output], bool]:
        """Fire what fell due before the input's event time reached ``event`` (its watermark:
        later than its own time when it arrived late), forget a context idle long enough
        by then, then act on ``event``. False: a timer's decision asked for capacity first,
        and ``event`` waits for the answer."""
        line = event.origin.line or 0
        until = max(event.time, event.watermark)
        outputs = fire_due(policy, self.state, until, inclusive=False, floor=self.floor)
        if self._asked(outputs, line):
            return outputs, False  # type: ignore[return-value]  # the Asked is taken off
        self._forget_if_idle(policy, event.time)
        outputs.extend(act_on_event(policy, self.state, event, self.floor))
        self._asked(outputs, line)
        return outputs, True  # type: ignore[return-value]

    def _asked(self, outputs: list[Output | Asked], line: int) -> bool:
        """Whether ``outputs`` end in a decision asking for capacity: if so, it is taken off
        them and waited for."""
        if not outputs or not isinstance(outputs[-1], Asked):
            return False
        asked = outputs.pop()
        assert isinstance(asked, Asked)
        self.asking, self.asked_line, self.floor = asked, line, asked.request.at + 1
        return True

    def _reach(self, policy: Policy, at: int, line: int) -> tuple[list[Output], bool]:
        """A merge (or an erasure) happens at ``at``: fire what fell due before it, and
        forget a context idle long enough by then, so it sees what Kafka mode's wall clock
        left. False: a timer's decision asked for capacity first (reach it again once it
        is answered)."""
        outputs = fire_due(policy, self.state, at, inclusive=False, floor=self.floor)
        if self._asked(outputs, line):
            return outputs, False  # type: ignore[return-value]
        self._forget_if_idle(policy, at)
        return outputs, True  # type: ignore[return-value]

    def _forget_if_idle(self, policy: Policy, now: int) -> None:
        """Forget the context if it had become evictable by ``now``: what the wall clock
        would have done already in Kafka mode, done lazily (replay, or a clock behind)."""
        idle_until = evict_at(policy, self.state)
        if idle_until is not None and idle_until <= now:
            self.state = CustomerState(self.state.customer_id)
            self.evicted += 1

    def evictable(self, policy: Policy, now: int) -> bool:
        """Whether this customer can be forgotten as of ``now``: idle, with nothing pending
        and no merge under way."""
        idle_until = self.next_eviction(policy)
        return idle_until is not None and idle_until <= now

    def next_eviction(self, policy: Policy) -> int | None:
        """When this customer becomes evictable, if nothing happens before."""
        if self.held or self.arrived or self.retired:
            return None
        return evict_at(policy, self.state)

    def wake_at(self, policy: Policy, now: int, fire_until: int) -> int | None:
        """When the wall clock should next look at this customer: its next timer, else its
        eviction. A timer already due that may not fire yet (``fire_until``: the input is
        still being read up to it) is looked at again shortly."""
        if self.held:
            return None
        due = self.state.next_due()
        eviction = self.next_eviction(policy) if due is None else None
        return wake_time(due, eviction, now, fire_until)

    def on_adopt(self, policy: Policy, adopt: Adopt) -> tuple[list[Output], Transfer | None]:
        """Wait for the retired context (taking it in at once if it came early); behind a
        pending merge or answer, queue the notice."""
        if adopt.merge_id in self.adopted or adopt.merge_id in self.awaiting:
            return [], None
        return self._enqueue(policy, adopt)

    def on_transfer(
        self, policy: Policy, transfer: Transfer
    ) -> tuple[list[Output], Transfer | None]:
        """Keep the retired context until the queue reaches its merge; take in what that
        releases (and, if this profile is itself retiring, hand everything over)."""
        if transfer.merge_id in self.adopted or self.retired:
            return [], None
        self.arrived[transfer.merge_id] = transfer
        return self._advance(policy)

    def on_retire(self, policy: Policy, retire: Retire) -> tuple[list[Output], Transfer | None]:
        """Fire what fell due before the merge, then hand the context over; or, while this
        profile still waits for a merge of its own (its held events are its own history) or
        for an answer, do so once that is done."""
        return self._enqueue(policy, retire)

    def on_forget(self, policy: Policy, forget: Forget) -> list[Output]:
        """The graph forgot this profile: once what comes before it is done (behind a pending
        merge or answer, it waits its turn, as a retirement does), fire what fell due before
        then and drop the whole context. The caller drops the journey (:attr:`retired`)."""
        outputs, _ = self._enqueue(policy, forget)
        return outputs

    def on_answer(self, policy: Policy, answer: Answer) -> tuple[list[Output], Transfer | None]:
        """The capacity owner's answer to the decision :attr:`asking`: decide it (as of its
        time), then take in what waited for it. An answer to anything else (a repeat, after
        a restart) changes nothing."""
        asking = self.asking
        request = answer.request
        if asking is None or (asking.request.at, asking.request.key) != (request.at, request.key):
            return [], None
        self.asking = None
        decided = decide(policy, self.state, list(asking.keys), request.at, answer)
        assert not decided or not isinstance(decided[-1], Asked)
        line = self.asked_line
        outputs, handed = self._advance(policy)
        self.released_lines = (line,) * len(decided) + self.released_lines
        return [*decided, *outputs], handed  # type: ignore[list-item]

    def _enqueue(
        self, policy: Policy, item: Adopt | Retire | Forget
    ) -> tuple[list[Output], Transfer | None]:
        if self.held:
            self.queue = (*self.queue, item)
            return [], None
        self.queue = (item,)
        return self._advance(policy)

    def _forget(self) -> None:
        self.state = CustomerState(self.state.customer_id)
        self.queue, self.arrived, self.retired = (), {}, True

    def _advance(self, policy: Policy) -> tuple[list[Output], Transfer | None]:
        """Take in the queue from its head while the head is not a merge still waiting
        for its context, and no decision waits for capacity. What is not an event is
        reached first (see :meth:`_reach`)."""
        outputs: list[Output] = []
        lines: list[int] = []
        queue = list(self.queue)
        while queue and self.asking is None:
            head = queue[0]
            if isinstance(head, Event):
                line = head.origin.line or 0
                handled, done = self._handle(policy, head)
                outputs.extend(handled)
                lines.extend([line] * len(handled))
                if not done:
                    break
                del queue[0]
                continue
            reached, done = self._reach(policy, head.at, head.line)
            outputs.extend(reached)
            lines.extend([head.line] * len(reached))
            if not done:
                break
            if isinstance(head, Adopt):
                if head.merge_id not in self.adopted:
                    transfer = self.arrived.pop(head.merge_id, None)
                    if transfer is None:
                        break
                    if transfer.state is not None:
                        merge_states(policy, self.state, state_from_record(transfer.state))
                    self.adopted = self.adopted | {head.merge_id}
            elif isinstance(head, Retire):
                self.queue = ()
                self.released_lines = tuple(lines)
                return outputs, self._hand_over(head)
            else:
                self._forget()
                self.released_lines = tuple(lines)
                return outputs, None
            del queue[0]
        self.queue = tuple(queue)
        self.released_lines = tuple(lines)
        return outputs, None

    def _hand_over(self, retire: Retire) -> Transfer:
        self.retired = True
        return Transfer(
            retire.merge_id, self.state.customer_id, retire.into, state_to_record(self.state)
        )

    def fire_due(self, policy: Policy, until: int, inclusive: bool) -> list[Output]:
        """Fire what is due by ``until``. Timers wait while a merge is pending (the merged
        context may cancel them) or an answer is (they are decided after it)."""
        if self.held or self.retired:
            return []
        outputs = fire_due(policy, self.state, until, inclusive, self.floor)
        self._asked(outputs, BY_TIMER)
        return outputs  # type: ignore[return-value]
