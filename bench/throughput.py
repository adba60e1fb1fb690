"""Throughput and latency of the Concierge flow, each against a baseline measured in the same run.

What is measured, on one embedded Tansu broker and the same preloaded events
(``flows.commands.generator``, about 235 bytes each, a few broken on purpose):

(a) baseline: a plain confluent-kafka loop that reads every partition to its end, runs the
    same parse + validate (``Ingestor.ingest``) on each record and writes one small JSON
    record per input to an output topic. This is about as fast as Python can move these
    events through Kafka, so it is the yardstick.
(b) a Bytewax passthrough flow doing the same parse: ``KafkaSource`` -> ``flat_map_batch``
    -> ``KafkaSink``, run in this process. The gap between (a) and (b) is what the Bytewax
    runtime costs.
(c) the Concierge flow itself (``concierge run --stop-at-end`` in a subprocess), timed from
    process start to exit.

Each is also run once on empty topics: that is its fixed cost (interpreter start-up and
imports for (c), building the dataflow, finding the partitions, reaching their end), so the
steady-state rate (events / (seconds - fixed seconds)) can be told apart from the start-up.

This machine is shared and noisy (two cores, other jobs come and go), so absolute events/s
mean little from one run to the next. What matters are the ratios between numbers taken
seconds apart in the same run on the same data: ``c/a`` is the share of the bare Kafka +
parse throughput the Concierge flow keeps, ``c/b`` the same against a Bytewax flow that
does nothing but parse. ``--repeat K`` runs every measurement K times, interleaved, and
keeps the best (least disturbed) of each.

Then the latency at a fixed offered rate: ``concierge run`` (no ``--stop-at-end``) on fresh
topics, fed ``--rate`` events/s for ``--latency-seconds`` seconds of realistic traffic
(``product_view`` filler plus customers who search help three times, the reference policy's
``help_search_friction`` signal -> ``help_offer`` on ``in_app``). The latency of an action is
its arrival on ``actions.in_app`` minus the send time of the last event that triggered it.
Finally the flow gets SIGTERM and must exit 0 within 10 s.

The numbers are printed as a table and written to ``bench/results.json``. The exit status is
non-zero when the Concierge flow failed, lost input (no decisions or actions, or not the
dead letters the baseline found), or missed actions in the latency run.
"""

from __future__ import annotations

import argparse
import ctypes
import heapq
import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.connectors.kafka import (
    KafkaError as BytewaxKafkaError,
)
from bytewax.connectors.kafka import (
    KafkaSink,
    KafkaSinkMessage,
    KafkaSource,
    KafkaSourceMessage,
)
from bytewax.dataflow import Dataflow, Stream
from bytewax.testing import run_main
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)

from flows.commands.generator import Generator
from flows.kafka.broker import EmbeddedBroker
from flows.kafka.config import KafkaSettings, ensure_topics
from operators.ingest import Ingestor
from operators.model.records import DeadLetter, Event, Origin
from operators.model.timefmt import format_ms
from operators.policy.compiled import Policy
from operators.policy.load import load_policy

REPO = Path(__file__).resolve().parents[1]
DEFAULT_POLICY = REPO / "examples" / "policy.yaml"
RESULTS = Path(__file__).resolve().with_name("results.json")
PARTITIONS = 3
QUIET = {"log_level": "0"}
"""librdkafka properties for this script's admin clients: no informational logs."""
BATCH = 1000
STOP_TIMEOUT_S = 10.0
FLOW_TIMEOUT_S = 600.0
WARMUP_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 10.0
UNDRAINED = "stopped before the dataflow drained"
"""What ``concierge run`` logs when SIGTERM's grace period ran out (it still exits 0)."""
SEARCHES = 3
"""help_search events a stuck customer sends: the reference policy's ``at_least``."""
SEARCH_GAP_S = 1.0
"""Seconds between a stuck customer's searches (the policy wants them within an hour)."""
FILLER_CUSTOMERS = 2000
PRODUCTS = 400

Record = Event | DeadLetter


# -- Kafka helpers -------------------------------------------------------------------------


