"""The identity step: every event goes through one identity graph, in alignment order.

The graph is global (any two identifiers may turn out to be one person), so the step
has a single key and one worker owns the graph. Its store is RocksDB under
``--state-dir`` in Kafka mode and memory in replay.

Events reach it from every input partition, each partition followed by its progress;
the step's :class:`~operators.identity.alignment.Aligner` resolves them in event-time order across
all partitions (see :mod:`operators.identity.alignment`), so which profile survives a merge does
not depend on how partitions interleave. Merged contexts coming back (transfers) pass
through on their way to the survivor, so the step also knows when every merge has
completed. What it knows about the whole input it says in a
:class:`~flows.progress.FrontierMark` (:mod:`flows.progress`).

Its recovery snapshot is the graph's operation number and the events still waiting to be
aligned: on resume the graph rolls back to that number, so it is exactly as it was when
the rest of the flow's state was taken.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bytewax.operators import StatefulBatchLogic

from flows import metrics
from flows.barrier import Final, Tick, model_keys, tick_keys
from flows.capacity import Answered
from flows.journey import IncompatibleSnapshot
from flows.learner import MODELS_PART
from flows.progress import FrontierMark, InputFrontier
from operators.decisions.capacity import Answer
from operators.identity.alignment import NEVER, Aligner, Progress
from operators.identity.graph import DAY_MS, IdentityGraph, KeyValue, MissingUndo
from operators.identity.resolution import (
    ForCustomer,
    Routed,
    erasure_routes,
    forgotten_feedback,
    route,
)
from operators.learning.population import Complete
from operators.model.action_ids import customer_of_action_id
from operators.model.handover import Adopt, Forget, Transfer
from operators.model.identifiers import UNKEYED_IDENTITY, IdentifierRules, IdentityKey
from operators.model.records import ERASURE, DeadLetter, Event

log = logging.getLogger("concierge.identity")

IDENTITY_KEY = "identity"
KEPT_SNAPSHOTS = 10
"""Undo records are kept back to this many snapshots ago: Bytewax resumes from the last
snapshot every worker committed, which may trail the latest one."""
RETICK_MS = 20
"""How often the workers are asked again how far they have got while the population
model's versions are being waited for (their answers move as their timers fire)."""
MARK_EVERY_MS = 250
"""How often Kafka mode's identity step says how far the input has got, changed or not:
the other processes take its silence for an owner that is down."""

IdentityInput = Event | Progress | Transfer | Complete | Answer | Answered
IdentityOutput = Routed | FrontierMark | DeadLetter
Snapshot = tuple[int, Any, int, int, dict[str, str], str | None]
"""The graph's operation number, the aligner's snapshot, merges issued, transfers seen, the
merges whose contexts are in flight (merge id -> survivor), and the graph's lineage token."""


class GraphMismatch(RuntimeError):
    """The identity graph under ``--state-dir`` is not the one the snapshots were taken with,
    or not at a point it can be rolled back to them from: resumed, the customers' state would
    be decided with links it was not resolved through (or without links it was)."""


RESTORE_BOTH = (
    "restore --state-dir from the same moment as --recovery-dir (docs/operations.md, Runbook: "
    "IdentityGraphMismatch), or move both aside to start afresh"
)
"""What to do about a :class:`GraphMismatch`."""


def check_lineage(graph: IdentityGraph, sequence: int, lineage: str | None) -> None:
    """Raise :class:`GraphMismatch` unless ``graph`` can be rolled back to the snapshot that
    recorded operation ``sequence`` of the graph with token ``lineage``."""
    advice = RESTORE_BOTH
    if graph.sequence == 0 and sequence > 0:
        raise GraphMismatch(
            f"the identity graph under --state-dir is empty, but the snapshots were taken "
            f"with a graph of {sequence} operations (a lost or new --state-dir): {advice}"
        )
    if lineage is not None and graph.lineage is not None and graph.lineage != lineage:
        raise GraphMismatch(
            "the identity graph under --state-dir is not the one the snapshots were taken "
            f"with (another run's, or a restored copy of another): {advice}"
        )
    if graph.sequence < sequence:
        raise GraphMismatch(
            f"the identity graph under --state-dir is behind the snapshots: it has "
            f"{graph.sequence} operations, they were taken at operation {sequence} (an "
            f"older copy of --state-dir): {advice}"
        )


