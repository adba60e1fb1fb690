"""Bytes per customer with a million customers in state, against an empty-state baseline
measured in the same run.

Each customer's state is built by the real core, as the dataflow's per-customer step does:
``Journey(CustomerState(customer_id))`` fed that customer's events in time order through
``Journey.on_event``, kept in a dict keyed by customer id (as Bytewax keeps its keyed state).
The events are a short, seeded, realistic mix: 2-6 product views over a few days across 1-3
products, a marketing consent grant for 40 % of customers, help searches for 30 %, checkouts
(half of them completed) for 20 %, loan eligibility checks for 5 %, all in 2026 with
``context.timezone`` Europe/Madrid.

The baseline is the same customer ids, each mapped to a fresh ``Journey(CustomerState(id))``
that saw no event: the keys, the dict and the empty structures every customer costs anyway.

Three sizes per customer, for the baseline and for the active customers:

- RSS growth: ``/proc/self/statm`` resident set before and after building the dict (after
  ``gc.collect()``), divided by the number of customers. Baseline and active each run in a
  fresh child process (this script again, with a hidden ``--child`` flag), so one measurement
  cannot pollute the other.
- pickled: ``len(pickle.dumps(journey, pickle.HIGHEST_PROTOCOL))``, what the dataflow's
  ``snapshot`` writes to recovery, over a seeded sample of ``--sample`` customers.
- JSON: ``len(orjson.dumps(state_to_record(journey.state)))``, the record a merge transfers,
  over the same sample.

Then a worst-case single customer, flooded with adversarial input (20,000 product views over
2,000 distinct products and 1,000 help searches within three days, a third of them out of
order, plus about 7,000 redeliveries of recent events under the same event ids): its pickled
and JSON sizes and the bytes its journey holds in memory (``tracemalloc``: what is freed when
it is dropped), to compare with the per-customer bound the README states.

The numbers are printed as a table and written to ``bench/state_results.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import pickle
import platform
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

try:
    from operators.journey import Journey
    from operators.model.state import CustomerState
    from operators.model.state_records import state_to_record
except ImportError:  # an older tree, measured as the baseline: the core's earlier layout
    from operators.context.update import CustomerState  # type: ignore[attr-defined,no-redef]
    from operators.identity.merging import Journey  # type: ignore[attr-defined,no-redef]
    from operators.model.handover import state_to_record  # type: ignore[attr-defined,no-redef]
from operators.model.records import Event
from operators.model.timefmt import parse_ms
from operators.policy.compiled import Policy
from operators.policy.load import load_policy

REPO = Path(__file__).resolve().parents[1]
DEFAULT_POLICY = REPO.parent / "shared/spec/reference/policy.yaml"
RESULTS = Path(__file__).resolve().with_name("state_results.json")
PROTOCOL = pickle.HIGHEST_PROTOCOL
PROGRESS_EVERY = 100_000
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
YEAR_START = parse_ms("2026-01-01T00:00:00Z")
TIMEZONE = "Europe/Madrid"
CATALOGUE = 100_000
QUERIES = ("refund status", "change delivery address", "card declined", "reset password")
WORST_START = parse_ms("2026-06-01T07:00:00Z")
EVENT_FIELDS = frozenset(field.name for field in dataclasses.fields(Event))


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def rss_bytes() -> int:
    """The resident set of this process, after a full collection."""
    gc.collect()
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


# -- the customers -------------------------------------------------------------------------


class Customers:
    """Customer ids and each customer's events; the same seed gives the same customers.

    Ids come from their own generator, so the baseline (ids only) and the active run (ids
    and events) name the same customers. Every string an event carries is made afresh, as
    parsing a Kafka record would make it, so the state holds its own copies.
    """

    def __init__(self, seed: int) -> None:
        self._ids = random.Random(f"ids-{seed}")
        self._rng = random.Random(f"events-{seed}")
        self._events = 0

    def next_id(self) -> str:
        return f"cus_{self._ids.getrandbits(80):020x}"

    def event(
        self,
        customer_id: str,
        event_type: str,
        at: int,
        properties: dict[str, Any],
        channel: str = "web",
        event_id: str | None = None,
        watermark: int | None = None,
        late: bool = False,
    ) -> Event:
        """One event, marked late (when the model knows lateness) as the ingest would."""
        self._events += 1
        return Event(
            event_id=event_id or f"e-{self._events:014d}",
            type=event_type,
            time=at,
            identifiers={"customer_id": customer_id},
            context={"timezone": TIMEZONE, "channel": channel},
            properties=properties,
            watermark=at if watermark is None else watermark,
            **({"late": late} if "late" in EVENT_FIELDS else {}),
        )

    def journey(self, customer_id: str) -> list[Event]:
        """A few days of one customer's activity, in time order."""
        rng = self._rng
        start = YEAR_START + rng.randrange(330 * DAY)
        span = rng.randrange(DAY, 4 * DAY)
        plan: list[tuple[int, str, dict[str, Any], str]] = []
        if rng.random() < 0.4:
            grant = {"purpose": "marketing", "channel": "*", "granted": True}
            plan.append((start, "consent_changed", grant, "web"))
        products = [rng.randrange(CATALOGUE) for _ in range(rng.randint(1, 3))]
        for _ in range(rng.randint(2, 6)):
            viewed = {"product_id": f"prod-{rng.choice(products):06d}"}
            plan.append((start + rng.randrange(span), "product_view", viewed, "web"))
        if rng.random() < 0.3:
            at = start + rng.randrange(span)
            for _ in range(rng.randint(1, 4)):
                at += rng.randrange(20 * MINUTE)
                plan.append((at, "help_search", {"query": rng.choice(QUERIES)}, "app"))
        if rng.random() < 0.2:
            at = start + rng.randrange(span)
            cart_id = f"cart-{rng.getrandbits(40):010x}"
            value = rng.randrange(2000, 40000) / 100
            plan.append((at, "checkout_started", {"cart_id": cart_id, "value": value}, "web"))
            if rng.random() < 0.5:
                at += rng.randrange(5 * MINUTE, 25 * MINUTE)
                bought = {"product_id": f"prod-{products[0]:06d}", "cart_id": cart_id}
                plan.append((at, "purchase", bought, "web"))
        if rng.random() < 0.05:
            at = start
            for _ in range(rng.randint(1, 3)):
                at += rng.randrange(2 * DAY)
                plan.append((at, "loan_eligibility_check", {"amount": 15000}, "web"))
        plan.sort(key=lambda step: step[0])
        return [self.event(customer_id, t, at, props, ch) for at, t, props, ch in plan]

    def flood(self, customer_id: str, policy: Policy, seed: int) -> tuple[list[Event], int]:
        """The worst-case customer's input, in arrival order, and how many records the ingest
        would have dead-lettered instead: 20,000 product views over 2,000 products and 1,000
        help searches within three days; a third of them arrive out of order (half by up to
        the policy's allowed lateness, half by up to 12 hours), and after a third of them
        comes a redelivery (same event id and content) of one of the 200 before."""
        rng = random.Random(f"flood-{seed}")
        lateness: int | None = getattr(policy, "allowed_lateness", None)
        grant = {"purpose": "marketing", "channel": "*", "granted": True}
        planned: list[tuple[int, str, dict[str, Any], str]] = [
            (WORST_START, "consent_changed", grant, "web")
        ]
        views, searches = 20_000, 1_000
        total = views + searches
        for n in range(total):
            at = WORST_START + 3 * DAY * n // total
            if rng.random() < 1 / 3:
                far = lateness is None or rng.random() < 0.5
                at -= rng.randrange(12 * HOUR if far or lateness is None else max(1, lateness))
            if rng.random() < searches / total:
                planned.append((at, "help_search", {"query": rng.choice(QUERIES)}, "app"))
            else:
                product = {"product_id": f"prod-{rng.randrange(2000):06d}"}
                planned.append((at, "product_view", product, "web"))
        arrivals: list[tuple[int, str, dict[str, Any], str, str | None]] = []
        for n, (at, event_type, props, channel) in enumerate(planned):
            event_id = f"e-{self._events + n + 1:014d}"
            arrivals.append((at, event_type, props, channel, event_id))
            if rng.random() < 1 / 3:
                again = arrivals[-rng.randint(1, min(200, len(arrivals)))]
                arrivals.append((*again[:2], dict(again[2]), *again[3:]))
        self._events += len(planned)
        events: list[Event] = []
        dead_letters = 0
        latest = 0
        for at, event_type, props, channel, event_id in arrivals:
            latest = max(latest, at)
            late = lateness is not None and latest - at > lateness
            if late and getattr(policy, "dead_letter_late", False):
                dead_letters += 1
                continue
            events.append(
                self.event(customer_id, event_type, at, props, channel, event_id, latest, late)
            )
        return events, dead_letters