def consumer_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """A consumer that is only ever ``assign``-ed (Tansu's group joins are slow)."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": "concierge-bench",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 50,
        "log_level": 0,
        **extra,
    }


def producer_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "log_level": 0, **extra}


def partitions_of(consumer: Consumer, topic: str) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=30).topics[topic]
    if metadata.error is not None:
        raise RuntimeError(f"cannot read topic {topic}: {metadata.error.str()}")
    return sorted(metadata.partitions)


def assign_all(consumer: Consumer, topics: Sequence[str]) -> set[tuple[str, int]]:
    """Assign every partition of ``topics`` from the beginning; return them."""
    parts = [(topic, p) for topic in topics for p in partitions_of(consumer, topic)]
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for topic, p in parts])
    return set(parts)


def produce(producer: Producer, topic: str, value: bytes, key: bytes | None) -> None:
    """Produce, waiting for room when the local queue is full."""
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.05)


def flush(producer: Producer, what: str) -> None:
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{what}: {remaining} records not acknowledged")


def count_to_end(bootstrap: str, topics: Sequence[str], timeout: float = 120.0) -> dict[str, int]:
    """Read every partition of ``topics`` to EOF and count the records of each topic
    (Tansu's watermarks are approximate, so reading is the only honest count)."""
    consumer = Consumer(consumer_config(bootstrap))
    counts = dict.fromkeys(topics, 0)
    try:
        open_parts = assign_all(consumer, topics)
        deadline = time.monotonic() + timeout
        while open_parts:
            if time.monotonic() > deadline:
                raise RuntimeError(f"reading {sorted(open_parts)} did not reach the end")
            for message in consumer.consume(BATCH, 0.2):
                error = message.error()
                if error is None:
                    counts[str(message.topic())] += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    open_parts.discard((message.topic(), message.partition()))
                else:
                    raise RuntimeError(f"reading {message.topic()}: {error.str()}")
    finally:
        consumer.close()
    return counts


def key_of(raw: bytes) -> bytes | None:
    """The first identifier's value, so a customer's events share a partition (as a real
    producer would key them); None (any partition) for a record that does not parse."""
    try:
        identifiers = orjson.loads(raw).get("identifiers")
        return str(next(iter(identifiers.values()))).encode()
    except (orjson.JSONDecodeError, AttributeError, StopIteration, TypeError):
        return None


def preload(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    producer = Producer(
        producer_config(
            bootstrap,
            **{"linger.ms": 50, "batch.num.messages": 10000, "queue.buffering.max.ms": 50},
        )
    )
    for key, value in records:
        produce(producer, topic, value, key)
    flush(producer, f"preloading {topic}")


def create_topics(bootstrap: str, topics: Sequence[str]) -> None:
    ensure_topics(KafkaSettings(bootstrap, "", QUIET, partitions=PARTITIONS), list(topics))


# -- the shared parse ----------------------------------------------------------------------


def encode(record: Record) -> bytes:
    """What (a) and (b) write for each input: a small dict of an event, or the dead letter."""
    if isinstance(record, DeadLetter):
        return orjson.dumps(record.as_record())
    return orjson.dumps(
        {
            "event_id": record.event_id,
            "type": record.type,
            "time": record.time,
            "identifiers": {kind: i.digest for kind, i in record.identifiers.items()},
            "properties": record.properties,
        }
    )


@dataclass(slots=True)
class Tally:
    """What a passthrough saw: records in, and how many of them were valid events."""

    records: int = 0
    events: int = 0

    @property
    def dead_letters(self) -> int:
        return self.records - self.events


class Parser:
    """``Ingestor.ingest`` with one ingest clock per input partition, as Concierge has."""

    def __init__(self, policy: Policy, topic: str) -> None:
        self._policy = policy
        self._topic = topic
        self._ingestors: dict[int, Ingestor] = {}
        self.tally = Tally()

    def parse(
        self,
        value: bytes | None,
        key: bytes | None,
        partition: int | None,
        offset: int | None,
        timestamp: tuple[int, int] | None,
        now: float,
    ) -> bytes:
        ingestor = self._ingestors.get(partition or 0)
        if ingestor is None:
            ingestor = self._ingestors[partition or 0] = Ingestor(self._policy)
        kind, stamp = timestamp or (TIMESTAMP_NOT_AVAILABLE, 0)
        record = ingestor.ingest(
            value or b"",
            Origin(topic=self._topic, partition=partition, offset=offset, key=key),
            None if kind == TIMESTAMP_NOT_AVAILABLE else stamp,
            now,
        )
        self.tally.records += 1
        self.tally.events += isinstance(record, Event)
        return encode(record)


# -- (a) the baseline ----------------------------------------------------------------------


def run_baseline(bootstrap: str, policy: Policy, topic: str, out_topic: str) -> tuple[float, Tally]:
    """The plain confluent-kafka loop; return its wall time and what it saw."""
    consumer = Consumer(consumer_config(bootstrap))
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 5, "acks": "all"}))
    parser = Parser(policy, topic)
    try:
        start = time.perf_counter()
        open_parts = assign_all(consumer, [topic])
        while open_parts:
            messages = consumer.consume(BATCH, 0.1)
            now = time.time()
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"baseline reading {topic}: {error.str()}")
                    open_parts.discard((message.topic(), message.partition()))
                    continue
                key = message.key()
                value = parser.parse(
                    message.value(),
                    key,
                    message.partition(),
                    message.offset(),
                    message.timestamp(),
                    now,
                )
                produce(producer, out_topic, value, key)
            producer.poll(0)
        flush(producer, "baseline")
        return time.perf_counter() - start, parser.tally
    finally:
        consumer.close()


# -- (b) the Bytewax passthrough -----------------------------------------------------------

SourceItem = (
    KafkaSourceMessage[bytes | None, bytes | None] | BytewaxKafkaError[bytes | None, bytes | None]
)
SinkItem = KafkaSinkMessage[bytes | None, bytes]


