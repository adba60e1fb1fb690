"""``concierge tail``: a topic's records on standard output, one JSON value a line.

It reads every partition of the topic by assignment (no consumer group: it commits nothing
and joins nothing, so it starts at once and never moves anyone's offsets). Without
``--follow`` it reads from the beginning to the end, found by reading each partition until
the broker says there is no more (a high watermark alone can be behind), then exits; with
``--follow`` it prints what arrives from now on (or everything, ``--from-beginning``) until
SIGINT or SIGTERM.

Values are printed as they are when they are one line of JSON (Concierge writes nothing
else); JSON over several lines is printed on one; anything else is printed as
``{"not_json": TEXT}``, or ``{"not_json_base64": BASE64}`` when it is not UTF-8 either; a
record without a value as ``null``.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from flows.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from flows.commands.terminal import counted
from flows.kafka.config import BrokersUnreachable, KafkaSettings, client_settings, list_topics

CONSUME_BATCH = 1000
CONSUME_WAIT_S = 0.1
FETCH_WAIT_MS = 50
"""How long a fetch waits for records at the end of a partition: the embedded broker waits
about the whole of it, so it is what each read at the end costs."""
TOPICS_SHOWN = 12


def tail_from_args(args: argparse.Namespace) -> int:
    """Print the topic's records; 0 at its end (or ``--max``, or a signal), 1 when the
    brokers cannot be reached or the topic is not there."""
    try:
        settings = client_settings(args.brokers, args.topic_prefix, args.properties)
    except ValueError as err:
        print(f"concierge tail: {err}", file=sys.stderr)
        return EXIT_USAGE
    topic = settings.topic(args.topic)
    try:
        topics = list_topics(settings, args.connect_timeout)
    except BrokersUnreachable as err:
        print(f"concierge tail: {err}", file=sys.stderr)
        return EXIT_FAILED
    if topic not in topics:
        print(f"concierge tail: {_missing(topic, settings, topics)}", file=sys.stderr)
        return EXIT_FAILED
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        read = _Reader(settings, topic, topics[topic], args).read(stop)
    except BrokenPipeError:  # ``tail | head``: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_OK
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if read.lost is not None:
        print(
            f"concierge tail: lost the brokers at {settings.brokers} after "
            f"{counted(read.count, 'record')}: {read.lost}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(
        f"concierge tail: {counted(read.count, 'record')} of {topic} ({read.why_stopped})",
        file=sys.stderr,
    )
    return EXIT_OK


def _missing(topic: str, settings: KafkaSettings, topics: dict[str, int]) -> str:
    """The one line for a topic that is not there: the one it may mean, or those there are
    under the prefix."""
    prefix = settings.prefix
    ours = sorted(name[len(prefix) :] for name in topics if name.startswith(prefix))
    missing = f"no topic {topic} at {settings.brokers}"
    if not ours:
        return f"{missing}, nor any under {prefix} (concierge run creates its topics as it starts)"
    close = difflib.get_close_matches(topic[len(prefix) :], ours, n=1)
    if close:
        return f"{missing}: did you mean {close[0]}?"
    there = ", ".join(ours[:TOPICS_SHOWN]) + (", ..." if len(ours) > TOPICS_SHOWN else "")
    return f"{missing}; under {prefix} there are: {there}"


@dataclass
class _Read:
    count: int = 0
    why_stopped: str = ""
    lost: str | None = None
    """Why the brokers could not be read to the end, if they could not."""
    errors: list[KafkaError] = field(default_factory=list)


class _Reader:
    """One topic's partitions, assigned, printed as they are read."""

    def __init__(
        self, settings: KafkaSettings, topic: str, partitions: int, args: argparse.Namespace
    ) -> None:
        self._topic = topic
        self._partitions = partitions
        self._follow = args.follow
        self._max = args.max
        self._timeout = args.connect_timeout
        self._read = _Read()
        self._consumer = Consumer(
            settings.config(
                **{
                    "group.id": "concierge-tail",  # required, never joined: partitions are assigned
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": FETCH_WAIT_MS,
                    "error_cb": self._read.errors.append,
                }
            )
        )
        # Its own metadata first: a partition assigned before its leader is known waits
        # half a second for librdkafka's next try.
        self._consumer.list_topics(timeout=self._timeout)
        start = (
            self._ends(topic, partitions)
            if args.follow and not args.from_beginning
            else dict.fromkeys(range(partitions), OFFSET_BEGINNING)
        )
        self._quiet_until_end = args.follow and not args.from_beginning
        self._consumer.assign([TopicPartition(topic, p, at) for p, at in start.items()])

    def _ends(self, topic: str, partitions: int) -> dict[int, int]:
        """Where each partition ends, as its high watermark says: a start for ``--follow``
        that reads little of what is there already. (It can be behind the true end, so what
        comes before the first end of partition is skipped, not printed.)"""
        ends = {}
        for partition in range(partitions):
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=self._timeout, cached=False
                )
            except KafkaException:
                high = OFFSET_BEGINNING
            ends[partition] = high
        return ends

    def read(self, stop: threading.Event) -> _Read:
        """Print records until the end (without ``--follow``), ``--max`` or ``stop``."""
        read, at_end, told = self._read, set(), False
        heard = time.monotonic()
        try:
            while not stop.is_set():
                lines = []
                for message in self._consumer.consume(CONSUME_BATCH, CONSUME_WAIT_S):
                    heard = time.monotonic()
                    error = message.error()
                    if error is None:
                        if self._quiet_until_end and message.partition() not in at_end:
                            continue  # there before tail started
                        lines.append(shown(message.value()))
                        if self._max is not None and read.count + len(lines) >= self._max:
                            break
                    elif error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(message.partition())
                        if self._follow and len(at_end) == self._partitions and not told:
                            told = True
                            print(
                                f"concierge tail: at the end of {self._topic}, following it "
                                "(Ctrl-C stops)",
                                file=sys.stderr,
                                flush=True,
                            )
                    else:
                        read.errors.append(error)
                if lines:
                    sys.stdout.write("\n".join(lines) + "\n")
                    sys.stdout.flush()
                    read.count += len(lines)
                if self._max is not None and read.count >= self._max:
                    read.why_stopped = f"--max {self._max}"
                    return read
                if not self._follow and len(at_end) == self._partitions:
                    read.why_stopped = f"read to the end of its {self._partitions} partitions"
                    return read
                if not self._follow and self._lost(heard):
                    read.lost = read.errors[-1].str()
                    return read
            read.why_stopped = "stopped"
            return read
        finally:
            self._consumer.close()

    def _lost(self, heard: float) -> bool:
        """Whether the brokers have been gone for longer than the connection timeout."""
        return (
            any(e.code() == KafkaError._ALL_BROKERS_DOWN for e in self._read.errors)
            and time.monotonic() - heard > self._timeout
        )


def shown(value: bytes | None) -> str:
    """A record's value as one line of JSON (see the module's docstring)."""
    if value is None:
        return "null"
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        try:
            return orjson.dumps({"not_json": value.decode("utf-8")}).decode()
        except UnicodeDecodeError:
            return orjson.dumps({"not_json_base64": base64.b64encode(value).decode()}).decode()
    text = value.decode().strip()
    return orjson.dumps(parsed).decode() if "\n" in text or "\r" in text else text