# -- one measurement, in a child process ---------------------------------------------------


def sample_indices(customers: int, sample: int, seed: int) -> set[int]:
    if sample >= customers:
        return set(range(customers))
    return set(random.Random(f"sample-{seed}").sample(range(customers), sample))


def spread(values: Sequence[int]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "mean": round(statistics.fmean(ordered), 1),
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)],
        "max": ordered[-1],
    }


def pickled_parts(journey: Journey) -> dict[str, int]:
    """Bytes of each part of a journey, each pickled on its own (so each carries a few bytes
    of framing, and what parts share is counted in each)."""
    state = journey.state
    parts = {
        f"state.{name}": len(pickle.dumps(getattr(state, name), PROTOCOL))
        for name in type(state).__slots__
    }
    for field in dataclasses.fields(journey):
        if field.name != "state":
            parts[field.name] = len(pickle.dumps(getattr(journey, field.name), PROTOCOL))
    return parts


def entries(state: CustomerState) -> dict[str, int]:
    """How many entries each collection of a state holds."""
    counts = {
        name: len(value)
        for name in type(state).__slots__
        if isinstance(value := getattr(state, name), (dict, list, set, tuple))
    }
    counts["window_events"] = sum(len(window) for window in state.windows.values())
    return counts


def mean_of(rows: Iterable[dict[str, int]]) -> dict[str, float]:
    rows = list(rows)
    keys = sorted({key for row in rows for key in row})
    return {key: round(statistics.fmean(row.get(key, 0) for row in rows), 2) for key in keys}