def passthrough_flow(
    parser: Parser,
    bootstrap: str,
    topic: str,
    out_topic: str,
    between: Callable[[Stream[SinkItem]], Stream[SinkItem]] | None = None,
) -> Dataflow:
    """KafkaSource -> the same parse -> KafkaSink (with ``between``'s steps before the sink:
    ``bench/budget.py`` times what steps cost)."""

    def parse_batch(items: list[SourceItem]) -> list[SinkItem]:
        now = time.time()
        out: list[SinkItem] = []
        for item in items:
            if isinstance(item, BytewaxKafkaError):
                raise RuntimeError(f"passthrough reading {topic}: {item.err.str()}")
            value = parser.parse(
                item.value, item.key, item.partition, item.offset, item.timestamp, now
            )
            out.append(KafkaSinkMessage(item.key, value))
        return out

    flow = Dataflow("bench_passthrough")
    messages = op.input(
        "read",
        flow,
        KafkaSource(
            [bootstrap],
            [topic],
            tail=False,
            add_config={"fetch.wait.max.ms": "50", "log_level": "0"},
        ),
    )
    records = op.flat_map_batch("parse", messages, parse_batch)
    if between is not None:
        records = between(records)
    op.output(
        "write",
        records,
        KafkaSink(
            [bootstrap], out_topic, add_config={"linger.ms": "5", "acks": "all", "log_level": "0"}
        ),
    )
    return flow


def run_passthrough(
    bootstrap: str, policy: Policy, topic: str, out_topic: str
) -> tuple[float, Tally]:
    """The Bytewax flow, in this process; return its wall time and what it saw."""
    parser = Parser(policy, topic)
    flow = passthrough_flow(parser, bootstrap, topic, out_topic)
    start = time.perf_counter()
    run_main(flow)  # type: ignore[no-untyped-call]
    return time.perf_counter() - start, parser.tally


# -- (c) the Concierge flow ----------------------------------------------------------------


def concierge_command() -> list[str]:
    script = Path(sys.executable).with_name("concierge")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "flows.cli"]


def _death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when the benchmark dies, so no flow
    outlives it. libc is loaded here, in the parent: the child (forked from a process with
    librdkafka threads) only makes the one call."""
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_death_signal() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return set_death_signal


class ConciergeProcess:
    """``concierge run`` on its own topic prefix with fresh recovery and state directories;
    a context manager that always ends the process."""

    def __init__(
        self,
        bootstrap: str,
        policy_path: Path,
        prefix: str,
        workdir: Path,
        stop_at_end: bool,
        extra: Sequence[str] = (),
        tree: Path | None = None,
    ) -> None:
        self.log_path = workdir / f"{prefix.rstrip('.')}.log"
        self._command = [
            # e.g. CONCIERGE_BENCH_WRAP="py-spy record -f raw -o flame.txt --": profile the run
            *os.environ.get("CONCIERGE_BENCH_WRAP", "").split(),
            *concierge_command(),
            "run",
            "--policy",
            str(policy_path),
            "--brokers",
            bootstrap,
            "--topic-prefix",
            prefix,
            "--recovery-dir",
            str(workdir / prefix / "recovery"),
            "--state-dir",
            str(workdir / prefix / "state"),
            "--metrics-port",
            "0",
            *(["--stop-at-end"] if stop_at_end else []),
            # e.g. CONCIERGE_BENCH_RUN_ARGS="--max-idle-ms 100": the same run with other flags
            *os.environ.get("CONCIERGE_BENCH_RUN_ARGS", "").split(),
            *extra,
        ]
        self._env = None
        if tree is not None:  # another commit's code, e.g. a worktree of the release before
            self._env = {**os.environ, "PYTHONPATH": str(tree)}
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self._command,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                preexec_fn=_death_signal(),
            )

    def wait(self, timeout: float) -> int:
        assert self._process is not None
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise FlowFailed(f"concierge run still running after {timeout:.0f}s") from None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def exited(self) -> bool:
        return self._process is None or self._process.poll() is not None

    def stop(self, timeout: float) -> tuple[int | None, float]:
        """SIGTERM; return the exit code (None if it had to be killed) and how long it took."""
        assert self._process is not None
        start = time.perf_counter()
        self._process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.perf_counter() - start

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> ConciergeProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def concierge_topics(bootstrap: str, policy: Policy, prefix: str) -> KafkaSettings:
    """Create every topic of ``prefix`` up front, so the timed run creates none."""
    settings = KafkaSettings(bootstrap, prefix, QUIET, partitions=PARTITIONS)
    ensure_topics(settings, settings.input_topics() + settings.output_topics(policy))
    return settings


def time_concierge(
    bootstrap: str,
    policy_path: Path,
    prefix: str,
    workdir: Path,
    tree: Path | None = None,
    extra: Sequence[str] = (),
) -> float:
    """Run ``concierge run --stop-at-end`` on ``prefix`` (with the code at ``tree``, and the
    flags ``extra``, if given); return process start to exit."""
    with ConciergeProcess(
        bootstrap, policy_path, prefix, workdir, stop_at_end=True, extra=extra, tree=tree
    ) as flow:
        start = time.perf_counter()
        code = flow.wait(FLOW_TIMEOUT_S)
        elapsed = time.perf_counter() - start
        if code != 0:
            raise FlowFailed(f"concierge run exited {code}:\n{flow.log_tail()}")
    return elapsed


class FlowFailed(RuntimeError):
    """The Concierge flow exited badly or did not do its work."""


# -- the throughput rounds -----------------------------------------------------------------

NAMES = ("baseline", "bytewax", "concierge")
RATIOS = (
    ("b/a", "bytewax", "baseline"),
    ("c/a", "concierge", "baseline"),
    ("c/b", "concierge", "bytewax"),
    ("c/c0", "concierge", "old"),
    ("c1/c", "compared", "concierge"),
)
"""Each ratio's label, numerator and denominator: events/s over events/s."""


