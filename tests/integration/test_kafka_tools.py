"""``concierge produce`` and ``tail`` on the real embedded broker, as the tour uses them:
generate a stream, produce it, run the flow to the end, tail what it wrote."""

from __future__ import annotations

import select
import signal
import subprocess
import time
from collections import Counter
from datetime import timedelta

import orjson
import pytest

from flows.commands.generator import producer_key
from flows.kafka.broker import free_port
from flows.kafka.config import KafkaSettings, ensure_topics
from tests.integration.conftest import QUIET, stamp
from tests.scenarios.conftest import CONCIERGE, concierge

pytestmark = pytest.mark.integration


def client_flags(topics) -> list[str]:
    return ["--brokers", topics.broker.bootstrap, "--topic-prefix", topics.prefix]


def tail(topics, topic: str) -> list[bytes]:
    done = subprocess.run(
        [CONCIERGE, "tail", *client_flags(topics), topic], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_a_produced_stream_gives_on_the_topics_what_replay_writes(
    topics, flows, policy, reference_policy_path, tmp_path
):
    events = tmp_path / "day.jsonl.gz"
    done = concierge(
        "generate", "--customers", "200", "--events", "2000", "--broken", "0.02",
        "--start", stamp(timedelta(days=-1)), "--out", str(events),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    done = concierge("produce", *client_flags(topics), str(events))
    assert done.returncode == 0, done.stderr
    assert f"created topic {topics.prefix}events (3 partitions)" in done.stderr
    assert f"produced 2,000 records from {events} to {topics.prefix}events: 2,000 delivered" in (
        done.stderr
    )
    produced = topics.read("events")
    assert len(produced) == 2000
    assert all(key == producer_key(value) for key, value, _, _ in produced)
    assert len({partition for _, _, partition, _ in produced}) == 3
    unkeyed = sum(key is None for key, _, _, _ in produced)
    assert unkeyed > 0 and f"{unkeyed} without a key" in done.stderr

    flow = flows(topics, "--stop-at-end").start()
    assert flow.wait(120) == 0, flow.output()

    out = tmp_path / "replay"
    done = concierge(
        "replay", "--policy", str(reference_policy_path), "--events", str(events),
        "--out", str(out), "--until", stamp(timedelta(0)), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    def replayed(stream: str) -> list[bytes]:
        path = out / f"{stream}.jsonl"
        return path.read_bytes().splitlines() if path.exists() else []

    for stream in ("decisions", "actions.push"):
        assert sorted(tail(topics, stream)) == sorted(replayed(stream)), stream
    assert replayed("actions.push"), "the stream should have caused actions"
    for channel in policy.channels:  # the others read here, to keep the test short
        stream = f"actions.{channel}"
        assert sorted(v for _, v, _, _ in topics.read(stream)) == sorted(replayed(stream))
    # A dead letter names where its record came from: a file's line, or a topic's offset.
    assert Counter(orjson.loads(v)["reason"] for v in tail(topics, "dlq")) == Counter(
        orjson.loads(v)["reason"] for v in replayed("dlq")
    )


def produce(topics, lines: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [CONCIERGE, "produce", *client_flags(topics), "-"],
        input=lines,
        capture_output=True,
        timeout=60,
    )


def line_of(stream, timeout: float = 30) -> bytes:
    """The next line of an unbuffered pipe, or fail once ``timeout`` seconds have passed."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no line within {timeout:.0f} s"
    return stream.readline()


def test_tail_follows_what_is_produced_until_sigterm(topics):
    one = KafkaSettings(topics.broker.bootstrap, topics.prefix, dict(QUIET), partitions=1)
    ensure_topics(one, [one.events_topic()])  # one partition: the records keep their order
    topics.produce([b'{"old": 1}'])
    follow = subprocess.Popen(
        [CONCIERGE, "tail", *client_flags(topics), "--follow", "events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # what select says is there is all there is
    )
    try:
        assert follow.stderr is not None and follow.stdout is not None
        assert b"following it (Ctrl-C stops)" in line_of(follow.stderr)
        done = produce(topics, b'{"new": 1}\n\nnot json\n{"new":\n')
        assert done.returncode == 0, done.stderr
        assert [line_of(follow.stdout) for _ in range(3)] == [
            b'{"new": 1}\n',
            b'{"not_json":"not json"}\n',
            b'{"not_json":"{\\"new\\":"}\n',
        ]
        follow.send_signal(signal.SIGTERM)
        assert follow.wait(10) == 0
        assert follow.stderr.read().decode().splitlines() == [
            f"concierge tail: 3 records of {topics.prefix}events (stopped)"
        ]
    finally:
        if follow.poll() is None:
            follow.kill()


def test_tail_of_a_topic_that_is_not_there_is_one_line(topics):
    topics.produce([b"{}"])
    for asked, says in [
        ("evnets", "did you mean events?"),
        ("decisions", f"under {topics.prefix} there are: events"),
    ]:
        done = concierge("tail", *client_flags(topics), asked)
        assert done.returncode == 1
        assert done.stdout == ""
        assert done.stderr.splitlines() == [
            f"concierge tail: no topic {topics.prefix}{asked} at {topics.broker.bootstrap}"
            f"{'; ' if 'under' in says else ': '}{says}"
        ]


def test_produce_to_brokers_that_are_not_there_is_one_line_in_bounded_time(tmp_path):
    events = tmp_path / "one.jsonl"
    events.write_text('{"event_id": "e1"}\n')
    nobody = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = concierge("produce", "--brokers", nobody, "--connect-timeout", "1", str(events))
    took = time.monotonic() - started
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"concierge produce: nothing was sent: cannot reach the brokers at {nobody} within 1 s: "
    )
    assert "Connection refused" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert took < 5
