"""Where one event's time goes in ``concierge run``, measured in one run: a budget per event.

On one embedded broker and the same preloaded events (``make bench``'s, 100,000 by default):

1. **Bytewax's scaffolding**, in this process, each flow reading the events and writing one
   record per event (no recovery):

   - (b) ``KafkaSource`` -> parse (``Ingestor.ingest``) -> ``KafkaSink``: ``make bench``'s
     passthrough;
   - (b+batch) the same with :data:`BATCH_STEPS` more ``flat_map_batch`` steps that pass
     the batch on, as Concierge's routing steps do;
   - (b+customer) the same with the events keyed by customer through one ``stateful_batch``
     step that keeps a small state per customer, as Concierge's journey step;
   - (b+single) the same with, before it, one ``stateful_batch`` step every event goes
     through under one key, as Concierge's identity step.

   Each difference to (b) is what that kind of step costs an event.
2. **The flow**: ``concierge run --stop-at-end`` (c), timed, then the same under
   ``--snapshot-interval 1`` and ``3600`` (no snapshot but the last): the differences are
   what snapshots cost at the default interval and every second (a run of 100,000 events
   lasts about three intervals of 5 s, so the first is small beside the noise); and on
   empty topics, its fixed cost (start-up,
   finding the partitions, reaching their end), which the figures per event leave out.
   Then (c) once more under py-spy (``--nonblocking``, so the flow is not paused;
   ``--idle``, so time spent waiting is sampled too), and the samples of its dataflow
   thread are put in buckets by the step they are in (:func:`bucket`): a bucket's time per
   event is its share of the samples times (c)'s time per event.
3. **The steps timed from inside**: (c) once more, on the events and on empty topics, with
   ``bench/timed`` on ``PYTHONPATH``: its ``sitecustomize`` wraps each step's Python entry
   point in ``time.thread_time`` and writes what each took (:func:`per_step`). py-spy's
   shares come from samples of a running process, which it reads without stopping it; the
   timings are the CPU each call took, and where the two disagree (the journey step: about
   8 µs by the samples, 14 timed) the timings are the ones to believe.

Best of ``--repeat`` for the timings (default 3). The table goes to stdout and
``bench/budget.json``; progress to stderr. About 3 minutes here.

    .venv/bin/python bench/budget.py [--events 100000] [--customers 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import run_main

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import (
    DEFAULT_POLICY,
    FlowFailed,
    Parser,
    SinkItem,
    concierge_topics,
    create_topics,
    generate,
    passthrough_flow,
    preload,
    progress,
    time_concierge,
)

from flows.kafka.broker import EmbeddedBroker
from operators.policy.load import load_policy

HERE = Path(__file__).resolve().parent
BATCH_STEPS = 8
"""Concierge's ``flat_map_batch`` steps an event's batch passes through on its way."""
SAMPLES_PER_S = 200
PY_SPY = Path(sys.executable).with_name("py-spy")


# -- 1. Bytewax's scaffolding --------------------------------------------------------------


class _Customer(StatefulBatchLogic[bytes, bytes, int]):
    """A customer's step that counts their events and passes each on."""

    def __init__(self, seen: int | None) -> None:
        self.seen = seen or 0

    def on_batch(self, values: list[bytes]) -> tuple[list[bytes], bool]:
        self.seen += len(values)
        return values, StatefulBatchLogic.RETAIN

    def snapshot(self) -> int:
        return self.seen


def _keyed(batch: list[SinkItem]) -> list[tuple[str, SinkItem]]:
    return [(str(item.key), item) for item in batch]


def _unkeyed(batch: list[tuple[str, SinkItem]]) -> list[SinkItem]:
    return [item for _, item in batch]


def _one_key(batch: list[SinkItem]) -> list[tuple[str, SinkItem]]:
    return [("one", item) for item in batch]


def _customer_steps(records: Stream[SinkItem]) -> Stream[SinkItem]:
    keyed = op.flat_map_batch("key", records, _keyed)
    return op.flat_map_batch("unkey", op.stateful_batch("customer", keyed, _Customer), _unkeyed)


def _single_steps(records: Stream[SinkItem]) -> Stream[SinkItem]:
    one = op.flat_map_batch("one", records, _one_key)
    through = op.flat_map_batch("through", op.stateful_batch("single", one, _Customer), _unkeyed)
    return _customer_steps(through)


def _batch_steps(records: Stream[SinkItem]) -> Stream[SinkItem]:
    for n in range(BATCH_STEPS):
        records = op.flat_map_batch(f"pass{n}", records, list)
    return records