@dataclass(slots=True)
class Runs:
    """Wall times of one measurement over the repeats, on the events and on empty topics
    (its fixed cost: start-up, finding the partitions, reaching their end)."""

    seconds: list[float] = field(default_factory=list)
    empty: list[float] = field(default_factory=list)

    def best(self) -> float:
        return min(self.seconds)

    def fixed(self) -> float:
        return min(self.empty)


@dataclass(slots=True)
class Throughput:
    """Everything the throughput rounds measured."""

    runs: dict[str, Runs] = field(default_factory=lambda: {name: Runs() for name in NAMES})
    baseline_tally: Tally = field(default_factory=Tally)
    bytewax_tally: Tally = field(default_factory=Tally)
    concierge_counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Setup:
    """What every measurement shares: the broker, the policy, the events, a scratch dir."""

    bootstrap: str
    policy: Policy
    policy_path: Path
    records: Sequence[tuple[bytes | None, bytes]]
    workdir: Path
    old_tree: Path | None = None
    """``--old-tree``: another commit's code, whose flow is timed as (c0) beside (c)."""
    compare_policy: Path | None = None
    """``--compare-policy``: another policy, with which the flow is timed as (c1) beside (c)."""
    compare_args: tuple[str, ...] = ()
    """``--compare-args``: other flags of ``concierge run``, with which (c1) is timed."""


def measure_round(setup: Setup, round_no: int, result: Throughput) -> None:
    """One of each measurement, (a) (b) (c), on the same preloaded data and on empty topics."""
    bootstrap, policy = setup.bootstrap, setup.policy
    source, empty = f"bench.input.{round_no}", f"bench.empty.{round_no}"
    outs = [f"bench.out.{name}.{round_no}" for name in ("a", "b", "a-empty", "b-empty")]
    create_topics(bootstrap, [source, empty, *outs])
    preload(bootstrap, source, setup.records)
    runs = result.runs

    seconds, result.baseline_tally = run_baseline(bootstrap, policy, source, outs[0])
    note(runs["baseline"].seconds, "(a) baseline", seconds)
    note(
        runs["baseline"].empty,
        "(a) empty topic",
        run_baseline(bootstrap, policy, empty, outs[2])[0],
    )

    seconds, result.bytewax_tally = run_passthrough(bootstrap, policy, source, outs[1])
    note(runs["bytewax"].seconds, "(b) bytewax", seconds)
    note(
        runs["bytewax"].empty,
        "(b) empty topic",
        run_passthrough(bootstrap, policy, empty, outs[3])[0],
    )

    empty_prefix = f"bench.empty{round_no}."
    concierge_topics(bootstrap, policy, empty_prefix)
    seconds = time_concierge(bootstrap, setup.policy_path, empty_prefix, setup.workdir)
    note(runs["concierge"].empty, "(c) empty topics", seconds)

    prefix = f"bench.c{round_no}."
    settings = concierge_topics(bootstrap, policy, prefix)
    preload(bootstrap, settings.events_topic(), setup.records)
    seconds = time_concierge(bootstrap, setup.policy_path, prefix, setup.workdir)
    note(runs["concierge"].seconds, "(c) concierge", seconds)
    counts = count_to_end(bootstrap, settings.output_topics(policy))
    result.concierge_counts = {topic[len(prefix) :]: n for topic, n in counts.items()}

    if setup.old_tree is not None:
        old = runs.setdefault("old", Runs())
        for what, into, records in (("empty", old.empty, ()), ("c0", old.seconds, setup.records)):
            prefix = f"bench.old-{what}{round_no}."  # its own topics and directories
            settings = concierge_topics(bootstrap, policy, prefix)
            if records:
                preload(bootstrap, settings.events_topic(), records)
            seconds = time_concierge(
                bootstrap, setup.policy_path, prefix, setup.workdir, setup.old_tree
            )
            note(into, f"(c0) {'empty topics' if not records else 'old tree'}", seconds)

    if setup.compare_policy is not None or setup.compare_args:
        compared_path = setup.compare_policy or setup.policy_path
        other = load_policy(compared_path.read_text(encoding="utf-8"), "compared")
        compared = runs.setdefault("compared", Runs())
        for what, into, records in (
            ("empty", compared.empty, ()),
            ("c1", compared.seconds, setup.records),
        ):
            prefix = f"bench.cmp-{what}{round_no}."
            settings = concierge_topics(bootstrap, other, prefix)
            if records:
                preload(bootstrap, settings.events_topic(), records)
            seconds = time_concierge(
                bootstrap, compared_path, prefix, setup.workdir, extra=setup.compare_args
            )
            note(into, f"(c1) {'empty topics' if not records else 'compared'}", seconds)


def note(into: list[float], what: str, seconds: float) -> None:
    into.append(seconds)
    progress(f"  {what:<18}{seconds:7.2f} s")


# -- latency at a fixed rate ---------------------------------------------------------------


