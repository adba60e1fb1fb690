"""A customer's side of a profile merge, which crosses customers.

When the identity graph merges profile A into B, A's context has to reach B
before B decides anything more. The dataflow cannot send it from A's step to
B's directly, so it travels as a *transfer* record: A is told to retire and
hands over its context; B is told to adopt A and holds its own events back
until A's context has arrived and been folded in. Merge ids make this safe
under at-least-once delivery: a transfer that comes twice is folded in once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from operators.context import CustomerState, evict_at
from operators.customer import apply_event, fire_due
from operators.decide import Output
from operators.handover import merge_states, state_from_record, state_to_record
from operators.model import Event
from operators.policy import Policy


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
class Transfer:
    """A retired profile's context on its way to the survivor."""

    merge_id: str
    retired: str
    survivor: str
    state: dict[str, Any] | None
    """None when the context was lost on the way (too large for the brokers to take): the
    merge completes with nothing folded in."""


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
        if self.awaiting:
            self.held = (*self.held, event)
            return []
        return self._handle(policy, event)

    def _handle(self, policy: Policy, event: Event) -> list[Output]:
        """Handle ``event``; a context idle long enough by its time is forgotten first, the
        same as if the wall clock had evicted it already."""
        outputs = fire_due(policy, self.state, max(event.time, event.watermark), inclusive=False)
        self._forget_if_idle(policy, event.time)
        outputs.extend(apply_event(policy, self.state, event))
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
        """Timers wait while a merge is pending: the merged context may cancel them."""
        if self.awaiting or self.retired:
            return []
        return fire_due(policy, self.state, until, inclusive)
