"""Scale-out: two processes over four partitions against one, in the same run, and the
ceiling the single identity step sets.

1. The same generated events (keyed as producers key them: cookie, device, loyalty card,
   phone, email) are preloaded under two topic prefixes with four partitions each. Then
   ``concierge run --stop-at-end`` reads one prefix with one process and the other with two
   (``-i``/``-a``), each timed from start to exit, with the CPU each process used. On this
   two-core machine the broker and the benchmark share the cores, so the ratio says how
   much a second process adds when there is little spare CPU, not what a cluster of
   machines would give.
2. The identity step alone (``flows.identity.IdentityLogic``, the graph in memory as in
   replay), fed events already ingested, in batches of 1,000 with their partition's
   progress: its events/s is the ceiling of a cluster, whose every event it resolves.

``python bench/scale_out.py [--events N] [--customers N]``; results in
``bench/scale_out.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from flows.commands.generator import Generator, producer_key
from flows.identity import IdentityConfig, IdentityLogic
from flows.kafka.broker import EmbeddedBroker, free_port
from flows.kafka.config import KafkaSettings, ensure_topics
from flows.progress import InputFrontier
from operators.identity.alignment import Progress
from operators.identity.graph import DictStore
from operators.ingest import Ingestor
from operators.model.records import Event, Origin
from operators.policy.load import load_policy

HERE = Path(__file__).resolve().parent
POLICY = HERE.parent.parent / "shared" / "spec" / "reference" / "policy.yaml"


def preload(bootstrap: str, settings: KafkaSettings, policy: Any, records: list[bytes]) -> None:
    ensure_topics(settings, settings.input_topics() + settings.output_topics(policy))
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 0})
    for raw in records:
        while True:
            try:
                producer.produce(settings.events_topic(), raw, producer_key(raw))
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def run_cluster(bootstrap: str, prefix: str, processes: int, workdir: Path) -> dict[str, Any]:
    concierge = str(Path(sys.executable).with_name("concierge"))
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    started = time.perf_counter()
    children = []
    for index in range(processes):
        args = [
            concierge, "run", "--policy", str(POLICY), "--brokers", bootstrap,
            "--topic-prefix", prefix, "--stop-at-end", "--metrics-port", "0",
            "--partitions", "4", "-X", "log_level=0",
            "--recovery-dir", str(workdir / f"{prefix}{index}" / "recovery"),
            "--state-dir", str(workdir / f"{prefix}{index}" / "state"),
        ]  # fmt: skip
        if processes > 1:
            args += ["-i", str(index), "-a", addresses]
        log = (workdir / f"{prefix}{index}.log").open("wb")
        children.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
    cpu = []
    for child in children:
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise RuntimeError(f"concierge run exited {child.returncode}; see {workdir}")
        cpu.append(round(usage.ru_utime + usage.ru_stime, 2))
    return {"seconds": round(time.perf_counter() - started, 2), "cpu_seconds": cpu}


def identity_rate(policy: Any, records: list[bytes]) -> dict[str, Any]:
    ingestor = Ingestor(policy)
    events = [e for raw in records if isinstance(e := ingestor.ingest(raw, Origin()), Event)]
    events = [e for e in events if e.type != "feedback"]
    config = IdentityConfig(
        policy.identifier_rules, DictStore, ["events#0"], frontier=InputFrontier()
    )
    logic = IdentityLogic(config, None)
    started = time.perf_counter()
    for n in range(0, len(events), 1000):
        batch: list[Any] = events[n : n + 1000]
        clock = max(e.time for e in batch)
        logic.on_batch([*batch, Progress("events#0", clock, caught_up=False)])
    logic.on_batch([Progress("events#0", None, caught_up=True, ended=True)])
    seconds = time.perf_counter() - started
    rate = round(len(events) / seconds)
    return {"events": len(events), "seconds": round(seconds, 3), "rate": rate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60000)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=HERE / "scale_out.json")
    args = parser.parse_args()
    policy = load_policy(POLICY.read_text(encoding="utf-8"), str(POLICY))
    records = list(Generator(args.customers, 7).events(args.events))
    report: dict[str, Any] = {"events": len(records), "cpus": os.cpu_count()}
    report["identity_step"] = identity_rate(policy, records)
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for prefix in ("one.", "two."):
            settings = KafkaSettings(broker.bootstrap, prefix, {"log_level": "0"}, 4)
            preload(broker.bootstrap, settings, policy, records)
        report["one_process"] = run_cluster(broker.bootstrap, "one.", 1, workdir)
        report["two_processes"] = run_cluster(broker.bootstrap, "two.", 2, workdir)
    one, two = report["one_process"], report["two_processes"]
    report["speed_ratio"] = round(one["seconds"] / two["seconds"], 2)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    print(
        f"two processes over four partitions: {report['speed_ratio']}x one process "
        f"({one['seconds']} s vs {two['seconds']} s; CPU s {one['cpu_seconds']} vs "
        f"{two['cpu_seconds']}); identity step alone {report['identity_step']['rate']:,} events/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
