"""``bench/budget.py``'s timing of the flow's Python steps, inside ``concierge run``.

Python imports this at start-up when ``bench/timed`` is on ``PYTHONPATH``; it does nothing
unless ``CONCIERGE_BUDGET_TIMES`` names a file. Then it wraps each step's Python entry
point (the source's reads, the identity and journey steps' callbacks, emit, the sink's
writes) in ``time.thread_time`` (the CPU of the thread that calls it, so waiting is not
counted), and at exit appends one JSON line to that file: each entry point's CPU seconds
and calls, and the dataflow thread's CPU from its first read to the exit.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

TIMES = os.environ.get("CONCIERGE_BUDGET_TIMES")
cpu: Counter[str] = Counter()
calls: Counter[str] = Counter()
started: list[float] = []
"""The dataflow thread's CPU at its first read."""


def timed(label: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        before = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            cpu[label] += time.thread_time() - before
            calls[label] += 1

    return call


def first_read(original: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if not started:
            started.append(time.thread_time())
        return original(*args, **kwargs)

    return call


def install() -> None:
    import flows.identity as identity
    import flows.journey as journey
    import flows.kafka.connectors as connectors
    import flows.orchestrator as orchestrator
    import operators.ingest as ingest

    places: list[tuple[Any, str, str]] = [
        (connectors._EventPartition, "next_batch", "source"),
        (ingest.Ingestor, "ingest", "ingest"),
        (identity.IdentityLogic, "on_batch", "identity"),
        (journey.JourneyLogic, "on_batch", "journey"),
        (journey.JourneyLogic, "on_notify", "journey timers"),
        (journey.JourneyLogic, "on_eof", "journey at the end"),
        (journey.JourneyLogic, "notify_at", "journey: when to wake"),
        (journey.JourneyLogic, "snapshot", "snapshots of customers"),
        (orchestrator, "_emit", "emit"),
        (connectors._ProducerPartition, "write_batch", "produce"),
    ]
    for owner, name, label in places:
        setattr(owner, name, timed(label, getattr(owner, name)))
    reads = connectors._EventPartition
    reads.next_batch = first_read(reads.next_batch)  # type: ignore[method-assign]
    atexit.register(write)


def write() -> None:
    assert TIMES is not None
    thread = time.thread_time() - started[0] if started else 0.0
    with open(TIMES, "a", encoding="utf-8") as out:
        out.write(json.dumps({"cpu": cpu, "calls": calls, "dataflow_thread": thread}) + "\n")


if TIMES:
    install()