def sizes(journeys: Sequence[Journey]) -> dict[str, Any]:
    """Pickled and JSON sizes of the sampled journeys, with a breakdown by part."""
    pickled = [len(pickle.dumps(journey, PROTOCOL)) for journey in journeys]
    records = [state_to_record(journey.state) for journey in journeys]
    as_json = [len(orjson.dumps(record)) for record in records]
    return {
        "sample": len(journeys),
        "pickled_bytes": spread(pickled),
        "json_bytes": spread(as_json),
        "pickled_bytes_by_part": mean_of(pickled_parts(journey) for journey in journeys),
        "json_bytes_by_part": mean_of(
            {key: len(orjson.dumps(value)) for key, value in record.items()} for record in records
        ),
        "entries": mean_of(entries(journey.state) for journey in journeys),
    }


def measure(kind: str, policy: Policy, customers: int, seed: int, sample: int) -> dict[str, Any]:
    """Build ``customers`` journeys (``kind`` baseline: empty; active: fed their events) and
    measure them."""
    source = Customers(seed)
    picked = sample_indices(customers, sample, seed)
    active = kind == "active"
    journeys: dict[str, Journey] = {}
    events = 0
    core_seconds = 0.0
    before = rss_bytes()
    started = time.perf_counter()
    for n in range(customers):
        customer_id = source.next_id()
        journey = Journey(CustomerState(customer_id))
        if active:
            batch = source.journey(customer_id)
            clock = time.perf_counter()
            for event in batch:
                journey.on_event(policy, event)
            core_seconds += time.perf_counter() - clock
            events += len(batch)
            del batch
        journeys[customer_id] = journey
        if (n + 1) % PROGRESS_EVERY == 0:
            progress(
                f"  {kind}: {n + 1:,} of {customers:,} customers "
                f"({time.perf_counter() - started:.0f} s, RSS {rss_mib():,.0f} MiB)"
            )
    build_seconds = time.perf_counter() - started
    after = rss_bytes()
    if len(journeys) != customers:
        raise RuntimeError(f"{customers - len(journeys)} customer ids repeated")
    sampled = [journey for n, journey in enumerate(journeys.values()) if n in picked]
    result: dict[str, Any] = {
        "customers": customers,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "rss_bytes_per_customer": round((after - before) / customers, 1),
        "build_seconds": round(build_seconds, 2),
        **sizes(sampled),
    }
    if active:
        result |= {
            "events": events,
            "events_per_customer": round(events / customers, 2),
            "core_seconds": round(core_seconds, 2),
            "core_events_per_s": round(events / core_seconds) if core_seconds else None,
        }
    return result


def rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES / 2**20


def run_child(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """This script again, in a fresh interpreter, measuring ``kind``."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        kind,
        "--customers",
        str(args.customers),
        "--seed",
        str(args.seed),
        "--sample",
        str(args.sample),
        "--policy",
        str(args.policy),
    ]
    done = subprocess.run(command, stdout=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {kind} measurement exited {done.returncode}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# -- the worst-case customer ---------------------------------------------------------------


def worst_case(policy: Policy, seed: int) -> dict[str, Any]:
    """One customer flooded with adversarial input: its sizes and what its state holds."""
    source = Customers(seed)
    customer_id = source.next_id()
    events, dead_letters = source.flood(customer_id, policy, seed)
    count = len(events)
    distinct = len({event.event_id for event in events})
    out_of_order = sum(event.time < event.watermark for event in events)
    late = sum(getattr(event, "late", False) for event in events)
    tracemalloc.start()
    journey = Journey(CustomerState(customer_id))
    started = time.perf_counter()
    outputs = 0
    for event in events:
        outputs += len(journey.on_event(policy, event))
    seconds = time.perf_counter() - started
    blob = pickle.dumps(journey, PROTOCOL)
    del events, event
    gc.collect()
    with_journey, _ = tracemalloc.get_traced_memory()
    del journey
    gc.collect()
    without_journey, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    journey = pickle.loads(blob)
    state = journey.state
    longest = {
        signal: max((len(w) for (s, _), w in state.windows.items() if s == signal), default=0)
        for signal in {signal for signal, _ in state.windows}
    }
    record = state_to_record(state)
    pickled = len(blob)
    return {
        "events": count,
        "distinct_event_ids": distinct,
        "out_of_order_events": out_of_order,
        "late_events": late,
        "dead_lettered_as_late": dead_letters,
        "outputs": outputs,
        "seconds": round(seconds, 3),
        "core_events_per_s": round(count / seconds) if seconds else None,
        "pickled_bytes": pickled,
        "pickled_bytes_per_window": round(pickled / max(1, len(state.windows)), 1),
        "json_bytes": len(orjson.dumps(record)),
        "memory_bytes": with_journey - without_journey,
        "pickled_bytes_by_part": pickled_parts(journey),
        "json_bytes_by_part": {key: len(orjson.dumps(value)) for key, value in record.items()},
        "entries": entries(state),
        "longest_window": longest,
        "at_least": {signal: policy.counting[signal].at_least for signal in longest},
    }


# -- the report ----------------------------------------------------------------------------


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def render(report: dict[str, Any]) -> str:
    base, act, worst = report["baseline"], report["active"], report["worst_case"]
    cfg, machine = report["config"], report["machine"]

    def row(label: str, rss: Any, pickled: Any, as_json: Any, spec: str) -> str:
        cells = ["-" if value is None else format(value, spec) for value in (rss, pickled, as_json)]
        return f"  {label:<30}" + "".join(f"{cell:>14}" for cell in cells)

    def sized(result: dict[str, Any]) -> tuple[float, float, float]:
        return (
            result["rss_bytes_per_customer"],
            result["pickled_bytes"]["mean"],
            result["json_bytes"]["mean"],
        )

    b, a = sized(base), sized(act)
    top = sorted(act["pickled_bytes_by_part"].items(), key=lambda kv: -kv[1])[:4]
    lines = [
        f"Concierge state size: {cfg['customers']:,} customers (seed {cfg['seed']}), "
        f"pickled and JSON over a sample of {act['sample']:,}; {machine['cpus']} CPUs",
        "",
        f"  {'bytes per customer':<30}{'RSS':>14}{'pickled':>14}{'JSON':>14}",
        row("baseline (empty journeys)", *b, ",.0f"),
        row("active customers", *a, ",.0f"),
        row("active - baseline", *(x - y for x, y in zip(a, b, strict=True)), ",.0f"),
        row("ratio active / baseline", *(ratio(x, y) for x, y in zip(a, b, strict=True)), ".2f"),
        "",
        f"  active pickled p50 / p99 / max: {act['pickled_bytes']['p50']:,} / "
        f"{act['pickled_bytes']['p99']:,} / {act['pickled_bytes']['max']:,};  "
        f"JSON p50 / p99 / max: {act['json_bytes']['p50']:,} / {act['json_bytes']['p99']:,} / "
        f"{act['json_bytes']['max']:,}",
        "  largest pickled parts (mean, each pickled alone): "
        + ", ".join(f"{name} {size:,.0f}" for name, size in top),
        f"  RSS in all: baseline {base['rss_after_bytes'] - base['rss_before_bytes']:,} bytes, "
        f"active {act['rss_after_bytes'] - act['rss_before_bytes']:,} bytes",
        "",
        f"  worst-case customer ({worst['events']:,} events, {worst['distinct_event_ids']:,} "
        f"distinct ids, {worst['out_of_order_events']:,} out of order, {worst['late_events']:,} "
        f"late): pickled {worst['pickled_bytes']:,} bytes "
        f"({worst['pickled_bytes'] / a[1]:,.0f}x the active mean), JSON {worst['json_bytes']:,}"
        f" bytes, in memory {worst['memory_bytes']:,} bytes",
        "    it holds: "
        + ", ".join(f"{name} {n:,}" for name, n in worst["entries"].items() if n)
        + f"; {worst['pickled_bytes_per_window']:,.0f} pickled bytes per window",
        "    longest window per signal: "
        + ", ".join(
            f"{name} {n} (at_least {worst['at_least'][name]})"
            for name, n in sorted(worst["longest_window"].items())
        ),
        "",
        f"  build: baseline {base['build_seconds']:.1f} s; active {act['build_seconds']:.1f} s "
        f"for {act['events']:,} events ({act['events_per_customer']:.1f} per customer), "
        f"{act['core_events_per_s']:,} events/s through Journey.on_event; worst case "
        f"{worst['core_events_per_s']:,} events/s",
    ]
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers in state")
    parser.add_argument("--seed", type=int, default=7, help="seed of ids and events")
    parser.add_argument(
        "--sample", type=int, default=10_000, help="customers whose pickle and JSON are sized"
    )
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy YAML")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--child", choices=("baseline", "active"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.customers < 1 or args.sample < 1:
        parser.error("--customers and --sample must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    policy_path: Path = args.policy.resolve()
    policy = load_policy(policy_path.read_text(encoding="utf-8"), str(policy_path))
    if args.child is not None:
        result = measure(args.child, policy, args.customers, args.seed, args.sample)
        print(json.dumps(result))
        return 0
    progress(f"baseline: {args.customers:,} empty journeys, in a child process")
    baseline = run_child("baseline", args)
    progress(f"active: {args.customers:,} customers' events through the core, in a child process")
    active = run_child("active", args)
    progress("worst case: one flooded customer")
    worst = worst_case(policy, args.seed)
    report: dict[str, Any] = {
        "config": {
            "customers": args.customers,
            "seed": args.seed,
            "sample": args.sample,
            "policy": str(policy_path),
            "pickle_protocol": PROTOCOL,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version,
            "platform": platform.platform(),
            "page_bytes": PAGE_BYTES,
        },
        "baseline": baseline,
        "active": active,
        "ratios_active_to_baseline": {
            "rss": ratio(active["rss_bytes_per_customer"], baseline["rss_bytes_per_customer"]),
            "pickled": ratio(active["pickled_bytes"]["mean"], baseline["pickled_bytes"]["mean"]),
            "json": ratio(active["json_bytes"]["mean"], baseline["json_bytes"]["mean"]),
        },
        "worst_case": worst,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(render(report))
    print(f"\n  {report['wall_seconds']:.0f} s in all; numbers in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
