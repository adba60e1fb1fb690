"""Bytes per idle customer in the whole ``concierge run`` process: identity graph, Bytewax
state and everything else included.

One ``concierge run`` on the embedded broker (fresh topics, recovery and state directories).
First ``--base`` customers (default 10,000), then ``--more`` (default 100,000) each give
marketing consent and view two products, two days before now (so nothing is decided and
nothing is due but their eviction, weeks away). After each phase the script waits until
the flow holds every customer (the ``concierge_customers_in_state`` gauge), then for two
snapshot epochs, and reads the process's resident set (``VmRSS`` of ``/proc/<pid>/status``).
The bytes per idle customer is the growth between the two readings divided by ``--more``.

The events are keyed by their ``customer_id`` and spread over the input's three
partitions. Progress goes to stderr; the result to stdout and ``bench/memory.json``.

    .venv/bin/python bench/memory.py [--base 10000] [--more 100000]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import ConciergeProcess, concierge_topics, preload

from flows.kafka.broker import EmbeddedBroker, free_port
from operators.model.timefmt import format_ms
from operators.policy.load import load_policy

HERE = Path(__file__).resolve().parent
POLICY = HERE.parent.parent / "shared" / "spec" / "reference" / "policy.yaml"
PREFIX = "mem."
DAY_MS = 86_400_000
SNAPSHOT_S = 2
"""The run's ``--snapshot-interval``; the script waits two of them before each reading."""


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


def settle(flow: ConciergeProcess, port: int, customers: int, timeout: float) -> int:
    """Wait until the flow holds ``customers`` and has packed them all (idle for 10 s), then
    two snapshot epochs; the RSS then."""
    deadline = time.monotonic() + timeout
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
    time.sleep(2 * SNAPSHOT_S + 1)
    return rss(flow.pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=10_000)
    parser.add_argument("--more", type=int, default=100_000)
    parser.add_argument("--policy", type=Path, default=POLICY)
    parser.add_argument("--out", type=Path, default=HERE / "memory.json")
    parser.add_argument(
        "--pack-idle-ms", type=int, help="passed to concierge run (default: its own)"
    )
    args = parser.parse_args()
    policy = load_policy(args.policy.read_text())
    at = int(time.time() * 1000) - 2 * DAY_MS
    with tempfile.TemporaryDirectory() as work, EmbeddedBroker() as broker:
        settings = concierge_topics(broker.bootstrap, policy, PREFIX)
        port = free_port()
        extra = ["--metrics-port", str(port), "--snapshot-interval", str(SNAPSHOT_S)]
        if args.pack_idle_ms is not None:
            extra += ["--pack-idle-ms", str(args.pack_idle_ms)]
        with ConciergeProcess(
            broker.bootstrap, args.policy, PREFIX, Path(work), stop_at_end=False, extra=extra
        ) as flow:
            started = time.monotonic()
            preload(
                broker.bootstrap, settings.events_topic(), list(customer_events(0, args.base, at))
            )
            print(f"{args.base:,} customers produced", file=sys.stderr)
            first = settle(flow, port, args.base, 600)
            print(f"  RSS {first / 2**20:.1f} MiB", file=sys.stderr)
            preload(
                broker.bootstrap,
                settings.events_topic(),
                list(customer_events(args.base, args.more, at)),
            )
            print(f"{args.more:,} more produced", file=sys.stderr)
            second = settle(flow, port, args.base + args.more, 1200)
            print(f"  RSS {second / 2**20:.1f} MiB", file=sys.stderr)
            seconds = time.monotonic() - started
    per_customer = (second - first) / args.more
    result = {
        "customers": [args.base, args.base + args.more],
        "rss_bytes": [first, second],
        "bytes_per_idle_customer": round(per_customer),
        "seconds": round(seconds, 1),
    }
    print(
        f"concierge run: RSS {first / 2**20:.1f} MiB at {args.base:,} customers, "
        f"{second / 2**20:.1f} MiB at {args.base + args.more:,}: "
        f"{per_customer:,.0f} bytes per idle customer ({seconds:.0f} s)"
    )
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
