"""``concierge produce``: a JSON-lines file (or standard input) onto a topic, keyed as
producers key.

Each line is one record, written as it is. Its key is the first identifier it carries of
:data:`flows.commands.generator.PRODUCER_KEYS`, as each touchpoint keys by the identifier it
knows (the web by ``anonymous_id``, the app by ``device_id``, ...); feedback, which carries
none, is keyed by the customer its ``action_id`` names
(:func:`flows.commands.generator.producer_key`). A line that is not a JSON object, or names
nobody, is written too, without a key: the flow dead-letters it, with its reason, and the
records in stay the records processed plus the
dead letters. Blank lines are skipped, as replay skips them.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from flows.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from flows.commands.generator import producer_key
from flows.commands.terminal import counted, stderr_is_a_terminal
from flows.kafka.config import KafkaSettings, client_settings, ensure_topics, list_topics

STDIN = "-"
PROGRESS_EVERY_S = 5.0
DELIVERY_TIMEOUT_S = 30
"""How long a record may wait to be delivered (librdkafka's ``message.timeout.ms``) before
it counts as failed; ``-X message.timeout.ms=...`` changes it."""


@dataclass
class Delivery:
    """What became of the records handed to the producer."""

    sent: int = 0
    delivered: int = 0
    failed: int = 0
    unkeyed: int = 0
    first_failure: str | None = None

    def done(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.fail(error.str())

    def fail(self, reason: str, count: int = 1) -> None:
        self.failed += count
        if self.first_failure is None:
            self.first_failure = reason


def produce_from_args(args: argparse.Namespace) -> int:
    """Produce the file; 0 once the brokers have every record, 1 if any failed."""
    name = args.file or STDIN
    try:
        settings = client_settings(
            args.brokers, args.topic_prefix, args.properties, args.partitions
        )
        source = _source(name, given=args.file is not None)
    except ValueError as err:
        print(f"concierge produce: {err}", file=sys.stderr)
        return EXIT_USAGE
    topic = settings.topic(args.topic)
    shown = "standard input" if name == STDIN else name
    with source:
        try:
            if topic not in list_topics(settings, args.connect_timeout):
                ensure_topics(settings, [topic], timeout=args.connect_timeout)
                print(
                    f"concierge produce: created topic {topic} ({settings.partitions} partitions)",
                    file=sys.stderr,
                )
        except RuntimeError as err:  # unreachable, or the topic cannot be made
            print(f"concierge produce: nothing was sent: {err}", file=sys.stderr)
            return EXIT_FAILED
        delivery, read_error = _produce(settings, topic, source, stderr_is_a_terminal())
    unkeyed = (
        f"; {delivery.unkeyed:,} without a key (not a JSON object, or no identifier: the "
        "flow dead-letters them)"
        if delivery.unkeyed
        else ""
    )
    print(
        f"produced {counted(delivery.sent, 'record')} from {shown} to {topic}: "
        f"{delivery.delivered:,} delivered, {delivery.failed:,} failed{unkeyed}",
        file=sys.stderr,
    )
    if delivery.failed:
        print(
            f"concierge produce: {counted(delivery.failed, 'record')} not delivered: "
            f"{delivery.first_failure}",
            file=sys.stderr,
        )
    if read_error is not None:
        print(
            f"concierge produce: {shown} could not be read to its end ({read_error}); what "
            "came before was sent",
            file=sys.stderr,
        )
    return EXIT_FAILED if delivery.failed or read_error is not None else EXIT_OK


def _source(name: str, given: bool) -> IO[bytes]:
    """The events to produce, as replay reads them (gzip-compressed is read as such); a
    :class:`ValueError` when there are none to read."""
    from flows.replay import open_events

    if name == STDIN:
        if sys.stdin is None or sys.stdin.closed:
            raise ValueError("standard input is closed")
        if not given and sys.stdin.isatty():
            raise ValueError("no events: name a JSON-lines FILE, or pipe them in (FILE -)")
    elif not Path(name).is_file():
        raise ValueError(f"no events file at {name}")
    try:
        return open_events(Path(name))
    except OSError as err:
        raise ValueError(f"cannot read {name}: {err.strerror}") from None


def _produce(
    settings: KafkaSettings, topic: str, source: IO[bytes], progress: bool
) -> tuple[Delivery, str | None]:
    """Write every line of ``source`` to ``topic`` and wait until each is delivered or has
    failed; what became of them, and why the source could not be read to its end."""
    delivery = Delivery()
    producer = Producer(
        settings.config(
            **{
                "acks": "all",
                "enable.idempotence": True,  # a retry neither repeats nor reorders a record
                "linger.ms": 20,
                "batch.num.messages": 10000,
                "message.timeout.ms": DELIVERY_TIMEOUT_S * 1000,
            }
        )
    )
    # Its own metadata first: an idempotent producer that starts without it waits half a
    # second before its first batch.
    producer.list_topics(timeout=DELIVERY_TIMEOUT_S)
    started = last = time.monotonic()
    read_error = None
    while True:
        try:
            raw = source.readline()
        except (OSError, EOFError, zlib.error) as err:
            read_error = f"after {counted(delivery.sent, 'record')}: {err}"
            break
        if not raw:
            break
        raw = raw.rstrip(b"\r\n")
        if not raw.strip():
            continue
        key = producer_key(raw)
        delivery.unkeyed += key is None
        _send(producer, topic, raw, key, delivery)
        if progress and (now := time.monotonic()) - last >= PROGRESS_EVERY_S:
            last = now
            print(
                f"produce: {delivery.sent:,} records sent, {delivery.delivered:,} delivered "
                f"({delivery.sent / (now - started):,.0f} records/s)",
                file=sys.stderr,
            )
    timeout_ms = int(settings.client.get("message.timeout.ms", DELIVERY_TIMEOUT_S * 1000))
    left = producer.flush(timeout_ms / 1000 + 5)
    if left:
        delivery.fail(f"no answer from the brokers at {settings.brokers}", left)
    return delivery, read_error


def _send(
    producer: Producer, topic: str, raw: bytes, key: bytes | None, delivery: Delivery
) -> None:
    delivery.sent += 1
    while True:
        try:
            producer.produce(topic, raw, key, on_delivery=delivery.done)
            break
        except BufferError:  # the client's queue is full: let it deliver some
            producer.poll(0.1)
        except KafkaException as err:  # refused before sending: too large, say
            delivery.fail(f"record {delivery.sent:,}: {err.args[0].str()}")
            return
    if delivery.sent % 1000 == 0:
        producer.poll(0)  # delivery reports