class TrafficMix:
    """The offered traffic, slot by slot: ``product_view`` filler from many customers, and
    stuck customers who each send ``SEARCHES`` help searches ``SEARCH_GAP_S`` apart."""

    def __init__(self, tag: str, rate: float, search_share: float, seed: int) -> None:
        self._tag = tag
        self._rng = random.Random(seed)
        self._gap = max(1, round(rate * SEARCH_GAP_S))
        self._start_share = search_share / SEARCHES
        self._due: list[tuple[int, int, str, int]] = []
        self._stuck = 0
        self.searches = 0
        self.completed = 0
        """Stuck customers whose last search was sent: each should get one help_offer."""

    def next(self, slot: int) -> tuple[str, str, dict[str, str]]:
        """(customer, event type, properties) for the event sent in ``slot``."""
        if self._due and self._due[0][0] <= slot:
            _, number, customer, sent = heapq.heappop(self._due)
            self._searched(slot, number, customer, sent + 1)
            return customer, "help_search", {"query": "where is my parcel"}
        if self._rng.random() < self._start_share:
            self._stuck += 1
            customer = f"{self._tag}-stuck-{self._stuck:06d}"
            self._searched(slot, self._stuck, customer, 1)
            return customer, "help_search", {"query": "delivery times"}
        customer = f"{self._tag}-view-{self._rng.randrange(FILLER_CUSTOMERS):05d}"
        return customer, "product_view", {"product_id": f"p-{self._rng.randrange(PRODUCTS)}"}

    def _searched(self, slot: int, number: int, customer: str, sent: int) -> None:
        self.searches += 1
        if sent < SEARCHES:
            heapq.heappush(self._due, (slot + self._gap, number, customer, sent))
        else:
            self.completed += 1


def event_bytes(event_id: str, event_type: str, customer: str, props: dict[str, str]) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "type": event_type,
            "timestamp": format_ms(int(time.time() * 1000)),
            "identifiers": {"anonymous_id": customer},
            "context": {"channel": "web"},
            "properties": props,
        }
    )


class ActionWatcher(threading.Thread):
    """Reads an action topic in the background, noting each record's wall-clock arrival."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="action-watcher", daemon=True)
        self._consumer = Consumer(
            consumer_config(bootstrap, **{"fetch.wait.max.ms": 10, "enable.partition.eof": False})
        )
        assign_all(self._consumer, [topic])
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._arrivals: list[tuple[float, bytes]] = []

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                messages = self._consumer.consume(BATCH, 0.05)
                now = time.time()
                with self._lock:
                    self._arrivals.extend(
                        (now, m.value() or b"") for m in messages if m.error() is None
                    )
        finally:
            self._consumer.close()

    def arrivals(self) -> list[tuple[float, bytes]]:
        with self._lock:
            return list(self._arrivals)

    def halt(self) -> None:
        self._halt.set()
        self.join(5)


def latencies(arrivals: Sequence[tuple[float, bytes]], sent: dict[str, float]) -> list[float]:
    """Seconds from sending the last triggering event to the action's arrival, for every
    action triggered by an event in ``sent``."""
    out = []
    for arrived, value in arrivals:
        triggered_by = orjson.loads(value).get("triggered_by") or []
        if triggered_by and triggered_by[-1] in sent:
            out.append(arrived - sent[triggered_by[-1]])
    return out


def wait_for(condition: Callable[[], bool], timeout: float, poll: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def warm_up(
    producer: Producer, topic: str, watcher: ActionWatcher, flow: ConciergeProcess, tag: str
) -> float:
    """Send one stuck customer's searches and wait for its action: the flow is consuming."""
    start = time.perf_counter()
    sent: dict[str, float] = {}
    for n in range(SEARCHES):
        event_id = f"{tag}-warmup-{n}"
        value = event_bytes(event_id, "help_search", f"{tag}-warmup", {"query": "warm up"})
        produce(producer, topic, value, f"{tag}-warmup".encode())
        sent[event_id] = time.time()
    flush(producer, "warm-up")
    wait_for(lambda: flow.exited() or bool(latencies(watcher.arrivals(), sent)), WARMUP_TIMEOUT_S)
    if flow.exited():
        raise FlowFailed(f"concierge run exited during the warm-up:\n{flow.log_tail()}")
    if not latencies(watcher.arrivals(), sent):
        raise FlowFailed(f"no warm-up action within {WARMUP_TIMEOUT_S:.0f}s")
    return time.perf_counter() - start


def offer_load(
    producer: Producer, topic: str, mix: TrafficMix, rate: float, seconds: float, tag: str
) -> tuple[dict[str, float], float]:
    """Send ``rate`` events/s for ``seconds``, paced on ``perf_counter``; return each event's
    wall-clock send time by id, and the seconds the sending took."""
    sent: dict[str, float] = {}
    total = int(rate * seconds)
    interval = 1.0 / rate
    start = time.perf_counter()
    for slot in range(total):
        delay = start + slot * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        customer, event_type, props = mix.next(slot)
        event_id = f"{tag}-{slot:08d}"
        produce(
            producer, topic, event_bytes(event_id, event_type, customer, props), customer.encode()
        )
        sent[event_id] = time.time()
        producer.poll(0)
    elapsed = time.perf_counter() - start
    flush(producer, "offered load")
    return sent, elapsed


