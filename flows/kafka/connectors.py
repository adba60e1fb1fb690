"""Kafka mode's edge: the input source and the output sink (settings are in
:mod:`flows.kafka.config`)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from flows import metrics
from flows.capacity import Answered, decode_answers
from flows.journey import wall_clock_ms
from flows.kafka.config import CLIENT_LOG, KafkaSettings, list_topics
from flows.kafka.health import Readiness
from flows.learner import decode_complete
from flows.progress import FrontierMark, InputFrontier
from operators.decisions.capacity import Answer
from operators.identity.alignment import NEVER, Progress
from operators.ingest import ClockState, Ingestor
from operators.learning.population import Complete, Versions
from operators.model.encoding import (
    DEAD_LETTERS,
    TRANSFERS,
    OutRecord,
    decode_transfer,
    replacement_for_too_large,
)
from operators.model.handover import Transfer
from operators.model.records import DeadLetter, Event, Origin
from operators.policy.compiled import Policy

log = logging.getLogger("concierge.kafka")

CONSUME_BATCH = 1000
IDLE_POLL_MS = 10
IDLE_POLL = timedelta(milliseconds=IDLE_POLL_MS)
GRANTS_WAIT_MS = 2
"""How long a fetch of ``<prefix>grants`` waits for records (and how soon an idle read of
it looks again): customers wait for its answers, one round of the capacity barrier each, so
it is read as soon as can be (a fetch waits about that long even when records come)."""
PROGRESS_EVERY_S = 0.25
"""A partition says how far it has read at least this often, changed or not: the identity
step takes a long silence for a stalled process (operators.identity.alignment.STALE_AFTER_MS)."""
FLUSH_TIMEOUT_S = 30.0

STOP = threading.Event()
"""Set by SIGTERM/SIGINT: sources end their input and the dataflow drains and exits."""


SourceState = tuple[int, ClockState | int | None]
"""A partition's next offset and its ingest clock (a single time in snapshots of earlier
versions)."""


class _EventPartition(StatefulSourcePartition[Event | DeadLetter | Progress, SourceState]):
    """One input partition: its records ingested where they are read, each batch followed
    by how far the partition has read (:class:`Progress`), for the identity step."""

    def __init__(
        self,
        settings: KafkaSettings,
        policy: Policy,
        topic: str,
        index: int,
        resume: SourceState | None,
        stop_at_end: bool,
        frontier: InputFrontier,
        readiness: Readiness | None = None,
    ) -> None:
        offset, clock = resume if resume is not None else (OFFSET_BEGINNING, None)
        self._offset = offset
        self._topic = topic
        self._index = index
        self._ingestor = Ingestor(policy, clock)
        self._known = metrics.type_labels(policy)
        self._dated = policy if policy.date_signals else None
        self._stop_at_end = stop_at_end
        self._ended = False
        self._awake: datetime | None = None
        self._name = f"{topic}#{index}"
        self._frontier = frontier
        self._caught_up = False
        """True once the broker said this partition was read to its end, until more comes."""
        self._told: Progress | None = None
        self._told_at = 0.0
        self._unanswered = readiness
        """Who waits for this partition's first answer from the brokers (None: it came)."""
        if readiness is not None:
            readiness.expect(self._name)
        self._lag = metrics.CONSUMER_LAG.labels(topic, str(index))
        self._consumer = Consumer(
            settings.config(
                **{
                    "group.id": "concierge-partition-assigned",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": 50,
                    # Each partition has its own consumer, and librdkafka's default lets each
                    # prefetch 64 MiB: a backlog cost hundreds of MiB that malloc kept.
                    "queued.max.messages.kbytes": PREFETCH_KIB,
                    "statistics.interval.ms": 5000,
                    "stats_cb": self._stats,
                    "error_cb": _client_error("consumer"),
                }
            )
        )
        self._consumer.assign([TopicPartition(topic, index, offset)])

    def next_batch(self) -> list[Event | DeadLetter | Progress]:
        if STOP.is_set():
            self._frontier.interrupted = True
            raise StopIteration
        if self._ended:
            # --stop-at-end: this partition is read; the input ends when the identity step
            # says the whole cluster's is (every partition read, every merge complete).
            if self._frontier.drained:
                raise StopIteration
            self._awake = datetime.now(UTC) + IDLE_POLL
            return self._tell(Progress(self._name, self._ingestor.clock, True, True), time.time())
        messages = self._consumer.consume(CONSUME_BATCH, 0)
        batch: list[Event | DeadLetter | Progress] = []
        ok: list[Event] = []
        bad: list[str] = []
        now = time.time()
        now_ms = int(now * 1000)
        ingest = self._ingestor.ingest
        caught_up = self._caught_up
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._ended = self._stop_at_end
                    caught_up = True
                    continue
                metrics.KAFKA_ERRORS.labels("consumer").inc()
                if error.fatal():
                    raise RuntimeError(f"reading {self._topic}[{self._index}]: {error.str()}")
                if error.code() in TOPIC_GONE and self._unanswered is None:
                    raise RuntimeError(
                        f"input topic {self._topic} (partition {self._index}) is gone while it "
                        f"was read ({error.str()}): was it deleted? run resumes only with the "
                        "topic its snapshots were taken from"
                    )
                log.warning("reading %s[%d]: %s", self._topic, self._index, error.str())
                continue
            if self._ended:
                break  # read to its end once: what comes after is for the next run
            offset: int | None = message.offset()
            kind, stamp = message.timestamp()
            record = ingest(
                message.value() or b"",
                Origin(topic=self._topic, partition=self._index, offset=offset, key=message.key()),
                # A producer sets its own CreateTime: it bounds the future only up to now.
                now_ms if kind == TIMESTAMP_NOT_AVAILABLE else min(stamp, now_ms),
                now,
            )
            if isinstance(record, Event):
                ok.append(record)
            else:
                bad.append(record.reason.value)
            batch.append(record)
            self._offset = (offset if offset is not None else self._offset) + 1
            caught_up = False
        if self._unanswered is not None and (caught_up or ok or bad):
            self._unanswered.reached(self._name)
            self._unanswered = None
        metrics.count_ingested(ok, bad, self._known)
        if self._dated is not None:
            metrics.count_bad_dates(self._dated, ok)
        self._awake = None if messages else datetime.now(UTC) + IDLE_POLL
        self._caught_up = caught_up
        batch.extend(
            self._tell(Progress(self._name, self._ingestor.clock, caught_up, self._ended), now)
        )
        return batch

    def _tell(self, progress: Progress, now: float) -> list[Progress]:
        """How far this partition has read, when that changed or at least every
        :data:`PROGRESS_EVERY_S`."""
        if progress == self._told and now - self._told_at < PROGRESS_EVERY_S:
            return []
        self._told, self._told_at = progress, now
        return [progress]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> SourceState:
        return (self._offset, self._ingestor.state)

    def close(self) -> None:
        self._consumer.close()

    def _stats(self, stats_json: str) -> None:
        try:
            stats = json.loads(stats_json)["topics"][self._topic]["partitions"][str(self._index)]
            end = stats.get("ls_offset", stats.get("hi_offset", -1))
        except (KeyError, ValueError):
            return
        if end >= 0 and self._offset >= 0:
            self._lag.set(max(end - self._offset, 0))