BETWEEN: dict[str, Callable[[Stream[SinkItem]], Stream[SinkItem]] | None] = {
    "b": None,
    "b+batch": _batch_steps,
    "b+customer": _customer_steps,
    "b+single": _single_steps,
}
"""(b), and what each of the others has between its parse and its sink."""


EMPTY = "budget.empty"


def time_scaffold(kind: str, bootstrap: str, policy: Any, topic: str, out_topic: str) -> float:
    parser = Parser(policy, topic)
    flow = passthrough_flow(parser, bootstrap, topic, out_topic, BETWEEN[kind])
    started = time.perf_counter()
    run_main(flow)  # type: ignore[no-untyped-call]
    return time.perf_counter() - started


# -- 2. the flow ---------------------------------------------------------------------------


def time_flow(
    bootstrap: str,
    policy_path: Path,
    prefix: str,
    work: Path,
    extra: list[str],
    wrap: str = "",
    env: dict[str, str] | None = None,
) -> float:
    """:func:`throughput.time_concierge`, with the flow wrapped in ``wrap`` (a profiler) or
    in nothing, whatever ``CONCIERGE_BENCH_WRAP`` says, and ``env`` in its environment."""
    changes = {"CONCIERGE_BENCH_WRAP": wrap, **(env or {})}
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        return time_concierge(bootstrap, policy_path, prefix, work, extra=extra)
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


TIMED = HERE / "timed"
"""The ``sitecustomize`` that times the flow's Python steps from inside (``bench/timed``)."""
STEPS: list[tuple[str, str]] = [
    ("journey", "journey step: events (context, moments, decisions)"),
    ("journey timers", "journey step: timers"),
    ("journey at the end", "journey step: the end of input"),
    ("journey: when to wake", "journey step: when to wake (notify_at)"),
    ("ingest", "ingest: parse, validate, identifiers (Ingestor.ingest)"),
    ("consume", "consume: the input's Kafka reads, progress, counting"),
    ("identity", "identity step (graph, RocksDB, alignment)"),
    ("snapshots of customers", "snapshots: pickling the customers touched"),
    ("emit", "emit: encode the records, count them"),
    ("produce", "produce: hand the records to the producer, flush"),
    ("outside", "the rest of the dataflow thread: Bytewax's Rust, routing, recovery writes"),
    ("waiting", "waiting: the run's time per event less its dataflow thread's CPU"),
]
"""What the timed run's lines are, in the order printed."""
DERIVED = frozenset({"consume", "outside", "waiting"})
"""The lines worked out from the others rather than timed under their own label."""


