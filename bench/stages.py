"""Where one event's time goes: each stage of the flow run alone, in this process, over the
same generated events, in microseconds of CPU per event.

1. ingest: ``Ingestor.ingest`` (parse, validate, normalise, build the event);
2. identity: ``flows.identity.IdentityLogic`` fed the ingested events in batches of 1,000
   with the partition's progress (the graph in memory, as ``bench/scale_out.py`` does);
3. journey: ``flows.journey.JourneyLogic`` per customer, fed what the identity step routed,
   grouped by customer within batches of 500 as Bytewax groups a batch by key; each
   customer snapshotted once at the end (Kafka mode snapshots every touched customer at
   every epoch);
4. emit: ``flows.orchestrator._emit``, encoding what the journeys decided.

No Bytewax and no broker: the sum is the Python the flow spends per event, to hold beside
the ~11 us Bytewax spends per event and step, and the figures say which stage to work on.
Best of ``--repeat`` runs (default 3), since the machine is shared.

    .venv/bin/python bench/stages.py [--events 100000] [--customers 3000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.commands.generator import Generator
from flows.identity import IdentityConfig, IdentityLogic
from flows.journey import JourneyConfig, JourneyLogic
from flows.orchestrator import _emit
from flows.progress import InputFrontier
from flows.runtime import tune_gc
from operators.identity.alignment import Progress
from operators.identity.graph import DictStore
from operators.identity.resolution import ForCustomer
from operators.ingest import Ingestor
from operators.model.records import Event, Origin
from operators.policy.load import load_policy

HERE = Path(__file__).resolve().parent
POLICY = HERE.parent.parent / "shared" / "spec" / "reference" / "policy.yaml"
PART = "events#0"


def cpu(work: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    started = time.process_time()
    result = work()
    return time.process_time() - started, result


def ingest(policy: Any, records: list[bytes]) -> list[Any]:
    ingestor = Ingestor(policy)
    return [ingestor.ingest(raw, Origin(line=n)) for n, raw in enumerate(records, 1)]


def identity(policy: Any, events: list[Event]) -> list[ForCustomer]:
    config = IdentityConfig(policy.identifier_rules, DictStore, [PART], frontier=InputFrontier())
    logic = IdentityLogic(config, None)
    routed: list[Any] = []
    for n in range(0, len(events), 1000):
        batch: list[Any] = events[n : n + 1000]
        clock = max(e.time for e in batch)
        out, _ = logic.on_batch([*batch, Progress(PART, clock, caught_up=False)])
        routed.extend(out)
    out, _ = logic.on_batch([Progress(PART, None, caught_up=True, ended=True)])
    routed.extend(out)
    return [item for item in routed if isinstance(item, ForCustomer)]


def journeys(policy: Any, items: list[ForCustomer]) -> list[Any]:
    config = JourneyConfig(policy, wall_clock_timers=False)
    logics: dict[str, JourneyLogic] = {}
    emitted: list[Any] = []
    for n in range(0, len(items), 500):
        by_customer: dict[str, list[ForCustomer]] = {}
        for item in items[n : n + 500]:
            by_customer.setdefault(item.customer_id, []).append(item)
        for customer, values in by_customer.items():
            logic = logics.get(customer)
            if logic is None:
                logic = logics[customer] = JourneyLogic(config, None)
            out, _ = logic.on_batch(values)
            emitted.extend((customer, o) for o in out)
    for logic in logics.values():
        logic.snapshot()
    return emitted


def emit(emitted: list[Any]) -> int:
    return len(list(_emit(emitted)))


def measure(policy: Any, records: list[bytes]) -> dict[str, float]:
    seconds: dict[str, float] = {}
    seconds["ingest"], ingested = cpu(lambda: ingest(policy, records))
    events = [e for e in ingested if isinstance(e, Event) and e.type != "feedback"]
    seconds["identity"], items = cpu(lambda: identity(policy, events))
    seconds["journey"], emitted = cpu(lambda: journeys(policy, items))
    seconds["emit"], _ = cpu(lambda: emit(emitted))
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--policy", type=Path, default=POLICY)
    parser.add_argument("--out", type=Path, default=HERE / "stages.json")
    args = parser.parse_args()
    policy = load_policy(args.policy.read_text())
    records = list(Generator(args.customers, args.seed).events(args.events))
    tune_gc()
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for stage, took in measure(policy, records).items():
            best[stage] = min(best.get(stage, took), took)
    per_event = {stage: round(took / args.events * 1e6, 2) for stage, took in best.items()}
    per_event["total"] = round(sum(per_event.values()), 2)
    print(f"CPU per event, best of {args.repeat}, {args.events:,} events:")
    for stage, us in per_event.items():
        print(f"  {stage:<10} {us:7.2f} us   ({1e6 / us:>9,.0f} events/s alone)")
    args.out.write_text(json.dumps({"events": args.events, "us_per_event": per_event}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