@dataclass
class IdentityConfig:
    """How the identity step opens its graph and aligns its input."""

    rules: IdentifierRules
    open_store: Callable[[], KeyValue]
    parts: list[str]
    """Every input partition of the cluster: events wait for all of them."""
    key: IdentityKey = UNKEYED_IDENTITY
    """The identity key the graph's digests are made with (the events' identifiers were
    digested under it by ingest)."""
    frontier: InputFrontier = field(default_factory=InputFrontier)
    """Replay: this process's frontier, told directly (Kafka mode publishes marks instead)."""
    publish: bool = False
    """Kafka mode: say how far the input has got on ``<prefix>frontier``, every
    :data:`MARK_EVERY_MS`, for every process's timers."""
    max_idle_ms: int = 500
    clock: Callable[[], int] = lambda: 0
    """The wall clock (ms): when a quiet partition stops holding the others back."""
    recoverable: bool = False
    """Kafka mode: the graph outlives the process, beside recovery snapshots, so it is given
    a lineage token they record (replay's graph is made afresh, and stays byte-identical)."""
    barrier_every: int | None = None
    """Send every journey worker a :class:`~flows.barrier.Tick` each time the input has
    been resolved past another multiple of this (event time, ms); None: never."""
    workers: int = 1
    """How many workers the cluster has (every process's), for the ticks."""
    capacity: bool = False
    """The policy has ``capacity``: the capacity owner's answers come back in through this
    step, and the input has drained only once every decision has its answer (so the last
    ticks go past the end of input)."""