Looped = TypeVar("Looped")


class _LoopPartition(StatefulSourcePartition[Looped, SourceState]):
    """Reads what the flow sent round the loop back in from one partition of an internal
    topic: merged contexts (``<prefix>transfers``), or the learner's whole periods of the
    population model (``<prefix>models``); ``decode`` makes each record the items it
    stands for, and a record it cannot read is counted under ``what`` and skipped."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        index: int,
        offset: int,
        stop_at_end: bool,
        frontier: InputFrontier,
        decode: Callable[[bytes], list[Looped]],
        what: str,
        noun: str,
        wait_ms: int = 20,
    ) -> None:
        self._offset = offset
        self._topic, self._index = topic, index
        self._stop_at_end = stop_at_end
        self._frontier = frontier
        self._decode, self._what, self._noun = decode, what, noun
        self._awake: datetime | None = None
        self._idle = timedelta(milliseconds=min(wait_ms, IDLE_POLL_MS))
        self._consumer = _assigned_consumer(
            settings, topic, index, offset, partition_eof=True, wait_ms=wait_ms
        )

    def next_batch(self) -> list[Looped]:
        if STOP.is_set():
            raise StopIteration
        messages = self._consumer.consume(CONSUME_BATCH, 0)
        items: list[Looped] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    metrics.KAFKA_ERRORS.labels("consumer").inc()
                    log.warning("reading %s[%d]: %s", self._topic, self._index, error.str())
                continue
            offset = message.offset()
            self._offset = (offset if offset is not None else self._offset) + 1
            try:
                items.extend(self._decode(message.value() or b""))
            except (ValueError, KeyError, TypeError):
                metrics.KAFKA_ERRORS.labels(self._what).inc()
                log.error("skipping a record on %s that is not %s", self._topic, self._noun)
        if self._stop_at_end and not items and self._frontier.drained:
            raise StopIteration
        self._awake = None if messages else datetime.now(UTC) + self._idle
        return items

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> SourceState:
        return (self._offset, None)

    def close(self) -> None:
        self._consumer.close()


def read_versions(settings: KafkaSettings, versions: Versions, timeout: float = 60) -> int:
    """Fill this process's store of the population model with every period on
    ``<prefix>models``, before the flow starts: a process that resumes may decide again what
    the run before had decided (an event a merge held back, when its context comes back),
    with the version that run had, before its own models partition has read it again.
    How many records it read."""
    consumer = _assigned_consumer(
        settings, settings.models_topic(), 0, OFFSET_BEGINNING, partition_eof=True
    )
    read = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return read
                raise RuntimeError(f"cannot read {settings.models_topic()}: {error.str()}")
            for item in decode_complete(message.value() or b""):
                if isinstance(item, Complete):
                    versions.take(item)
            read += 1
        raise RuntimeError(f"cannot read {settings.models_topic()} to its end in {timeout:g} s")
    finally:
        consumer.close()


def _transfers(value: bytes) -> list[Transfer]:
    return [decode_transfer(value)]


def _assigned_consumer(
    settings: KafkaSettings,
    topic: str,
    index: int,
    offset: int,
    partition_eof: bool = False,
    wait_ms: int = 20,
) -> Consumer:
    """A consumer of one partition of an internal topic from ``offset``, assigned (no
    consumer group: joining one takes seconds)."""
    consumer = Consumer(
        settings.config(
            **{
                "group.id": "concierge-partition-assigned",
                "enable.auto.commit": False,
                "enable.partition.eof": partition_eof,
                "fetch.wait.max.ms": wait_ms,
                "error_cb": _client_error("consumer"),
            }
        )
    )
    consumer.assign([TopicPartition(topic, index, offset)])
    return consumer


Read = Event | DeadLetter | Progress | Transfer | Complete | Answer | Answered


class KafkaEventSource(FixedPartitionedSource[Read, SourceState]):
    """Every partition of the input topics, assigned to workers by Bytewax (no consumer group);
    each partition ingests its records where it reads them. The transfers topic's partitions
    carry merged contexts back in."""

    def __init__(
        self,
        settings: KafkaSettings,
        policy: Policy,
        frontier: InputFrontier,
        stop_at_end: bool = False,
        readiness: Readiness | None = None,
    ) -> None:
        self._settings = settings
        self._policy = policy
        self._frontier = frontier
        self._stop_at_end = stop_at_end
        self._readiness = readiness

    def _learns_population(self) -> bool:
        learning = self._policy.learning
        return learning is not None and learning.population_every is not None

    def list_parts(self) -> list[str]:
        models = self._settings.models_topic()
        grants = self._settings.grants_topic()
        # Without a population model (or capacity), the topic an earlier run's policy wrote
        # is still listed (never read): a snapshot names its partition, and Bytewax cannot
        # resume a partition it is not given.
        learns = self._learns_population()
        paced = self._policy.capacity is not None
        if not learns or not paced:
            existing = list_topics(self._settings, 30)
            learns = learns or models in existing
            paced = paced or grants in existing
        return partitions_of(
            self._settings,
            [*self._settings.input_topics(), self._settings.transfers_topic()]
            + ([models] if learns else [])
            + ([grants] if paced else []),
        )

    def build_part(
        self, step_id: str, for_part: str, resume_state: SourceState | None
    ) -> (
        _EventPartition
        | _LoopPartition[Transfer]
        | _LoopPartition[Complete | Progress]
        | _LoopPartition[Answer | Answered]
        | _UnreadPartition
    ):
        topic, _, index = for_part.rpartition("#")
        if topic == self._settings.grants_topic():
            if self._policy.capacity is None:
                return _UnreadPartition(resume_state)
            # from where the snapshot read to: the answers after it go to customers who
            # still wait for them (the owner's snapshot answered them once)
            return _LoopPartition(
                self._settings,
                topic,
                int(index),
                resume_state[0] if resume_state is not None else OFFSET_BEGINNING,
                self._stop_at_end,
                self._frontier,
                decode_answers,
                "grants",
                "a capacity answer",
                GRANTS_WAIT_MS,
            )
        if topic == self._settings.models_topic() and not self._learns_population():
            return _UnreadPartition(resume_state)
        if topic == self._settings.models_topic():
            # read from its start whatever the snapshot says: the periods are the same
            # whatever run sent them, and a process that starts has none of them yet
            return _LoopPartition(
                self._settings,
                topic,
                int(index),
                OFFSET_BEGINNING,
                self._stop_at_end,
                self._frontier,
                decode_complete,
                "models",
                "a period of the population model",
            )
        if topic == self._settings.transfers_topic():
            offset = resume_state[0] if resume_state is not None else OFFSET_BEGINNING
            return _LoopPartition(
                self._settings,
                topic,
                int(index),
                offset,
                self._stop_at_end,
                self._frontier,
                _transfers,
                "transfers",
                "a transfer",
            )
        return _EventPartition(
            self._settings,
            self._policy,
            topic,
            int(index),
            resume_state,
            self._stop_at_end,
            self._frontier,
            self._readiness,
        )


class _UnreadPartition(StatefulSourcePartition[Read, SourceState]):
    """A partition this run does not read (the population model's, under a policy that has
    none now): it ends at once, and keeps the place it was read to."""

    def __init__(self, resume_state: SourceState | None) -> None:
        self._state: SourceState = resume_state if resume_state is not None else (0, None)

    def next_batch(self) -> list[Read]:
        raise StopIteration

    def snapshot(self) -> SourceState:
        return self._state


def partitions_of(settings: KafkaSettings, topics: list[str]) -> list[str]:
    """``topic#index`` for every partition of ``topics``: the names the sources and the
    identity step's aligner use."""
    admin = AdminClient(settings.config())
    parts = []
    for topic in topics:
        metadata = admin.list_topics(topic, timeout=30).topics[topic]
        if metadata.error is not None:
            raise RuntimeError(f"cannot read topic {topic}: {metadata.error.str()}")
        parts += [f"{topic}#{index}" for index in sorted(metadata.partitions)]
    return parts


