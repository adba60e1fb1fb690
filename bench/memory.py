"""Bytes per idle customer in the whole ``concierge run`` process: identity graph, Bytewax
state and everything else included.

One ``concierge run`` on the embedded broker (fresh topics, recovery and state directories).
Customers are added until the flow holds each count of ``--customers`` (default
10,000,110,000), each giving marketing consent and viewing two products, two days before now
(so nothing is decided and nothing is due but their eviction, weeks away); with ``--kind
active``, the state bench's active customers instead (``bench/state_size.py``: views,
consent, help searches, checkouts, loan checks, 5.35 events each), their days ending two days
before now, so what they are due fires at once and they are idle after it. At each count the
script waits until the flow holds every customer (the ``concierge_customers_in_state``
gauge) and has packed them all, then for two snapshot epochs, and reads the process's
resident set (``VmRSS`` of ``/proc/<pid>/status``). The bytes per idle customer between two
counts is the growth between their readings divided by the customers added.
(``bench/memory.json`` names it ``bytes_per_customer``.)

``--resume`` then stops the flow (SIGTERM) and times a new one on the same recovery and state
directories from its start to ready (``/readyz``: every customer's snapshot loaded and a
first epoch committed), and reads its RSS once it holds every customer again.

The events are keyed by their ``customer_id`` and spread over the input's three
partitions. Progress goes to stderr; the result to stdout and ``bench/memory.json``.

    .venv/bin/python bench/memory.py [--customers 10000,110000] [--resume]
    .venv/bin/python bench/memory.py --customers 100000,500000,1000000 --resume   # ~25 min
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import ConciergeProcess, concierge_topics, preload

from flows.kafka.broker import EmbeddedBroker, free_port
from operators.model.timefmt import format_ms
from operators.policy.load import load_policy

HERE = Path(__file__).resolve().parent
POLICY = HERE.parent / "examples" / "policy.yaml"
PREFIX = "mem."
DAY_MS = 86_400_000
SNAPSHOT_S = 2
"""The run's ``--snapshot-interval``; the script waits two of them before each reading."""
RESUME_TIMEOUT_S = 3600.0
CHUNK = 100_000
"""Customers produced at a time."""


def customer_events(first: int, count: int, at: int) -> Iterator[tuple[bytes, bytes]]:
    """Consent, then two product views a minute apart, for customers first..first+count."""
    for n in range(first, first + count):
        customer = f"c-{n:07d}"
        for k, (kind, props) in enumerate(
            [
                ("consent_changed", {"purpose": "marketing", "channel": "*", "granted": True}),
                ("product_view", {"product_id": f"p-{n % 97}"}),
                ("product_view", {"product_id": f"p-{(n + 1) % 97}"}),
            ]
        ):
            event = {
                "event_id": f"m-{n:07d}-{k}",
                "type": kind,
                "timestamp": format_ms(at + n * 10 + k * 60_000),
                "identifiers": {"customer_id": customer},
                "context": {"timezone": "Europe/Madrid", "channel": "web"},
                "properties": props,
            }
            yield customer.encode(), orjson.dumps(event)


def active_events(first: int, count: int, at: int) -> Iterator[tuple[bytes, bytes]]:
    """Customers first..first+count as ``make bench-state`` makes its active ones (a few days
    of product views, consent for 40 %, help searches for 30 %, checkouts for 20 %, loan
    checks for 5 %: 5.35 events each on average), each customer's days moved to end at
    ``at`` (and 10 ms later for each next customer)."""
    from state_size import Customers

    made = Customers(seed=first)
    for n in range(first, first + count):
        customer = f"c-{n:07d}"
        journey = made.journey(customer)
        shift = at + n * 10 - journey[-1].time
        for k, event in enumerate(journey):
            record = {
                "event_id": f"m-{n:07d}-{k}",
                "type": event.type,
                "timestamp": format_ms(event.time + shift),
                "identifiers": {"customer_id": customer},
                "context": dict(event.context),
                "properties": dict(event.properties),
            }
            yield customer.encode(), orjson.dumps(record)


KINDS = {"idle": customer_events, "active": active_events}
"""What each customer does (``--kind``): ``idle``, consent and two views; ``active``, the
state bench's mix."""


def gauge(port: int, name: str) -> float | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return None
    found = re.search(rf"^{name} (\S+)$", text.decode(), re.MULTILINE)
    return float(found.group(1)) if found else None


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert found is not None
    return int(found.group(1)) * 1024


