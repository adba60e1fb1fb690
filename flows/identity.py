"""The identity step: every event goes through one identity graph, in order.

The graph is global (any two identifiers may turn out to be one person), so
the step has a single key and one worker owns the graph. Its store is RocksDB
under ``--state-dir`` in Kafka mode and memory in replay. The step's recovery
snapshot is the graph's operation number: on resume the graph rolls back to
it, so it is exactly as it was when the rest of the flow's state was taken.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bytewax.operators import StatefulBatchLogic

from flows import metrics
from operators.action_ids import customer_of_action_id
from operators.identifiers import IdentifierRules
from operators.identity_graph import IdentityGraph, KeyValue, Resolution
from operators.merging import Adopt, Retire
from operators.model import Audit, Event

log = logging.getLogger("concierge.identity")

IDENTITY_KEY = "identity"
KEPT_SNAPSHOTS = 10
"""Undo records are kept back to this many snapshots ago: Bytewax resumes from the last
snapshot every worker committed, which may trail the latest one."""

JourneyItem = Event | Adopt | Retire
Routed = tuple[str, JourneyItem] | tuple[Audit, tuple[int, int]]
"""What the identity step sends on: (customer id, item) for the journey, or
(audit, (input line, n)) for the audit stream."""


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
        with self._lock:
            return (
                self.events_resolved >= self.events_read
                and self.transfers_delivered >= self.merges_issued
            )


@dataclass
class IdentityConfig:
    """How the identity step opens its graph."""

    rules: IdentifierRules
    open_store: Callable[[], KeyValue]
    counters: LoopCounters = field(default_factory=LoopCounters)


class IdentityLogic(StatefulBatchLogic[Event, Routed, int]):
    """The identity graph inside the dataflow."""

    def __init__(self, config: IdentityConfig, resume: int | None) -> None:
        self._config = config
        self._graph = IdentityGraph(config.open_store(), config.rules)
        if resume is None and self._graph.sequence:
            # The flow starts over from nothing (no snapshot was committed before a crash):
            # so does the graph, or it would know links its inputs have not made yet.
            log.warning("identity graph: no snapshot to resume from; starting it afresh")
            self._graph.clear()
        elif resume is not None:
            undone = self._graph.roll_back(resume)
            if undone:
                log.info("identity graph: rolled back %d operations to the snapshot", undone)
        self._snapshots: deque[int] = deque(maxlen=KEPT_SNAPSHOTS)

    def on_batch(self, values: list[Event]) -> tuple[Iterable[Routed], bool]:
        routed: list[Routed] = []
        known = unknown = 0
        for event in values:
            if event.type == "feedback":
                routed.append((self._feedback_customer(event), event))
                continue
            resolution = self._graph.resolve(event.identifiers, event.time, event.event_id)
            routed.extend(self._merges(resolution, event))
            routed.append((resolution.customer_id, event))
            if resolution.known_person:
                known += 1
            else:
                unknown += 1
        self._config.counters.add("events_resolved", len(values))
        metrics.count_resolved(known, unknown, self._graph.profiles_created)
        return routed, StatefulBatchLogic.RETAIN

    def _feedback_customer(self, event: Event) -> str:
        customer = customer_of_action_id(str(event.properties.get("action_id", "")))
        assert customer is not None  # ingest dead-letters feedback about unknown actions
        return self._graph.current_id(customer) or customer

    def _merges(self, resolution: Resolution, event: Event) -> list[Routed]:
        routed: list[Routed] = []
        audits: list[Audit] = []
        for merge in resolution.merges:
            merge_id = f"{self._graph.sequence}:{merge.retired}>{merge.survivor}"
            at = max(event.time, event.watermark)
            line = event.origin.line or 0
            routed.append((merge.retired, Retire(merge_id, merge.survivor, at, line)))
            routed.append((merge.survivor, Adopt(merge_id, merge.retired, at, line)))
            self._config.counters.add("merges_issued")
            audits.append(
                Audit(
                    event.time,
                    "merge",
                    (merge.retired, merge.survivor),
                    merge.survivor,
                    merge.identifiers,
                    event.event_id,
                )
            )
        for refusal in resolution.refusals:
            involved = (refusal.profile,) + ((refusal.other,) if refusal.other else ())
            audits.append(
                Audit(
                    event.time,
                    "merge_refused",
                    involved,
                    resolution.customer_id,
                    (refusal.identifier,),
                    event.event_id,
                    limit=refusal.limit,
                )
            )
        for kind, masked in event.blocked_identifiers:
            audits.append(
                Audit(
                    event.time,
                    "merge_refused",
                    (resolution.customer_id,),
                    resolution.customer_id,
                    ((kind, masked),),
                    event.event_id,
                    blocked=f"{kind}: {masked}",
                )
            )
        routed.extend((audit, (event.origin.line or 0, n)) for n, audit in enumerate(audits))
        metrics.count_merges(
            len(resolution.merges), len(resolution.refusals) + len(event.blocked_identifiers)
        )
        return routed

    def snapshot(self) -> int:
        sequence = self._graph.sequence
        if len(self._snapshots) == KEPT_SNAPSHOTS:
            self._graph.forget_undo(self._snapshots[0])
        self._snapshots.append(sequence)
        return sequence


def route(batch: list[tuple[str, Routed]]) -> list[Any]:
    """Unwrap the identity step's output: journey items keyed by customer, and audits."""
    return [value for _, value in batch]
