"""One customer's journey: the per-customer core the dataflow calls.

Each item for a customer comes here: an event (:meth:`Journey.on_event`), the notices
of a merge (:meth:`Journey.on_adopt`, :meth:`Journey.on_retire`), a merged context
arriving (:meth:`Journey.on_transfer`) and the timers (:meth:`Journey.fire_due`).
An event updates the context (:mod:`operators.context`); the signals it fires open
moments (:mod:`operators.moments`); the moments are decided (:mod:`operators.decide`).

Time is event time: an event is handled as of its timestamp, and timers (absence
signals, decisions deferred by quiet hours or a full cap) fire as of their due time,
whether the clock that reached it was the next event, the end of a replay, or the
wall clock in Kafka mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from operators.absences import due_absences
from operators.context import update_context
from operators.decide import Output, decide
from operators.eviction import evict_at
from operators.handover import Adopt, Retire, Transfer
from operators.merging import merge_states
from operators.model import Event
from operators.moments import open_moments
from operators.policy import Policy
from operators.signals import SignalFired
from operators.state import CustomerState, MomentKey
from operators.state_records import state_from_record, state_to_record
from operators.suppression import start_suppressions

GATED_RETRY_MS = 2_000
"""How soon a timer held back by input still being read is tried again (wall clock)."""


def act_on_event(policy: Policy, state: CustomerState, event: Event) -> list[Output]:
    """Let ``event`` update the context and decide the moments its signals open, as of the
    latest of them; what fell due before it must have fired already."""
    fired = update_context(policy, state, event)
    if not fired:
        return []
    keys: list[MomentKey] = []
    for signal_fired in fired:
        keys.extend(_take(policy, state, signal_fired, event.event_id))
    return decide(policy, state, keys, max(event.time, *(f.at for f in fired)))


def fire_due(policy: Policy, state: CustomerState, until: int, inclusive: bool) -> list[Output]:
    """Fire the timers due before ``until`` (or at it, if ``inclusive``) in time order, each
    instant deciding as of itself: absence signals open their moments, deferred decisions
    are taken again."""
    outputs: list[Output] = []
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
        outputs.extend(decide(policy, state, keys, due))


def _take(
    policy: Policy, state: CustomerState, fired: SignalFired, opening_event: str
) -> list[MomentKey]:
    """A fired signal starts its suppressions and opens its moments (the keys returned);
    the caller decides once every signal of the instant is taken."""
    start_suppressions(state, policy.suppressions_by_signal.get(fired.signal, ()), fired.at, None)
    return open_moments(state, policy, fired, opening_event)


@dataclass(slots=True)
class Journey:
    """One customer's context plus the merges it is waiting for and the events it holds
    back meanwhile."""

    # Immutable, replaced on change: most customers never merge, and an empty set or list
    # per customer would cost more than the rest of a typical customer's context.
    state: CustomerState
    awaiting: frozenset[str] = frozenset()
    held: tuple[Event, ...] = ()
    adopted: frozenset[str] = frozenset()
    """Merge ids already folded in (so a repeated transfer changes nothing)."""
    early: dict[str, Transfer] = field(default_factory=dict)
    """Transfers that came before the notice to adopt them (a restart can replay the
    transfers topic ahead of the identity step); same merge id, same content."""
    retiring: Retire | None = None
    """A retirement that waits for this profile's own pending merges to complete."""
    retired: bool = False
    evicted: int = 0
    """Times this customer's context was forgotten as idle, since the step last looked."""

    def on_event(self, policy: Policy, event: Event) -> list[Output]:
        """Handle ``event``, or hold it back while a merge is pending."""
        if self.awaiting:
            self.held = (*self.held, event)
            return []
        return self._handle(policy, event)

    def _handle(self, policy: Policy, event: Event) -> list[Output]:
        """Fire what fell due before the input's event time reached ``event`` (its watermark:
        later than its own time when it arrived late), forget a context idle long enough
        by then, then act on ``event``."""
        outputs = fire_due(policy, self.state, max(event.time, event.watermark), inclusive=False)
        self._forget_if_idle(policy, event.time)
        outputs.extend(act_on_event(policy, self.state, event))
        return outputs

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
        if self.awaiting or self.held or self.early or self.retiring or self.retired:
            return None
        return evict_at(policy, self.state)

    def wake_at(self, policy: Policy, now: int, fire_until: int) -> int | None:
        """When the wall clock should next look at this customer: its next timer, else its
        eviction. A timer already due that may not fire yet (``fire_until``: the input is
        still being read up to it) is looked at again shortly."""
        if self.awaiting:
            return None
        due = self.state.next_due()
        if due is None:
            due = self.next_eviction(policy)
        if due is None:
            return None
        if due <= now and due > fire_until:
            return now + GATED_RETRY_MS
        return due

    def on_adopt(self, policy: Policy, adopt: Adopt) -> tuple[list[Output], Transfer | None]:
        """Start holding events back until the retired context arrives (at once, if it
        came early)."""
        if adopt.merge_id in self.adopted:
            return [], None
        before = self.fire_due(policy, adopt.at, inclusive=False)
        if not self.awaiting:
            self._forget_if_idle(policy, adopt.at)
        self.awaiting = self.awaiting | {adopt.merge_id}
        early = self.early.pop(adopt.merge_id, None)
        if early is None:
            return before, None
        outputs, handed = self.on_transfer(policy, early)
        return before + outputs, handed

    def on_transfer(
        self, policy: Policy, transfer: Transfer
    ) -> tuple[list[Output], Transfer | None]:
        """Fold the retired context in; once nothing else is awaited, handle what was held
        (and, if this profile is itself retiring, hand everything over)."""
        if transfer.merge_id in self.adopted or self.retired:
            return [], None
        if transfer.merge_id not in self.awaiting:
            self.early[transfer.merge_id] = transfer
            return [], None
        if transfer.state is not None:
            merge_states(policy, self.state, state_from_record(transfer.state))
        self.adopted = self.adopted | {transfer.merge_id}
        self.awaiting = self.awaiting - {transfer.merge_id}
        if self.awaiting:
            return [], None
        held, self.held = self.held, ()
        outputs: list[Output] = []
        for event in held:
            outputs.extend(self._handle(policy, event))
        if self.retiring is not None:
            return outputs, self._hand_over(self.retiring)
        return outputs, None

    def on_retire(self, policy: Policy, retire: Retire) -> tuple[list[Output], Transfer | None]:
        """Fire what fell due before the merge, then hand the context over; or, while this
        profile still waits for a merge of its own, do so once that is done (its held
        events are its own history)."""
        before = self.fire_due(policy, retire.at, inclusive=False)
        if self.awaiting:
            self.retiring = retire
            return before, None
        self._forget_if_idle(policy, retire.at)
        return before, self._hand_over(retire)

    def _hand_over(self, retire: Retire) -> Transfer:
        self.retired = True
        self.retiring = None
        return Transfer(
            retire.merge_id, self.state.customer_id, retire.into, state_to_record(self.state)
        )

    def fire_due(self, policy: Policy, until: int, inclusive: bool) -> list[Output]:
        """Fire what is due by ``until``. Timers wait while a merge is pending: the merged
        context may cancel them."""
        if self.awaiting or self.retired:
            return []
        return fire_due(policy, self.state, until, inclusive)