def settle(flow: ConciergeProcess, port: int, customers: int, timeout: float) -> tuple[int, float]:
    """Wait until the flow holds ``customers`` and has packed them all (idle for 10 s), then
    two snapshot epochs; the RSS then, and when (``time.monotonic``) it held them all."""
    deadline = time.monotonic() + timeout
    held_at = 0.0
    # Customers are packed once idle for flows.journey.PACK_IDLE_MS (10 s)
    for name in ("concierge_customers_in_state", "concierge_customers_packed"):
        while gauge(port, name) != customers:
            if flow.exited():
                raise SystemExit(f"memory bench: the flow exited:\n{flow.log_tail()}")
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"memory bench: {name} is {gauge(port, name)}, not {customers}, "
                    f"after {timeout:.0f}s"
                )
            time.sleep(0.5)
        held_at = held_at or time.monotonic()
    time.sleep(2 * SNAPSHOT_S + 1)
    return rss(flow.pid), held_at


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def resume(args: argparse.Namespace, bootstrap: str, work: Path, customers: int) -> dict[str, Any]:
    """Start ``concierge run`` again on the same recovery and state directories and time it
    to ready (``/readyz`` 200: every customer's snapshot loaded, a first epoch committed) and
    to holding every customer again; its RSS then."""
    port = free_port()
    with ConciergeProcess(
        bootstrap, args.policy, PREFIX, work, stop_at_end=False, extra=flags(args, port)
    ) as flow:
        started = time.monotonic()
        deadline = started + RESUME_TIMEOUT_S
        while not ready(port):
            if flow.exited():
                raise SystemExit(f"memory bench: the resumed flow exited:\n{flow.log_tail()}")
            if time.monotonic() > deadline:
                raise SystemExit(f"memory bench: not ready after {RESUME_TIMEOUT_S:.0f} s")
            time.sleep(0.1)
        to_ready = time.monotonic() - started
        held, _ = settle(flow, port, customers, RESUME_TIMEOUT_S)  # as the first run's
    return {"seconds_to_ready": round(to_ready, 1), "rss_bytes": held}


def flags(args: argparse.Namespace, port: int) -> list[str]:
    extra = ["--metrics-port", str(port), "--snapshot-interval", str(SNAPSHOT_S)]
    if args.pack_idle_ms is not None:
        extra += ["--pack-idle-ms", str(args.pack_idle_ms)]
    return extra


# -- what one idle customer's bytes are, measured apart -------------------------------------


def parts(policy_path: Path) -> dict[str, int]:
    """Bytes of one of the bench's idle customers, part by part: their packed journey (the
    ``bytes`` object), the logic that holds it, and Bytewax's entry for their key with its
    next wake-up (in a child process: :func:`bytewax_per_key`)."""
    from flows.journey import JourneyConfig, JourneyLogic, pack
    from operators.ingest import Ingestor
    from operators.journey import Journey
    from operators.model.records import Event, Origin
    from operators.model.state import CustomerState

    policy = load_policy(policy_path.read_text())
    ingestor = Ingestor(policy)
    journey = Journey(CustomerState("cus_" + "0" * 20))
    at = int(time.time() * 1000) - 2 * DAY_MS
    for _, raw in customer_events(1, 1, at):
        event = ingestor.ingest(raw, Origin(line=1))
        assert isinstance(event, Event)
        journey.on_event(policy, event)
    packed = pack(journey, policy)
    logic = JourneyLogic(JourneyConfig(policy, wall_clock_timers=True), packed)
    per_key = {}
    for wake in ("without", "with"):  # each in a process of its own: freed memory is kept
        child = subprocess.run(
            [sys.executable, __file__, "--bytewax-per-key", wake],
            capture_output=True,
            text=True,
            check=True,
        )
        per_key[wake] = json.loads(child.stdout)
    return {
        "packed journey": sys.getsizeof(packed),
        "its logic object": sys.getsizeof(logic) + sys.getsizeof(logic._touched),
        "Bytewax's entry for the key": per_key["without"],
        "Bytewax's wake-up for the key": per_key["with"] - per_key["without"],
    }


KEYS = 200_000


