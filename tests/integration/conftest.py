"""The real flow against the real embedded broker: helpers to produce, read and run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from flows.kafka.broker import EmbeddedBroker, free_port
from flows.kafka.config import KafkaSettings, ensure_topics
from operators.identity.ids import resolve_customer
from operators.model.identifiers import UNKEYED_IDENTITY, IdentifierRules, identify_all
from operators.model.records import Event
from operators.policy.compiled import DEFAULT_IDENTIFIER_ORDER

CONCIERGE = str(Path(sys.executable).with_name("concierge"))
QUIET = {"log_level": 0}


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def afternoon_zone() -> str:
    """A fixed-offset time zone in which it is now about 14:00, so events stamped in the
    last few hours fall outside quiet hours whatever the time of day the tests run."""
    offset = (14 - datetime.now(UTC).hour + 12) % 24 - 12
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


def in_the_afternoon(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` from a customer in :func:`afternoon_zone`: stamped from the wall clock,
    it is decided outside quiet hours whatever the hour the suite runs at."""
    event.setdefault("context", {})["timezone"] = afternoon_zone()
    return event


def stamp(delta: timedelta) -> str:
    """An RFC 3339 UTC time relative to now, so wall-clock timers stay in the future."""
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@dataclass
class Topics:
    """One test's topics on the shared broker, under a prefix of its own."""

    broker: EmbeddedBroker
    prefix: str
    settings: KafkaSettings = field(init=False)

    def __post_init__(self) -> None:
        self.settings = KafkaSettings(self.broker.bootstrap, self.prefix, dict(QUIET), 3)

    def create(self, policy: Any, partitions: int = 3) -> None:
        """Create the topics; with one partition every event keeps its order, which a test
        comparing with replay needs when one person's events carry different keys."""
        self.settings = KafkaSettings(self.broker.bootstrap, self.prefix, dict(QUIET), partitions)
        ensure_topics(
            self.settings, self.settings.input_topics() + self.settings.output_topics(policy)
        )

    def produce(
        self,
        records: list[bytes | dict[str, Any]],
        topic: str = "events",
        keys: list[bytes | None] | None = None,
    ) -> None:
        producer = Producer({"bootstrap.servers": self.broker.bootstrap, "linger.ms": 5, **QUIET})
        for n, record in enumerate(records):
            value = record if isinstance(record, bytes) else orjson.dumps(record)
            key = keys[n] if keys is not None else _default_key(record)
            producer.produce(self.prefix + topic, value, key)
        assert producer.flush(30) == 0

    def read(self, stream: str) -> list[tuple[bytes | None, bytes, int, int]]:
        """Every record on ``<prefix><stream>`` right now: (key, value, partition, offset)."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.broker.bootstrap,
                "group.id": "tests",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 20,
                **QUIET,
            }
        )
        topic = self.prefix + stream
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records, at_end = [], set()
        deadline = time.monotonic() + 30
        while len(at_end) < len(partitions) and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.2):
                error = message.error()
                if error is None:
                    records.append(
                        (message.key(), message.value(), message.partition(), message.offset())
                    )
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
        consumer.close()
        return records

    def values(self, stream: str) -> list[dict[str, Any]]:
        return [orjson.loads(value) for _, value, _, _ in self.read(stream)]


def _default_key(record: bytes | dict[str, Any]) -> bytes | None:
    """Key a record by its customer, as a producer following docs/kafka.md (Keys) would."""
    if isinstance(record, dict) and record.get("identifiers"):
        identifiers, _ = identify_all(record["identifiers"], IdentifierRules(), UNKEYED_IDENTITY)
        event = Event("", "", 0, identifiers, {}, {})
        return resolve_customer(event, DEFAULT_IDENTIFIER_ORDER).encode()
    return None


@pytest.fixture
def cluster_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The identity key every process of a cluster shares (``run`` refuses a cluster without
    one), given to the processes the test starts as a deployment would: in the environment."""
    key = "a cluster's identity key, shared"
    monkeypatch.setenv("CONCIERGE_IDENTITY_KEY", key)
    return key


@pytest.fixture
def topics(broker: EmbeddedBroker) -> Topics:
    return Topics(broker, f"t{uuid.uuid4().hex[:8]}.")


class Flow:
    """``concierge run`` as a child process, with its metrics endpoint."""

    def __init__(self, topics: Topics, policy_path: Path, workdir: Path, *extra: str) -> None:
        self.metrics_port = free_port()
        self.log = workdir / f"flow-{self.metrics_port}.log"
        self.args = [
            CONCIERGE,
            "run",
            "--policy",
            str(policy_path),
            "--brokers",
            topics.broker.bootstrap,
            "--topic-prefix",
            topics.prefix,
            "--recovery-dir",
            str(workdir / "recovery"),
            "--state-dir",
            str(workdir / "state"),
            "--metrics-port",
            str(self.metrics_port),
            "-X",
            "log_level=0",
            *extra,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Flow:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def metrics(self) -> dict[str, float]:
        """The flow's Prometheus samples, as ``name{label="v"}`` -> value (empty if not up)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
            ) as response:
                text = response.read().decode()
        except OSError:
            return {}
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def wait_for_records_in(self, count: int, timeout: float = 60) -> dict[str, float]:
        return wait_for(
            lambda: (m := self.metrics()).get("concierge_records_in_total") == count and m,
            timeout,
            f"the flow to read {count} records",
        )

    def terminate(self, how: signal.Signals = signal.SIGTERM) -> tuple[int, float]:
        """SIGTERM (or ``how``); return the exit code and how long it took to stop."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(how)
        code = self.process.wait(30)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A failed test that ran flows shows the end of each one's log: a flow that waited, or
    died, says why there (a clean clone's CI keeps nothing else)."""
    report = yield
    started: list[Flow] = getattr(item, "concierge_flows", [])
    if report.failed and call.when == "call":
        for flow in started:
            tail = "\n".join(flow.output().splitlines()[-LOG_TAIL:]) if flow.log.exists() else ""
            state = "not started" if flow.process is None else f"exit {flow.process.poll()}"
            report.sections.append((f"{flow.log.parent.name}/{flow.log.name} ({state})", tail))
    return report


LOG_TAIL = 40
"""How many of a flow's last log lines a failed test shows."""


@pytest.fixture
def flows(
    reference_policy_path: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Flow]]:
    started: list[Flow] = []
    request.node.concierge_flows = started

    def make(
        topics: Topics, *extra: str, policy: Path | None = None, workdir: Path | None = None
    ) -> Flow:
        flow = Flow(topics, policy or reference_policy_path, workdir or tmp_path, *extra)
        started.append(flow)
        return flow

    yield make
    for flow in started:
        flow.kill()
