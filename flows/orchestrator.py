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
from operators.records import DEAD_LETTERS as DEAD_LETTER_STREAM
from operators.records import Emitted, OutRecord, encode, encode_dead_letter

FLOW_ID = "concierge"


def build_flow(
    config: JourneyConfig,
    source: Source[Event | DeadLetter],
    sink: Sink[OutRecord],
) -> Dataflow:
    """The dataflow from input records to actions, decisions and dead letters.

    Every step but the per-customer one works on whole batches: Bytewax's cost
    is per item per step, so per-item steps are kept off the hot path.
    """
    order = config.policy.identifier_order
    flow = Dataflow(FLOW_ID)

    # 1. Ingest and validate: the source's partitions parse each record into an
    #    event or a dead letter (see flows.replay / flows.kafka).
    ingested = op.input("ingest", flow, source)
    dead_letters = op.flat_map_batch("dead_letters", ingested, _dead_letters)

    # 2. Identity: every event is keyed by its canonical customer id.
    keyed = op.flat_map_batch("identity", ingested, lambda batch: _identify(batch, order))

    # 3-6. Context, moments, decisions and guardrails, one customer at a time.
    decided = op.stateful_batch("journey", keyed, lambda resume: CustomerLogic(config, resume))

    # 7. Emit: decisions and actions per channel, beside the dead letters.
    records = op.merge(
        "records",
        op.flat_map_batch("emit", decided, _emit),
        op.flat_map_batch("emit_dead_letters", dead_letters, _encode_dead_letters),
    )
    op.output("write", records, sink)
    return flow


def _identify(batch: list[Event | DeadLetter], order: tuple[str, ...]) -> list[tuple[str, Event]]:
    return [(resolve_customer(r, order), r) for r in batch if isinstance(r, Event)]


def _dead_letters(batch: list[Event | DeadLetter]) -> list[DeadLetter]:
    return [r for r in batch if isinstance(r, DeadLetter)]


def _encode_dead_letters(batch: list[DeadLetter]) -> list[OutRecord]:
    records = [encode_dead_letter(dead) for dead in batch]
    RECORDS_OUT.labels(DEAD_LETTER_STREAM).inc(len(records))
    return records


def _emit(batch: list[tuple[str, Emitted]]) -> Iterable[OutRecord]:
    records: list[OutRecord] = []
    now = time.time()
    actions: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    streams: dict[str, int] = {}
    for _, emitted in batch:
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