def bytewax_per_key(wake: bool) -> int:
    """RSS per key a Bytewax ``stateful_batch`` step holds beside the key's logic object
    (keys of 24 characters, as canonical customer ids), with a wake-up or not."""
    from datetime import UTC, datetime

    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.operators import StatefulBatchLogic
    from bytewax.testing import TestingSink, TestingSource, run_main

    readings: dict[int, int] = {}
    far = datetime(2100, 1, 1, tzinfo=UTC)

    class Keep(StatefulBatchLogic[int, int, None]):
        __slots__ = ("count",)

        def __init__(self, count: int) -> None:
            self.count = count

        def on_batch(self, values: list[int]) -> tuple[list[int], bool]:
            if values[0] == 0:  # the probe, alone in the last batch
                readings[self.count] = rss(os.getpid())
            return [], StatefulBatchLogic.RETAIN

        def notify_at(self) -> datetime | None:
            return far if wake else None

        def snapshot(self) -> None:
            return None

    def held(count: int) -> int:
        flow = Dataflow("keys")
        keys = ((f"cus_{n:020d}", 1) for n in range(count))
        source = TestingSource(itertools.chain(keys, [("probe", 0)]), batch_size=1000)
        items = op.input("in", flow, source)
        kept = op.stateful_batch("keep", items, lambda _: Keep(count))
        op.output("out", kept, TestingSink([]))
        run_main(flow)  # type: ignore[no-untyped-call]
        return readings[count]

    before = held(1000)
    return round((held(KEYS) - before) / (KEYS - 1000) - sys.getsizeof(Keep(0)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--customers",
        default="10000,110000",
        help="customers held at each reading, in increasing order (default 10000,110000)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="then stop the flow and time a new one resuming every customer to ready",
    )
    parser.add_argument(
        "--kind",
        choices=sorted(KINDS),
        default="idle",
        help="idle: consent and two views each (default); active: the state bench's mix, "
        "5.35 events each",
    )
    parser.add_argument("--policy", type=Path, default=POLICY)
    parser.add_argument("--out", type=Path, default=HERE / "memory.json")
    parser.add_argument(
        "--pack-idle-ms", type=int, help="passed to concierge run (default: its own)"
    )
    parser.add_argument("--bytewax-per-key", choices=("with", "without"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bytewax_per_key:  # the child of parts()
        print(json.dumps(bytewax_per_key(args.bytewax_per_key == "with")))
        return 0
    steps = [int(n) for n in args.customers.split(",")]
    if len(steps) < 2 or steps != sorted(set(steps)) or steps[0] <= 0:
        parser.error("--customers: two or more increasing counts, e.g. 10000,110000")
    policy = load_policy(args.policy.read_text())
    at = int(time.time() * 1000) - 2 * DAY_MS
    readings: list[int] = []
    rates: list[int] = []
    """Events per second from producing each count's events to holding them all (producing
    included, and the start-up for the first count)."""
    resumed: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        work = Path(tmp)
        settings = concierge_topics(broker.bootstrap, policy, PREFIX)
        port = free_port()
        with ConciergeProcess(
            broker.bootstrap, args.policy, PREFIX, work, stop_at_end=False, extra=flags(args, port)
        ) as flow:
            started = time.monotonic()
            held = 0
            for total in steps:
                phase = time.monotonic()
                # in chunks: the events of a million customers are 700 MB as a list
                events = 0
                for first in range(held, total, CHUNK):
                    count = min(CHUNK, total - first)
                    chunk = list(KINDS[args.kind](first, count, at))
                    events += len(chunk)
                    preload(broker.bootstrap, settings.events_topic(), chunk)
                held = total
                print(f"{total:,} customers produced", file=sys.stderr)
                reading, held_at = settle(flow, port, total, 600 + total / 100)
                readings.append(reading)
                rates.append(round(events / (held_at - phase)))
                print(
                    f"  RSS {reading / 2**20:.1f} MiB; read at {rates[-1]:,} events/s",
                    file=sys.stderr,
                )
            seconds = time.monotonic() - started
            if args.resume:
                code, took = flow.stop(60)
                print(f"stopped ({code}) in {took:.1f} s; resuming", file=sys.stderr)
        if args.resume:
            resumed = resume(args, broker.bootstrap, work, steps[-1])
            print(f"  ready in {resumed['seconds_to_ready']} s", file=sys.stderr)
    slopes = [
        round((readings[k + 1] - readings[k]) / (steps[k + 1] - steps[k]))
        for k in range(len(steps) - 1)
    ]
    result: dict[str, Any] = {
        "kind": args.kind,
        "customers": steps,
        "rss_bytes": readings,
        "bytes_per_customer": slopes,
        "events_per_second": rates,
        "seconds": round(seconds, 1),
    }
    for k, slope in enumerate(slopes):
        print(
            f"concierge run: RSS {readings[k] / 2**20:.1f} MiB at {steps[k]:,} customers, "
            f"{readings[k + 1] / 2**20:.1f} MiB at {steps[k + 1]:,}: "
            f"{slope:,} bytes per {args.kind} customer; the last "
            f"{steps[k + 1] - steps[k]:,} read at {rates[k + 1]:,} events/s"
        )
    if resumed is not None:
        result["resume"] = resumed
        print(
            f"resumed {steps[-1]:,} customers: ready in {resumed['seconds_to_ready']} s, "
            f"RSS {resumed['rss_bytes'] / 2**20:.1f} MiB"
        )
    if args.kind == "idle":
        result["parts"] = measured = parts(args.policy)
        print("one idle customer, measured apart:")
        for label, size in measured.items():
            print(f"  {size:6,} bytes  {label}")
        print(f"  {sum(measured.values()):6,} bytes  in all; the slope's rest is the process's own")
    print(f"({seconds:.0f} s)")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
