"""The Concierge dataflow, in stage order: ingest -> identity -> context -> decide -> emit.

Sources and sinks are the edges; :mod:`flows.replay` and :mod:`flows.kafka`
plug theirs in, so replay and Kafka mode run this same flow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.customer import CustomerLogic, JourneyConfig
from flows.metrics import ACTIONS, DECISIONS, LATENCY, PROCESSING, RECORDS_OUT
from operators.identity import resolve_customer
from operators.model import Action, DeadLetter, Event
from operators.records import Emitted, OutRecord, encode, encode_dead_letter

FLOW_ID = "concierge"


def build_flow(
    config: JourneyConfig,
    source: Source[Event | DeadLetter],
    sink: Sink[OutRecord],
) -> Dataflow:
    """The dataflow from input records to actions, decisions and dead letters."""
    policy = config.policy
    flow = Dataflow(FLOW_ID)

    # 1. Ingest and validate: the source's partitions parse each record into an
    #    event or a dead letter (see flows.replay / flows.kafka).
    ingested = op.input("ingest", flow, source)
    accepted = op.branch("accepted", ingested, _is_event)

    # 2. Identity: every event is keyed by its canonical customer id.
    order = policy.identifier_order
    keyed = op.key_on("identity", accepted.trues, lambda event: resolve_customer(event, order))

    # 3-6. Context, moments, decisions and guardrails, one customer at a time.
    decided = op.stateful_batch("journey", keyed, lambda resume: CustomerLogic(config, resume))

    # 7. Emit: decisions, actions per channel, and the dead letters.
    outputs = op.merge("outputs", op.key_rm("unkey", decided), accepted.falses)
    records = op.flat_map_batch("emit", outputs, _emit)
    op.output("write", records, sink)
    return flow


def _is_event(record: Event | DeadLetter) -> bool:
    return isinstance(record, Event)


def _emit(batch: list[Any]) -> Iterable[OutRecord]:
    records: list[OutRecord] = []
    now = time.time()
    actions: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    streams: dict[str, int] = {}
    for item in batch:
        if isinstance(item, DeadLetter):
            record = encode_dead_letter(item)
        else:
            emitted: Emitted = item
            record = encode(emitted)
            output = emitted.output
            if isinstance(output, Action):
                actions[output.channel] = actions.get(output.channel, 0) + 1
                if emitted.received_at:
                    LATENCY.observe(now - emitted.received_at)
            else:
                outcomes[output.outcome] = outcomes.get(output.outcome, 0) + 1
                if emitted.received_at:
                    PROCESSING.observe(now - emitted.received_at)
        streams[record.stream] = streams.get(record.stream, 0) + 1
        records.append(record)
    _count(actions, ACTIONS.labels)
    _count(outcomes, DECISIONS.labels)
    _count(streams, RECORDS_OUT.labels)
    return records


def _count(tally: dict[str, int], labels: Callable[[str], Any]) -> None:
    for label, n in tally.items():
        labels(label).inc(n)