class RawHop(threading.Thread):
    """One raw consume -> produce hop on the same broker: reads ``source`` as the flow's
    input partitions do (``fetch.wait.max.ms`` 50) and writes each record unchanged to
    ``target`` with the flow's producer settings (``linger.ms`` 5, ``acks`` all). What the
    broker alone costs an event on its way through, beside the flow's latency."""

    def __init__(self, bootstrap: str, source: str, target: str) -> None:
        super().__init__(name="raw-hop", daemon=True)
        self._consumer = Consumer(
            consumer_config(bootstrap, **{"fetch.wait.max.ms": 50, "enable.partition.eof": False})
        )
        assign_all(self._consumer, [source])
        self._producer = Producer(producer_config(bootstrap, **{"linger.ms": 5, "acks": "all"}))
        self._target = target
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for message in self._consumer.consume(BATCH, 0.05):
                    if message.error() is None:
                        produce(self._producer, self._target, message.value() or b"", None)
                self._producer.poll(0)
        finally:
            self._producer.flush(10)
            self._consumer.close()

    def halt(self) -> None:
        self._halt.set()
        self.join(15)


HOP_SECONDS = 10.0
"""How long the raw hop is offered the latency run's rate (at most ``--latency-seconds``)."""


def measure_raw_hop(setup: Setup, rate: float, seconds: float) -> dict[str, Any]:
    """Offer ``rate`` events/s for ``seconds`` through :class:`RawHop`; every event's time
    from being sent to arriving on the far side."""
    source, target = "bench.hop.in", "bench.hop.out"
    create_topics(setup.bootstrap, [source, target])
    watcher = ActionWatcher(setup.bootstrap, target)
    hop = RawHop(setup.bootstrap, source, target)
    producer = Producer(producer_config(setup.bootstrap, **{"linger.ms": 5, "acks": "all"}))
    watcher.start()
    hop.start()
    tag = f"hop{os.getpid()}"
    try:
        mix = TrafficMix(tag, rate, 0.0, seed=11)
        sent, sending = offer_load(producer, source, mix, rate, seconds, tag)
        wait_for(lambda: len(watcher.arrivals()) >= len(sent), DRAIN_TIMEOUT_S, poll=0.2)
    finally:
        hop.halt()
        watcher.halt()
    found = sorted(
        arrived - sent[orjson.loads(value)["event_id"]]
        for arrived, value in watcher.arrivals()
        if orjson.loads(value)["event_id"] in sent
    )
    summary = latency_summary(found)
    summary |= {"sent": len(sent), "achieved_rate": round(len(sent) / sending, 1)}
    return summary


def percentile(ordered: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def measure_latency(
    setup: Setup, rate: float, seconds: float, search_share: float
) -> dict[str, Any]:
    """Run the flow on fresh topics, offer it ``rate`` events/s, time the help_offer actions,
    then SIGTERM it."""
    bootstrap = setup.bootstrap
    prefix = "bench.latency."
    settings = concierge_topics(bootstrap, setup.policy, prefix)
    tag = f"lat{os.getpid()}"
    watcher = ActionWatcher(bootstrap, prefix + "actions.in_app")
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 5, "acks": "all"}))
    watcher.start()
    try:
        with ConciergeProcess(
            bootstrap, setup.policy_path, prefix, setup.workdir, stop_at_end=False
        ) as flow:
            warmup = warm_up(producer, settings.events_topic(), watcher, flow, tag)
            progress(f"  flow consuming after {warmup:.1f} s; offering {rate:g} events/s")
            mix = TrafficMix(tag, rate, search_share, seed=11)
            sent, sending = offer_load(producer, settings.events_topic(), mix, rate, seconds, tag)
            wait_for(
                lambda: len(latencies(watcher.arrivals(), sent)) >= mix.completed,
                DRAIN_TIMEOUT_S,
                poll=0.2,
            )
            code, stop_seconds = flow.stop(STOP_TIMEOUT_S)
            drained = UNDRAINED not in flow.log_text()
            log_tail = flow.log_tail() if code != 0 or not drained else ""
    finally:
        watcher.halt()
    summary: dict[str, Any] = {
        "offered_rate": rate,
        "seconds": seconds,
        "sent": len(sent),
        "achieved_rate": round(len(sent) / sending, 1),
        "help_searches": mix.searches,
        "expected_actions": mix.completed,
        "warmup_seconds": round(warmup, 2),
        "exit_code_after_sigterm": code,
        "stop_seconds": round(stop_seconds, 2),
        "drained": drained,
    }
    summary |= latency_summary(sorted(latencies(watcher.arrivals(), sent)))
    if log_tail:
        summary["log_tail"] = log_tail
    return summary


def latency_summary(found: Sequence[float]) -> dict[str, Any]:
    """The count and, if any, p50 / p99 / max in ms of sorted latencies in seconds."""
    if not found:
        return {"actions": 0}
    return {
        "actions": len(found),
        "p50_ms": round(percentile(found, 0.50) * 1000, 1),
        "p99_ms": round(percentile(found, 0.99) * 1000, 1),
        "max_ms": round(found[-1] * 1000, 1),
    }


# -- report --------------------------------------------------------------------------------


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def per_second(events: int, seconds: float) -> float | None:
    return events / seconds if seconds > 0 else None


def ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 3) if top is not None and bottom else None


