"""``concierge demo``: the embedded broker, a generated stream, the flow, then a summary.

Everything runs on loopback and is torn down at the end: the broker is
stopped and the temporary recovery and state directories are removed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from flows import metrics
from flows.commands.generator import Generator, producer_key
from flows.kafka.broker import EmbeddedBroker, free_port, port_is_free
from flows.kafka.config import KafkaSettings, ensure_topics
from flows.kafka.run import run
from flows.measure import count_conversions, lift_by_action, lift_table
from operators.policy.compiled import Policy
from operators.policy.load import load_policy

BUNDLED_POLICY = Path(__file__).resolve().parents[1] / "demo_policy.yaml"
"""The reference policy, ``examples/policy.yaml`` (a link to it in a clone, a copy installed)."""
MEASUREMENT = Path(__file__).resolve().parents[1] / "demo_measurement.yaml"
LOOPBACK = "127.0.0.1"
"""The demo serves its metrics to this machine only, like its broker."""


def demo_policy() -> Policy:
    """The reference policy with the measurement sections of :data:`MEASUREMENT`."""
    text = BUNDLED_POLICY.read_text(encoding="utf-8") + "\n" + MEASUREMENT.read_text("utf-8")
    return load_policy(text, f"{BUNDLED_POLICY} + {MEASUREMENT.name}")


def run_demo(args: argparse.Namespace) -> int:
    policy = demo_policy()
    print(
        "policy: the reference policy (examples/policy.yaml) with the holdouts and conversions "
        f"of flows/{MEASUREMENT.name} (version {policy.version})"
    )
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="concierge-demo-") as tmp:
        print(f"embedded broker (Tansu) on {broker.bootstrap}")
        # The demo owns the broker and stops it: its clients need not report the goodbye.
        settings = KafkaSettings(broker.bootstrap, "concierge.", {"log_level": "0"}, partitions=3)
        ensure_topics(settings, settings.input_topics() + settings.output_topics(policy))

        started = time.monotonic()
        produced = _produce(settings, policy, args.customers, args.events, args.seed)
        print(
            f"produced {produced:,} events from {args.customers:,} customers "
            f"in {time.monotonic() - started:.1f}s"
        )

        port = args.metrics_port
        if port and not port_is_free(port):
            port = free_port()
        started = time.monotonic()
        code = run(
            policy,
            settings,
            recovery_dir=Path(tmp) / "recovery",
            state_dir=Path(tmp) / "state",
            metrics_port=port,
            metrics_host=LOOPBACK,
            snapshot_interval=timedelta(seconds=5),
            stop_at_end=True,
            log_format=args.log_format,
        )
        elapsed = time.monotonic() - started
        if code:
            return code
        read = int(metrics.RECORDS_IN._value.get())

        outputs = _read_outputs(settings, policy)
        _print_summary(outputs, read, elapsed, port)
        _print_lift(outputs, policy)
    return 0


def _produce(settings: KafkaSettings, policy: Policy, customers: int, count: int, seed: int) -> int:
    """Produce the generated stream, each event keyed by the identifier its producer knows
    (one person's events land on several partitions; the identity step aligns them)."""
    producer = Producer(settings.config(**{"linger.ms": 20, "batch.num.messages": 10000}))
    topic = settings.events_topic()
    produced = 0
    for raw in Generator(customers, seed).events(count):
        key = producer_key(raw)
        while True:
            try:
                producer.produce(topic, raw, key)
                break
            except BufferError:
                producer.poll(0.1)
        produced += 1
        if produced % 10000 == 0:
            producer.poll(0)
    producer.flush(30)
    return produced


def _read_outputs(settings: KafkaSettings, policy: Policy) -> dict[str, list[bytes]]:
    """Every record on the output topics, read to their end."""
    consumer = Consumer(
        settings.config(
            **{
                "group.id": "concierge-demo-reader",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 50,
            }
        )
    )
    topics = settings.output_topics(policy)
    metadata = consumer.list_topics(timeout=10).topics
    parts = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in metadata[t].partitions]
    consumer.assign(parts)
    records: dict[str, list[bytes]] = {t[len(settings.prefix) :]: [] for t in topics}
    at_end: set[tuple[str, int]] = set()
    deadline = time.monotonic() + 60
    while len(at_end) < len(parts) and time.monotonic() < deadline:
        for message in consumer.consume(5000, 0.5):
            error = message.error()
            topic, value = message.topic() or "", message.value() or b""
            if error is None:
                records[topic[len(settings.prefix) :]].append(value)
            elif error.code() == KafkaError._PARTITION_EOF:
                at_end.add((topic, message.partition() or 0))
    consumer.close()
    return records


def _print_summary(records: dict[str, list[bytes]], read: int, elapsed: float, port: int) -> None:
    actions = {s[len("actions.") :]: len(v) for s, v in records.items() if s.startswith("actions.")}
    outcomes = Counter(orjson.loads(r)["outcome"] for r in records["decisions"])
    reasons = Counter(orjson.loads(r)["reason"] for r in records["dlq"])
    print()
    print(
        f"flow: read {read:,} records in {elapsed:.1f}s ({read / elapsed:,.0f} events/s, "
        "start-up included)"
    )
    print("actions per channel:")
    for channel, n in sorted(actions.items()):
        print(f"  {channel:<10} {n:>8,}")
    print("decisions by outcome:")
    for outcome, n in outcomes.most_common():
        print(f"  {outcome:<10} {n:>8,}")
    print(
        f"dead letters: {len(records['dlq']):,}"
        + (f" ({', '.join(f'{r}: {n:,}' for r, n in reasons.most_common())})" if reasons else "")
    )
    audit = Counter(orjson.loads(r)["kind"] for r in records["audit"])
    print(
        f"identity: {audit['merge']:,} profiles merged, {audit['merge_refused']:,} links refused "
        "(limits, blocked values)"
    )
    sample = next(
        (v[0] for s, v in sorted(records.items()) if s.startswith("actions.") and v), None
    )
    if sample is not None:
        print(f"a sample action: {sample.decode()}")
    if port:
        print(f"metrics were served at http://{LOOPBACK}:{port}/metrics while the flow ran")
    else:
        print("metrics were not served (--metrics-port 0)")


def _print_lift(records: dict[str, list[bytes]], policy: Policy) -> None:
    """The lift the holdouts measured, per action."""
    _, by_customer = count_conversions(
        policy,
        (orjson.loads(r) for r in records["decisions"]),
        (orjson.loads(r) for r in records.get("conversions", [])),
    )
    print(f"conversions: {len(records.get('conversions', [])):,}; lift measured by the holdouts:")
    print(lift_table(lift_by_action(by_customer)))
    print(
        "(the generated customers buy whether or not they hear from us, so no lift is planted "
        "here: the figures should sit near 0 with intervals that include it)"
    )
