"""The identity step: every event goes through one identity graph, in order.

The graph is global (any two identifiers may turn out to be one person), so
the step has a single key and one worker owns the graph. Its store is RocksDB
under ``--state-dir`` in Kafka mode and memory in replay. The step's recovery
snapshot is the graph's operation number: on resume the graph rolls back to
it, so it is exactly as it was when the rest of the flow's state was taken.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bytewax.operators import StatefulBatchLogic

from flows import metrics
from flows.progress import LoopCounters
from operators.action_ids import customer_of_action_id
from operators.identifiers import IdentifierRules
from operators.identity_graph import IdentityGraph, KeyValue
from operators.model import Event
from operators.resolution import ForCustomer, Routed, route

log = logging.getLogger("concierge.identity")

IDENTITY_KEY = "identity"
KEPT_SNAPSHOTS = 10
"""Undo records are kept back to this many snapshots ago: Bytewax resumes from the last
snapshot every worker committed, which may trail the latest one."""


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
        known = unknown = merges = refusals = 0
        for event in values:
            if event.type == "feedback":
                routed.append(ForCustomer(self._feedback_customer(event), event))
                continue
            resolution = self._graph.resolve(event.identifiers, event.time, event.event_id)
            routed.extend(route(self._graph.sequence, resolution, event))
            merges += len(resolution.merges)
            refusals += len(resolution.refusals) + len(event.blocked_identifiers)
            if resolution.known_person:
                known += 1
            else:
                unknown += 1
        # Merges first: once the events count as resolved, an input that has ended may
        # stop waiting for transfers.
        self._config.counters.add("merges_issued", merges)
        self._config.counters.add("events_resolved", len(values))
        metrics.count_resolved(known, unknown, self._graph.profiles_created)
        metrics.count_merges(merges, refusals)
        return routed, StatefulBatchLogic.RETAIN

    def _feedback_customer(self, event: Event) -> str:
        customer = customer_of_action_id(str(event.properties.get("action_id", "")))
        assert customer is not None  # ingest dead-letters feedback about unknown actions
        return self._graph.current_id(customer) or customer

    def snapshot(self) -> int:
        sequence = self._graph.sequence
        if len(self._snapshots) == KEPT_SNAPSHOTS:
            self._graph.forget_undo(self._snapshots[0])
        self._snapshots.append(sequence)
        return sequence