def throughput_summary(events: int, result: Throughput) -> dict[str, Any]:
    """events/s of each measurement, whole and without its fixed cost, and their ratios."""
    whole = {name: per_second(events, runs.best()) for name, runs in result.runs.items()}
    net = {
        name: per_second(events, runs.best() - runs.fixed()) for name, runs in result.runs.items()
    }
    return {
        "events_per_s": {name: round(rate) if rate else None for name, rate in whole.items()},
        "events_per_s_without_fixed_cost": {
            name: round(rate) if rate else None for name, rate in net.items()
        },
        "seconds": {
            name: [round(s, 3) for s in runs.seconds] for name, runs in result.runs.items()
        },
        "fixed_cost_seconds": {
            name: [round(s, 3) for s in runs.empty] for name, runs in result.runs.items()
        },
        "ratios": {
            label: ratio(whole[top], whole[bottom])
            for label, top, bottom in RATIOS
            if top in whole and bottom in whole
        },
        "ratios_without_fixed_cost": {
            label: ratio(net[top], net[bottom])
            for label, top, bottom in RATIOS
            if top in net and bottom in net
        },
    }


def checks(events: int, result: Throughput, latency: dict[str, Any] | None) -> list[str]:
    """What went wrong, if anything: each entry makes the run fail."""
    problems = []
    if result.baseline_tally.records != events:
        problems.append(f"baseline read {result.baseline_tally.records} of {events} records")
    if result.bytewax_tally.records != events:
        problems.append(f"bytewax passthrough read {result.bytewax_tally.records} of {events}")
    counts = result.concierge_counts
    decided = sum(n for t, n in counts.items() if t == "decisions" or t.startswith("actions."))
    if result.baseline_tally.events and not decided:
        problems.append("concierge wrote no decisions or actions although the input had events")
    if counts.get("dlq", 0) != result.baseline_tally.dead_letters:
        problems.append(
            f"concierge wrote {counts.get('dlq', 0)} dead letters, the baseline found "
            f"{result.baseline_tally.dead_letters}: input lost or parsed differently"
        )
    if latency is not None:
        problems += latency_problems(latency)
    return problems


def latency_problems(latency: dict[str, Any]) -> list[str]:
    if "error" in latency:
        return [f"latency: {latency['error']}"]
    problems = []
    if latency["actions"] < latency["expected_actions"] or not latency["actions"]:
        problems.append(
            f"latency: {latency['actions']} of {latency['expected_actions']} expected "
            "help_offer actions arrived"
        )
    if not latency["drained"]:
        problems.append("latency: after SIGTERM the flow was interrupted before it drained")
    if latency["exit_code_after_sigterm"] != 0:
        problems.append(
            f"latency: after SIGTERM the flow exited {latency['exit_code_after_sigterm']} "
            f"(None: still running after {STOP_TIMEOUT_S:.0f}s)"
        )
    return problems


LABELS = {
    "baseline": "(a) baseline: confluent-kafka loop + parse",
    "bytewax": "(b) Bytewax passthrough + parse",
    "concierge": "(c) Concierge flow (process start to exit)",
    "old": "(c0) the same, with the code of --old-tree",
    "compared": "(c1) the same code, with --compare-policy/--compare-args",
}


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_throughput(report: dict[str, Any]) -> list[str]:
    tp = report["throughput"]
    lines = [
        f"  {'':<44}{'seconds':>9}{'events/s':>10}{'fixed s':>9}{'events/s':>10}",
        f"  {'':<44}{'':>9}{'':>10}{'':>9}{'w/o fixed':>10}",
    ]
    for name, label in LABELS.items():
        if name not in tp["seconds"]:
            continue
        lines.append(
            f"  {label:<44}{min(tp['seconds'][name]):>9.2f}"
            f"{_number(tp['events_per_s'][name], ',d'):>10}"
            f"{min(tp['fixed_cost_seconds'][name]):>9.2f}"
            f"{_number(tp['events_per_s_without_fixed_cost'][name], ',d'):>10}"
        )
    whole, net = tp["ratios"], tp["ratios_without_fixed_cost"]
    lines.append("")
    for title, ratios in (("ratios of events/s:", whole), ("without fixed costs:", net)):
        lines.append(
            f"  {title:<22}"
            + "   ".join(f"{label} {_number(value, '.2f')}" for label, value in ratios.items())
        )
    return lines


def render_outputs(report: dict[str, Any]) -> list[str]:
    out, base = report["concierge_output"], report["baseline_input"]
    actions = ", ".join(f"{k[len('actions.') :]} {v}" for k, v in out.items() if "actions." in k)
    return [
        f"  input: {base['events']} valid events, {base['dead_letters']} dead letters (baseline)",
        f"  Concierge wrote: {out.get('decisions', 0)} decisions; actions: {actions}; "
        f"{out.get('dlq', 0)} dead letters; {out.get('audit', 0)} audit records",
    ]


def render_latency(lat: dict[str, Any]) -> list[str]:
    if "error" in lat:
        return [f"  latency: {lat['error']}"]
    spread = (
        f"p50 {lat['p50_ms']:.1f} ms   p99 {lat['p99_ms']:.1f} ms   max {lat['max_ms']:.1f} ms"
        if "p50_ms" in lat
        else "no latencies"
    )
    return [
        f"  latency at {lat['offered_rate']:g} events/s offered for {lat['seconds']:g} s "
        f"(achieved {lat['achieved_rate']:g}/s, {lat['sent']} events, "
        f"{lat['help_searches']} help searches):",
        f"    {lat['actions']} of {lat['expected_actions']} help_offer actions;  {spread}",
        f"    SIGTERM -> exit {lat['exit_code_after_sigterm']} in {lat['stop_seconds']:.2f} s"
        + ("" if lat["drained"] else " (interrupted before it drained)"),
        *render_hop(lat.get("raw_hop")),
    ]