class IdentityLogic(StatefulBatchLogic[IdentityInput, IdentityOutput, Snapshot]):
    """The identity graph inside the dataflow."""

    def __init__(self, config: IdentityConfig, resume: Snapshot | None) -> None:
        self._config = config
        self._graph = IdentityGraph(config.open_store(), config.rules, config.key)
        self._run = secrets.token_hex(4)
        now = config.clock()
        self._merges = self._transfers = 0
        self._swept_day = -1
        """The day of event time retention last swept the graph for (see :meth:`_expire`)."""
        self._in_flight: dict[str, str] = {}
        """Merges whose retired context has not come back yet: the survivor waits for it,
        even if it was erased since (it decides what came before the erasure first)."""
        if resume is None:
            self._aligner = Aligner(config.parts, config.max_idle_ms)
            if self._graph.sequence or self._graph.lineage:
                # The flow starts over from nothing (no snapshot was committed before a
                # crash): so does the graph, or it would know links its inputs have not made.
                log.warning("identity graph: no snapshot to resume from; starting it afresh")
                self._graph.clear()
            self._lineage = self._graph.begin() if config.recoverable else None
        else:
            if not isinstance(resume, tuple):
                raise IncompatibleSnapshot(
                    "the recovery snapshot's identity step was written by another version "
                    "(0.2.0 or before); see docs/limits.md, upgrading"
                )
            sequence, aligned, self._merges, self._transfers = resume[:4]
            self._in_flight = resume[4] if len(resume) > 4 else {}  # 0.6.0 kept none in flight
            check_lineage(self._graph, sequence, resume[5] if len(resume) > 5 else None)
            self._lineage = self._graph.lineage or self._graph.begin()
            # The population model's partition: a process that starts has no version until
            # it has read them again, so no event waits on what the run before had.
            self._aligner = Aligner.restore(
                aligned, config.parts, config.max_idle_ms, now, unclocked=(MODELS_PART,)
            )
            try:
                undone = self._graph.roll_back(sequence)
            except MissingUndo as err:
                raise GraphMismatch(
                    f"the identity graph under --state-dir is ahead of the snapshots past what "
                    f"it can undo ({err}; an older --recovery-dir beside a newer "
                    f"--state-dir): {RESTORE_BOTH}"
                ) from None
            if undone:
                log.info(
                    "identity graph: rolled back %s operations to the snapshot",
                    f"{undone:,}",
                    extra={"operations": undone},
                )
        self._snapshots: deque[int] = deque(maxlen=KEPT_SNAPSHOTS)
        self._marked: tuple[int, bool] | None = None
        self._marked_at = 0
        self._ticked = NEVER
        self._ticked_wall = 0.0
        self._finished = False
        self._answered = NEVER
        """How far the capacity owner has answered (see :class:`flows.capacity.Answered`)."""
        self._past_end = False
        """Whether the last ticks went past the end of input."""
        self._population = MODELS_PART in config.parts
        self._tick_keys = tick_keys(config.workers) if config.barrier_every else []
        self._model_keys = model_keys(config.workers) if config.barrier_every else []

    def on_batch(self, values: list[IdentityInput]) -> tuple[Iterable[IdentityOutput], bool]:
        now = self._config.clock()
        aligner = self._aligner
        out: list[IdentityOutput] = []
        for value in values:
            if isinstance(value, Event):
                aligner.add(value, now)
            elif isinstance(value, Progress):
                aligner.progress(value, now)
            elif isinstance(value, Complete):
                # every worker has it before the first event that uses it
                out.extend(ForCustomer(key, value) for key in self._model_keys)
            elif isinstance(value, Answer):
                # to the profile that asked, whatever it is called now: it waits for it
                out.append(ForCustomer(value.request.customer, value))
            elif isinstance(value, Answered):
                self._answered = max(self._answered, value.before)
                # the customers answered may owe less now: ask every worker again at once
                self._ticked_wall = 0.0
            else:
                self._transfers += 1
                awaited = self._in_flight.pop(value.merge_id, None) is not None
                if not awaited and self._graph.current_id(value.survivor) is None:
                    # A copy of one already handed over, to a profile forgotten since: no
                    # step waits for it, and its context must not outlive the erasure.
                    metrics.TRANSFERS_DROPPED.inc()
                    continue
                out.append(ForCustomer(value.survivor, value))
        self._resolve(aligner.release(now), out)
        self._mark(now, out)
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[IdentityOutput], bool]:
        now = self._config.clock()
        out: list[IdentityOutput] = []
        self._resolve(self._aligner.release(now), out)
        self._mark(now, out)
        return out, StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        now = self._config.clock()
        wake = self._aligner.next_release(now)
        if self._config.publish:
            heartbeat = self._marked_at + MARK_EVERY_MS
            wake = heartbeat if wake is None else min(wake, heartbeat)
        if self._model_keys and (not self._finished or self._config.capacity):
            # the workers' answers move as their timers fire: ask again shortly (the wall
            # clock here only paces the asking; replay's clock says nothing of it)
            return datetime.fromtimestamp(time.time() + RETICK_MS / 1000, UTC)
        return None if wake is None else datetime.fromtimestamp(max(wake, now) / 1000, UTC)

    def _resolve(self, events: list[Event], out: list[IdentityOutput]) -> None:
        graph = self._graph
        tells_kinds = self._config.rules.tells_kinds
        known = unknown = merges = refusals = erased = nobody = 0
        retention = self._config.rules.retention is not None
        for event in events:
            if retention and event.time // DAY_MS > self._swept_day:
                self._expire(event, out)
            if event.type == "feedback":
                customer = self._feedback_customer(event)
                out.append(ForCustomer(customer, event) if customer else forgotten_feedback(event))
                continue
            if event.type == ERASURE:
                erasures = graph.erase(event.identifiers)
                out.extend(erasure_routes(erasures, event))
                erased += len(erasures)
                nobody += not erasures
                continue
            resolution = graph.resolve(event.identifiers, event.time, event.event_id)
            if tells_kinds:
                event = event.with_profile(resolution.kinds, resolution.gained)
            # The operation number names a merge; most events merge nothing.
            routed = route(graph.sequence if resolution.merges else 0, resolution, event)
            out.extend(routed)
            if resolution.merges:  # the survivors now wait for the retired contexts
                for r in routed:
                    if isinstance(r, ForCustomer) and isinstance(r.item, Adopt):
                        self._in_flight[r.item.merge_id] = r.customer_id
            merges += len(resolution.merges)
            refusals += len(resolution.refusals) + len(event.blocked_identifiers)
            if resolution.known_person:
                known += 1
            else:
                unknown += 1
        self._merges += merges
        metrics.count_resolved(known, unknown, graph.profiles_created)
        metrics.count_merges(merges, refusals)
        metrics.count_erasures(erased, nobody)
        metrics.count_aligned(len(self._aligner), self._aligner.take_behind())

    def _expire(self, event: Event, out: list[IdentityOutput]) -> None:
        """A new day of event time: forget the profiles past the policy's retention by now,
        and their customers' context (as an erasure does, with no audit record)."""
        self._swept_day = event.time // DAY_MS
        expired = self._graph.expire(event.time)
        if expired:
            line = event.origin.line or 0
            ids = [c for e in expired for c in (e.customer_id, *e.retired)]
            out.extend(ForCustomer(c, Forget(event.time, line)) for c in ids)
            metrics.PROFILES_EXPIRED.inc(len(expired))

    def _mark(self, now: int, out: list[IdentityOutput]) -> None:
        """Say how far the input has got, when that changed (and, in Kafka mode, at least
        every :data:`MARK_EVERY_MS`)."""
        aligner = self._aligner
        self._finish_models(out)
        drained = (
            aligner.ended
            and not len(aligner)
            and self._transfers >= self._merges
            and self._all_answered()
        )
        settled = aligner.settled(now)
        if self._tick_keys:
            self._tick(aligner.settled(now, leave_out=MODELS_PART), out)
        state = (settled, drained)
        if state == self._marked and (
            not self._config.publish or now - self._marked_at < MARK_EVERY_MS
        ):
            return
        self._marked, self._marked_at = state, now
        end_at = now if drained and self._config.publish else None
        mark = FrontierMark(settled, drained, end_at, now, self._run)
        if self._config.publish:
            out.append(mark)
        else:
            self._config.frontier.apply(mark)

    def _all_answered(self) -> bool:
        """Without capacity, True; with it, whether the capacity owner has answered every
        request up to the end of input."""
        if not self._config.capacity:
            return True
        return self._past_end and self._answered >= self._ticked

    def _end(self) -> int | None:
        """Once every input partition has ended and every event has been released: the event
        time what the end fires goes up to, the wall clock (Kafka mode) or the replay's end;
        None before."""
        aligner = self._aligner
        ended = aligner.ended_but(MODELS_PART) if self._population else aligner.ended
        if len(aligner) or not ended:
            return None
        return self._config.clock() if self._config.publish else self._config.frontier.end_at

    def _finish_models(self, out: list[IdentityOutput]) -> None:
        """Once every input partition has ended and every event has been released, the
        population model's partition ends too (nothing more waits for a version), and every
        worker is told which version what is decided after the last event uses."""
        aligner = self._aligner
        if self._finished or not self._population or aligner.ended:
            return
        end = self._end()
        ready = aligner.clock_of(MODELS_PART)
        if end is None or ready is None or ready - 1 < end:
            return
        self._finished = True
        aligner.progress(Progress(MODELS_PART, None, caught_up=False, ended=True), 0)
        final = Final(ready - 1)
        out.extend(ForCustomer(key, final) for key in self._model_keys)

    def _tick(self, settled: int, out: list[IdentityOutput]) -> None:
        """Tell every journey worker every event before another multiple of the barrier's
        period has been sent (see :mod:`flows.barrier`): ``settled`` leaves out the
        population model's partition, which holds back only what is released."""
        every = self._config.barrier_every
        if every is None or settled <= NEVER:
            return
        end = self._end()
        past_end = False
        if end is not None:
            # Nothing more comes: the workers answer up to the end, not past it, so the
            # learner's snapshot stays where a later run (--stop-at-end, then more input)
            # goes on from; with capacity, just past it (said so: the learner takes it as
            # the end), so what was decided at the very end is answered.
            past_end = self._config.capacity
            settled = end + 1 if past_end else min(settled, end)
        if past_end and self._past_end:
            settled = self._ticked  # Kafka mode's end moves with the wall clock: hold it
        at = max(self._ticked, settled if past_end else settled - settled % every)
        wall = time.monotonic()
        settling = not self._finished or self._config.capacity
        again = settling and wall - self._ticked_wall >= RETICK_MS / 1000
        if at <= self._ticked and not again:
            return
        self._ticked, self._ticked_wall, self._past_end = at, wall, past_end
        out.extend(ForCustomer(key, Tick(at, w, past_end)) for w, key in enumerate(self._tick_keys))

    def _feedback_customer(self, event: Event) -> str | None:
        """The profile the feedback's action was for, as it is now called; None if the graph
        has forgotten it (erased, or past its retention)."""
        customer = customer_of_action_id(str(event.properties.get("action_id", "")))
        assert customer is not None  # ingest dead-letters feedback about unknown actions
        return self._graph.current_id(customer)

    def snapshot(self) -> Snapshot:
        sequence = self._graph.sequence
        if len(self._snapshots) == KEPT_SNAPSHOTS:
            self._graph.forget_undo(self._snapshots[0])
        self._snapshots.append(sequence)
        in_flight = dict(self._in_flight)
        aligned = self._aligner.snapshot()
        return sequence, aligned, self._merges, self._transfers, in_flight, self._lineage