class FrontierReader:
    """Reads ``<prefix>frontier`` in a thread of its own and applies each mark to this
    process's :class:`InputFrontier`: how far the identity step, wherever it runs, has
    resolved the cluster's input.

    A mark published before this start is an earlier run's: it tells of input this run has
    not resolved again yet (after a kill -9, the snapshot it resumes from is older), and
    applied it would fire timers before the events they wait for. Reading from the topic's
    end is not enough to leave them out (Tansu answers with the start of its last batch),
    so each mark's publication time is compared with this start's. In a cluster it is
    another process's clock: a skew shorter than a restart takes leaves the rule whole.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        frontier: InputFrontier,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._frontier = frontier
        self._started = clock()
        self._stop = threading.Event()
        self._consumer = _assigned_consumer(settings, settings.frontier_topic(), 0, OFFSET_END)
        self._thread = threading.Thread(target=self._read, name="frontier", daemon=True)

    def start(self) -> FrontierReader:
        self._thread.start()
        return self

    def _read(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.1)
            if message is None:
                self._report()
                continue
            if message.error() is not None:
                continue
            try:
                mark = FrontierMark.decode(message.value() or b"")
            except (ValueError, KeyError, TypeError):
                metrics.KAFKA_ERRORS.labels("frontier").inc()
                continue
            if mark.published < self._started:
                continue
            self._frontier.apply(mark)
            self._report()

    def _report(self) -> None:
        settled = self._frontier.settled
        if settled > NEVER:
            metrics.TIMERS_HELD.set(max(time.time() - settled / 1000, 0.0))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


TOPIC_GONE = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.UNKNOWN_TOPIC_ID,
    }
)
"""What a consumer hears of a partition that was there and is gone (once it has been read:
just after a topic is created, brokers may not know it everywhere yet)."""

PREFETCH_KIB = 4096
"""How much each input partition's consumer reads ahead of the flow (KiB): about 15,000
events of 250 bytes, a second of the flow's work."""
SIZE_REFUSALS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
WAIT_REPORT_S = 10.0