def time_steps(
    bootstrap: str, policy_path: Path, prefix: str, work: Path, empty: bool
) -> tuple[float, dict[str, Any]]:
    """(c) once more with its steps timed from inside (:data:`TIMED`): its time, and what
    ``bench/timed/sitecustomize.py`` wrote."""
    times = work / f"{prefix}times.jsonl"
    path = os.pathsep.join(filter(None, [str(TIMED), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": path, "CONCIERGE_BUDGET_TIMES": str(times)}
    seconds = time_flow(bootstrap, policy_path, prefix, work, [], env=env)
    lines = times.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1, f"{times}: {len(lines)} lines, not one (empty: {empty})"
    written: dict[str, Any] = json.loads(lines[0])
    return seconds, written


BUCKETS: list[tuple[str, str]] = [
    ("ingest", "ingest: parse, validate, identifiers (Ingestor.ingest)"),
    ("consume", "consume: the input's Kafka reads"),
    ("internal", "consume: the internal topics (loop, frontier)"),
    ("identity", "identity step (graph, RocksDB, alignment)"),
    ("journey", "journey step (context, moments, decisions)"),
    ("notify", "journey step: when to wake (notify_at)"),
    ("emit", "emit: encode the records, count them"),
    ("produce", "produce: write the records, wait for the brokers' acknowledgement"),
    ("routing", "routing between steps (flat_map_batch)"),
    ("snapshot customers", "snapshots: customers"),
    ("snapshot other", "snapshots: identity step, sources"),
    ("metrics", "metrics (prometheus_client)"),
    ("start and end", "start and end (recovery files, partitions, closing)"),
    ("bytewax", "Bytewax's own (Rust: steps, exchanges, recovery writes; waiting for input)"),
    ("other", "other"),
]


def bucket(frames: list[str]) -> str | None:
    """The bucket of one sample of the dataflow's thread (frames root first); None for
    samples of other threads and of the start-up."""
    names = [frame.split(" (")[0] for frame in frames]
    if "_run_dataflow" not in names:
        return None
    above = names[names.index("_run_dataflow") + 1 :]
    if not above:
        return "bytewax"
    if any("prometheus_client" in frame for frame in frames):
        return "metrics"
    top = above[0]
    if top.endswith(".snapshot"):
        return "snapshot customers" if top.startswith("JourneyLogic") else "snapshot other"
    if top == "_EventPartition.next_batch":
        return "ingest" if "Ingestor.ingest" in above else "consume"
    if top.endswith(".next_batch"):
        return "internal"
    if top.startswith("IdentityLogic"):
        return "identity"
    if top == "JourneyLogic.notify_at":
        return "notify"
    if top.startswith("JourneyLogic"):
        return "journey"
    if top in ("_emit", "_identity_records", "_encode_dead_letters", "_frontier"):
        return "emit"
    if top.endswith("write_batch"):
        return "produce"
    if top == "build_flow.<locals>.<lambda>" and len(above) > 1:  # a step's builder
        if above[1].startswith("JourneyLogic"):
            return "journey"
        if above[1].startswith("IdentityLogic"):
            return "identity"
    if top.startswith("_to_") or top in ("_dead_letters", "build_flow.<locals>.<lambda>"):
        return "routing"
    if top.endswith((".close", ".build_part", ".start", ".__init__")) or top in (
        "purge_forgotten",
        "_prepare_recovery",
        "_drop_unfinished",
        "describe",
        "build_flow",
        "ensure_topics",
        "partitions_of",
        "wait_for_brokers",
        "KafkaEventSource.list_parts",
    ):
        return "start and end"
    return "other"


def profile(path: Path) -> Counter[str]:
    """Samples per bucket in py-spy's raw output (``stack;frames count`` lines)."""
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        found = bucket(stack.split(";"))
        if found is not None:
            counts[found] += int(n)
    return counts


# -- the run -------------------------------------------------------------------------------


@dataclass
class Timings:
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def note(self, name: str, seconds: float) -> None:
        self.seconds.setdefault(name, []).append(seconds)
        progress(f"  {name:<24}{seconds:7.2f} s")

    def best(self, name: str) -> float:
        return min(self.seconds[name])


FLOWS = (
    ("c", []),
    ("c, snapshots every second", ["--snapshot-interval", "1"]),
    ("c, one snapshot", ["--snapshot-interval", "3600"]),
    ("c, empty", []),
)
"""(c) as it runs (a snapshot every 5 s), with one every second, with none but the one at
the end, and on empty topics (its fixed cost: start-up, finding the partitions, reaching
their end)."""


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    policy_path: Path = args.policy.resolve()
    policy = load_policy(policy_path.read_text(encoding="utf-8"), str(policy_path))
    progress(f"generating {args.events} events ({args.customers} customers)")
    records = generate(args.customers, args.seed, args.events)
    timings = Timings()
    flame = args.flame or work / "flame.txt"
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap
        topic = "budget.input"
        create_topics(bootstrap, [topic])
        preload(bootstrap, topic, records)
        create_topics(bootstrap, [EMPTY])
        for round_no in range(args.repeat):
            progress(f"round {round_no + 1} of {args.repeat}")
            for kind in [*BETWEEN, "b, empty"]:
                out = f"budget.out.{kind}.{round_no}"
                create_topics(bootstrap, [out])
                empty = kind == "b, empty"
                steps, read = ("b", EMPTY) if empty else (kind, topic)
                timings.note(kind, time_scaffold(steps, bootstrap, policy, read, out))
            for n, (name, extra) in enumerate(FLOWS):
                prefix = f"budget.c{n}-{round_no}."
                settings = concierge_topics(bootstrap, policy, prefix)
                if name != "c, empty":
                    preload(bootstrap, settings.events_topic(), records)
                timings.note(name, time_flow(bootstrap, policy_path, prefix, work, extra))
        progress("profiling (c)")
        prefix = "budget.profiled."
        settings = concierge_topics(bootstrap, policy, prefix)
        preload(bootstrap, settings.events_topic(), records)
        wrap = f"{PY_SPY} record --nonblocking --idle -f raw -r {SAMPLES_PER_S} -o {flame} --"
        profiled = time_flow(bootstrap, policy_path, prefix, work, [], wrap)
        progress(f"  {'c under py-spy':<24}{profiled:7.2f} s")
        progress("timing (c)'s steps from inside")
        timed = {}
        for empty in (False, True):
            prefix = f"budget.timed{int(empty)}."
            settings = concierge_topics(bootstrap, policy, prefix)
            if not empty:
                preload(bootstrap, settings.events_topic(), records)
            timed[empty] = time_steps(bootstrap, policy_path, prefix, work, empty)
            progress(f"  {'c timed' + (', empty' if empty else ''):<24}{timed[empty][0]:7.2f} s")
    result = summary(args.events, timings, profiled, profile(flame))
    result["us_per_event"]["timed"] = per_step(args.events, timed[False], timed[True])
    return result


def per_step(
    events: int, run: tuple[float, dict[str, Any]], empty: tuple[float, dict[str, Any]]
) -> dict[str, float]:
    """CPU per event of each step, timed from inside, the empty run's left out: the source's
    reads without the ingest they call, the rest of the dataflow thread, and the time the
    run spent not in it (waiting for the brokers, or the other core)."""

    def per_event(label: str) -> float:
        full = run[1]["cpu"].get(label, 0.0) - empty[1]["cpu"].get(label, 0.0)
        return full / events * 1e6

    rows = {label: per_event(label) for label, _ in STEPS if label not in DERIVED}
    rows["consume"] = per_event("source") - rows["ingest"]
    thread = (run[1]["dataflow_thread"] - empty[1]["dataflow_thread"]) / events * 1e6
    rows["outside"] = thread - sum(rows.values())
    rows["waiting"] = (run[0] - empty[0]) / events * 1e6 - thread
    return {labelled: round(rows[label], 1) for label, labelled in STEPS}


def summary(events: int, timings: Timings, profiled: float, counts: Counter[str]) -> dict[str, Any]:
    def per_event(seconds: float) -> float:
        return round(seconds / events * 1e6, 1)

    b = timings.best("b")
    scaffold = {
        "the passthrough (b): read, parse, write": per_event(b - timings.best("b, empty")),
        f"{BATCH_STEPS} more batch steps": per_event(timings.best("b+batch") - b),
        "a per-customer stateful step": per_event(timings.best("b+customer") - b),
        "a single-key stateful step and a per-customer one": per_event(
            timings.best("b+single") - b
        ),
    }
    fixed = timings.best("c, empty")
    c = timings.best("c") - fixed
    # The fixed cost is left out of (c); so are the samples of the start and the end.
    sampled = sum(counts.values()) - counts["start and end"]
    rows = {
        label: per_event(c * counts[name] / sampled)
        for name, label in BUCKETS
        if name != "start and end"
    }
    return {
        "events": events,
        "us_per_event": {
            "scaffold": scaffold,
            "concierge": per_event(c),
            "snapshots": per_event(timings.best("c") - timings.best("c, one snapshot")),
            "snapshots every second": per_event(
                timings.best("c, snapshots every second") - timings.best("c, one snapshot")
            ),
            "profile": rows,
        },
        "seconds": {name: round(min(runs), 2) for name, runs in timings.seconds.items()},
        "profiled_seconds": round(profiled, 2),
        "samples": dict(counts),
    }


def render(result: dict[str, Any]) -> str:
    us = result["us_per_event"]
    lines = [
        f"Where an event's time goes, µs per event ({result['events']:,} events, best of the "
        "rounds)",
        "",
        "Bytewax's scaffolding (in this process):",
        *(f"  {value:8.1f}  {label}" for label, value in us["scaffold"].items()),
        "",
        f"concierge run --stop-at-end (c), without its fixed cost: {us['concierge']:.1f}",
        f"  snapshots every 5 s, against one at the end: {us['snapshots']:.1f}",
        f"  snapshots every second, against one at the end: {us['snapshots every second']:.1f}",
        "  by the dataflow thread's samples (py-spy, their shares of (c)):",
        *(
            f"  {value:8.1f}  {label}"
            for label, value in sorted(us["profile"].items(), key=lambda kv: -kv[1])
        ),
        "  timed from inside (CPU of each step's calls, in one more run of (c)):",
        *(f"  {value:8.1f}  {label}" for label, value in us["timed"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY)
    parser.add_argument("--out", type=Path, default=HERE / "budget.json")
    parser.add_argument("--flame", type=Path, help="keep py-spy's raw samples here")
    args = parser.parse_args(argv)
    if not PY_SPY.exists():
        print(f"budget: {PY_SPY} is missing: make install puts it there", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="concierge-budget-") as work:
        try:
            result = measure(args, Path(work))
        except FlowFailed as err:
            print(f"FAILED: {err}", file=sys.stderr)
            return 1
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