def render_hop(hop: dict[str, Any] | None) -> list[str]:
    if not hop:
        return []
    if "p50_ms" not in hop:
        return ["    raw consume -> produce hop, same broker and rate: no latencies"]
    return [
        f"    raw consume -> produce hop, same broker and rate ({hop['actions']} events): "
        f"p50 {hop['p50_ms']:.1f} ms   p99 {hop['p99_ms']:.1f} ms   max {hop['max_ms']:.1f} ms"
    ]


def render(report: dict[str, Any]) -> str:
    cfg, machine = report["config"], report["machine"]
    lines = [
        f"Concierge throughput: {cfg['events']} events, {cfg['customers']} customers, "
        f"best of {cfg['repeat']}; {machine['cpus']} CPUs, "
        f"load {machine['load_before']} -> {machine['load_after']}",
        "",
        *render_throughput(report),
        "",
        *render_outputs(report),
    ]
    if report.get("latency") is not None:
        lines += ["", *render_latency(report["latency"])]
    problems = report["problems"]
    lines += ["", "  FAILED: " + "; ".join(problems) if problems else "  ok"]
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000, help="preloaded events (N)")
    parser.add_argument("--customers", type=int, default=3000, help="generated customers")
    parser.add_argument("--seed", type=int, default=7, help="generator seed")
    parser.add_argument("--repeat", type=int, default=1, help="best of K runs of each")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered events/s (latency)")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="0 skips latency")
    parser.add_argument(
        "--search-share",
        type=float,
        default=0.05,
        help="share of the offered events that are help searches (latency)",
    )
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy YAML")
    parser.add_argument(
        "--old-tree",
        type=Path,
        help="another commit's tree (git worktree add /tmp/old <commit>): its flow is timed "
        "as (c0) in each round, beside (c)",
    )
    parser.add_argument(
        "--compare-policy",
        type=Path,
        help="another policy (e.g. the same with a learning section): the flow is timed with "
        "it as (c1) in each round, beside (c)",
    )
    parser.add_argument(
        "--compare-args",
        default="",
        metavar="FLAGS",
        help='other flags of concierge run (e.g. "--snapshot-interval 30"): the flow is timed '
        "with them as (c1) in each round, beside (c)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    if args.events < 1 or args.repeat < 1 or args.rate <= 0 or args.latency_seconds < 0:
        parser.error("--events and --repeat must be >= 1, --rate > 0, --latency-seconds >= 0")
    return args


def generate(customers: int, seed: int, events: int) -> list[tuple[bytes | None, bytes]]:
    records: Iterator[bytes] = Generator(customers, seed).events(events)
    return [(key_of(raw), raw) for raw in records]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    policy_path: Path = args.policy.resolve()
    policy = load_policy(policy_path.read_text(encoding="utf-8"), str(policy_path))
    machine = {"cpus": os.cpu_count(), "load_before": load_average(), "python": sys.version}
    progress(f"generating {args.events} events ({args.customers} customers)")
    records = generate(args.customers, args.seed, args.events)
    result = Throughput()
    latency: dict[str, Any] | None = None
    failure: str | None = None
    with (
        EmbeddedBroker() as broker,
        tempfile.TemporaryDirectory(prefix="concierge-bench-") as workdir,
    ):
        setup = Setup(
            broker.bootstrap,
            policy,
            policy_path,
            records,
            Path(workdir),
            args.old_tree,
            args.compare_policy.resolve() if args.compare_policy else None,
            tuple(args.compare_args.split()),
        )
        try:
            for round_no in range(args.repeat):
                progress(f"throughput round {round_no + 1} of {args.repeat}")
                measure_round(setup, round_no, result)
        except FlowFailed as err:
            failure = str(err)
        if failure is None and args.latency_seconds > 0:
            progress("latency")
            try:
                latency = measure_latency(setup, args.rate, args.latency_seconds, args.search_share)
            except FlowFailed as err:
                latency = {"error": str(err)}
            hop_seconds = min(args.latency_seconds, HOP_SECONDS)
            progress(f"raw consume -> produce hop, {args.rate:g} events/s for {hop_seconds:g} s")
            latency["raw_hop"] = measure_raw_hop(setup, args.rate, hop_seconds)
    if failure is not None or not result.runs["concierge"].seconds:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    machine["load_after"] = load_average()
    problems = checks(args.events, result, latency)
    report: dict[str, Any] = {
        "config": {
            "events": args.events,
            "customers": args.customers,
            "seed": args.seed,
            "repeat": args.repeat,
            "policy": str(policy_path),
            "old_tree": str(args.old_tree) if args.old_tree else None,
            "compare_policy": str(args.compare_policy) if args.compare_policy else None,
            "compare_args": args.compare_args,
            "record_bytes_mean": round(sum(len(v) for _, v in records) / len(records), 1),
        },
        "machine": machine | {"platform": platform.platform()},
        "throughput": throughput_summary(args.events, result),
        "baseline_input": {
            "events": result.baseline_tally.events,
            "dead_letters": result.baseline_tally.dead_letters,
        },
        "concierge_output": result.concierge_counts,
        "latency": latency,
        "problems": problems,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(render(report))
    print(f"\n  {report['wall_seconds']:.0f} s in all; numbers in {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