class _ProducerPartition(StatelessSinkPartition[OutRecord]):
    """Writes a batch, then waits until the brokers have acknowledged all of it.

    A stalled broker is waited for (librdkafka retries until ``message.timeout.ms``), with a
    log line every 10 s. A record the brokers refuse as too large is replaced by what
    :func:`replacement_for_too_large` says, counted and logged. Any other failed delivery
    fails the batch: the flow stops before its next snapshot, so the records are written
    again when it resumes; nothing is skipped.
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self._prefix = settings.prefix
        self._failures: list[str] = []
        self._too_large: list[tuple[str, bytes | None, bytes]] = []
        self._producer = Producer(
            settings.config(
                **{
                    "linger.ms": 5,
                    "acks": "all",
                    "delivery.report.only.error": True,
                    "on_delivery": self._delivered,
                    "error_cb": _client_error("producer"),
                }
            )
        )

    def write_batch(self, items: list[OutRecord]) -> None:
        prefix = self._prefix
        for record in items:
            self._produce(prefix + record.stream, record.value, record.key)
        self._flush()
        replaced: set[bytes] = set()
        while self._too_large:
            refused, self._too_large = self._too_large, []
            for topic, key, value in refused:
                self._replace(topic, key, value, replaced)
            self._flush()

    def _produce(self, topic: str, value: bytes, key: bytes | None) -> None:
        waited = time.monotonic()
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._delivered)
                return
            except BufferError:
                self._producer.poll(0.05)
                if time.monotonic() - waited > WAIT_REPORT_S:
                    waited = time.monotonic()
                    log.warning("the producer's queue is full: waiting for the brokers")
            except KafkaException as err:
                if err.args[0].code() not in SIZE_REFUSALS:
                    raise
                self._too_large.append((topic, key, value))
                return

    def _delivered(self, error: KafkaError | None, message: Any) -> None:
        if error is None:
            return
        if error.code() in SIZE_REFUSALS:
            self._too_large.append((message.topic(), message.key(), message.value()))
        else:
            self._failures.append(f"{message.topic()}: {error.str()}")

    def _replace(self, topic: str, key: bytes | None, value: bytes, replaced: set[bytes]) -> None:
        stream = topic[len(self._prefix) :]
        metrics.RECORDS_REFUSED.labels(stream).inc()
        if value in replaced:
            log.error(
                "the brokers refused even the %s-byte replacement of a record too large for "
                "%s; it is not written (check the topic's max.message.bytes)",
                f"{len(value):,}",
                topic,
                extra={"bytes": len(value), "topic": topic},
            )
            return
        target, replacement = replacement_for_too_large(stream, value)
        log.error(
            "the brokers refused a %s-byte record for %s as too large: wrote %s to %s instead",
            f"{len(value):,}",
            topic,
            "it without its raw text"
            if stream == DEAD_LETTERS
            else "it without the merged context"
            if stream == TRANSFERS
            else "a dead letter (output_too_large)",
            self._prefix + target,
            extra={"bytes": len(value), "topic": topic},
        )
        replaced.add(replacement)
        self._produce(self._prefix + target, replacement, key)

    def _flush(self) -> None:
        started = reported = time.monotonic()
        remaining = self._producer.flush(1.0)
        while remaining:
            now = time.monotonic()
            if now - reported >= WAIT_REPORT_S:
                reported = now
                log.warning(
                    "waiting for the brokers to acknowledge %s records (%.0fs so far)",
                    f"{remaining:,}",
                    now - started,
                    extra={"records": remaining, "waited_s": round(now - started, 1)},
                )
            remaining = self._producer.flush(1.0)
        if self._failures:
            failures, self._failures = Counter(self._failures), []
            problems = "; ".join(
                f"{problem} ({n:,} records)" if n > 1 else problem
                for problem, n in failures.most_common(5)
            )
            raise RuntimeError(f"writing to Kafka failed: {problems}")

    def close(self) -> None:
        self._flush()


class KafkaRecordSink(DynamicSink[OutRecord]):
    """Writes each record to ``<prefix><stream>``, flushing (and failing loudly) per batch, so a
    snapshot is never taken past records that were not acknowledged."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ProducerPartition:
        return _ProducerPartition(self._settings)


def _client_error(client: str) -> Any:
    def report(error: KafkaError) -> None:
        metrics.KAFKA_ERRORS.labels(client).inc()
        CLIENT_LOG.warning("%s: %s", client, error.str())

    return report
