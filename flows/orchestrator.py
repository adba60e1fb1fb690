"""The Concierge dataflow, in stage order: ingest -> identity -> context -> decide -> emit.

Sources and sinks are the edges; :mod:`flows.replay` and :mod:`flows.kafka.connectors`
plug theirs in, so replay and Kafka mode run this same flow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.barrier import Ack
from flows.capacity import CAPACITY_KEY, CapacityLogic
from flows.identity import IDENTITY_KEY, IdentityConfig, IdentityLogic, IdentityOutput
from flows.journey import JourneyConfig, JourneyLogic, JourneyOutput
from flows.learner import LEARNER_KEY, LearnerLogic
from flows.metrics import (
    ACTIONS,
    CONVERSIONS,
    CONVERTED,
    DEAD_LETTERS,
    DECISIONS,
    HELD_BACK,
    HELD_OUT,
    LATENCY,
    LEARNING_CHOICES,
    LEARNING_MODEL_AGE,
    LEARNING_OUTCOMES,
    LEARNING_TRIALS,
    MEASURED,
    PROCESSING,
    RECENT_SENDS,
    RECORDS_OUT,
)
from flows.progress import FrontierMark
from operators.decisions.capacity import Request
from operators.identity.alignment import Progress
from operators.identity.resolution import ForAudit, ForCustomer
from operators.model.encoding import AUDIT as AUDIT_STREAM
from operators.model.encoding import DEAD_LETTERS as DEAD_LETTER_STREAM
from operators.model.encoding import (
    FRONTIER,
    Emitted,
    Order,
    OutRecord,
    encode,
    encode_audit,
    encode_dead_letter,
    encode_transfer,
)
from operators.model.handover import Transfer
from operators.model.records import (
    DEFAULT_MESSAGE_MAX_BYTES,
    Action,
    Conversion,
    DeadLetter,
    Event,
    Learned,
    Outcome,
    Scored,
)

FLOW_ID = "concierge"


Ingested = Event | DeadLetter | Transfer | Progress


def build_flow(
    config: JourneyConfig,
    identity: IdentityConfig,
    source: Source[Ingested],
    sink: Sink[OutRecord],
    max_record_bytes: int = DEFAULT_MESSAGE_MAX_BYTES,
) -> Dataflow:
    """The dataflow from input records to actions, decisions, dead letters and audit records.

    ``max_record_bytes`` is the largest record the sink takes (Kafka's producer: its
    ``message.max.bytes``): a dead letter keeps of its input record what fits.

    Every step but the identity and per-customer ones works on whole batches:
    Bytewax's cost is per item per step, so per-item steps are kept off the hot path.
    """
    flow = Dataflow(FLOW_ID)

    # 1. Ingest and validate: the source's partitions parse each record into an
    #    event or a dead letter (see flows.replay / flows.kafka.connectors), and say how far they
    #    have read. Transfers come back in through the source too: the loop that
    #    carries merged contexts.
    ingested = op.input("ingest", flow, source)
    dead_letters = op.flat_map_batch("dead_letters", ingested, _dead_letters)

    # 2. Identity: one graph resolves every event to its canonical customer id, in
    #    event-time order across all input partitions, merging profiles (and telling
    #    both customers) as identifiers link them; transfers pass through to the survivor.
    to_graph = op.flat_map_batch("to_identity", ingested, _to_identity)
    resolved = op.stateful_batch("identity", to_graph, lambda r: IdentityLogic(identity, r))
    audits = op.flat_map_batch(
        "audits", resolved, partial(_identity_records, max_bytes=max_record_bytes)
    )
    frontier = op.flat_map_batch("frontier", resolved, _frontier)
    journey_items = op.flat_map_batch("to_journey", resolved, _to_journey)

    # 3-6. Context, moments, decisions and guardrails, one customer at a time.
    decided = op.stateful_batch(
        "journey", journey_items, lambda resume: JourneyLogic(config, resume)
    )

    # 6b. Learning from the population: one learner tallies every scored trial and
    #    builds the model's versions as every worker answers past their boundaries; they
    #    go back in, as transfers do, to the identity step.
    learned = []
    learning = config.policy.learning
    if learning is not None and learning.population_every is not None:
        to_learner = op.flat_map_batch("to_learner", decided, _to_learner)
        versions = op.stateful_batch(
            "learner",
            to_learner,
            lambda resume: LearnerLogic(config.policy, identity.workers, resume),
        )
        learned = [op.map("models", versions, lambda kv: kv[1])]

    # 6c. Capacity: one owner hands out the paces and budgets every customer shares, in
    #    event-time order as every worker answers past each request; its answers go back
    #    in, as transfers do, to the customers who wait for them.
    capacity = config.policy.capacity
    if capacity is not None:
        to_owner = op.flat_map_batch("to_capacity", decided, _to_capacity)
        grants = op.stateful_batch(
            "capacity",
            to_owner,
            lambda resume: CapacityLogic(capacity, identity.workers, resume),
        )
        learned.append(op.map("grants", grants, lambda kv: kv[1]))

    # 7. Emit: decisions and actions per channel, dead letters, audit records, and
    #    transfers on their way back in.
    records = op.merge(
        "records",
        *learned,
        op.flat_map_batch("emit", decided, _emit),
        op.flat_map_batch(
            "emit_dead_letters",
            dead_letters,
            partial(_encode_dead_letters, max_bytes=max_record_bytes),
        ),
        audits,
        frontier,
    )
    op.output("write", records, sink)
    return flow


def _to_identity(batch: list[Ingested]) -> list[tuple[str, Event | Progress | Transfer]]:
    return [(IDENTITY_KEY, r) for r in batch if not isinstance(r, DeadLetter)]


def _to_journey(batch: list[tuple[str, IdentityOutput]]) -> list[tuple[str, ForCustomer]]:
    return [(r.customer_id, r) for _, r in batch if isinstance(r, ForCustomer)]


def _frontier(batch: list[tuple[str, IdentityOutput]]) -> list[OutRecord]:
    return [
        OutRecord(FRONTIER, FRONTIER.encode(), r.encode(), Order.of_line(0), "")
        for _, r in batch
        if isinstance(r, FrontierMark)
    ]


def _identity_records(batch: list[tuple[str, IdentityOutput]], max_bytes: int) -> list[OutRecord]:
    """The identity step's audit records, and its dead letters (feedback about a forgotten
    profile's actions)."""
    records = [encode_audit(r.audit, r.order) for _, r in batch if isinstance(r, ForAudit)]
    if records:
        RECORDS_OUT.labels(AUDIT_STREAM).inc(len(records))
    dead = [r for _, r in batch if isinstance(r, DeadLetter)]
    if dead:
        records.extend(_encode_dead_letters(dead, max_bytes))
        for letter in dead:
            DEAD_LETTERS.labels(letter.reason.value).inc()
    return records


def _dead_letters(batch: list[Ingested]) -> list[DeadLetter]:
    return [r for r in batch if isinstance(r, DeadLetter)]


def _encode_dead_letters(batch: list[DeadLetter], max_bytes: int) -> list[OutRecord]:
    records = [encode_dead_letter(dead, max_bytes) for dead in batch]
    RECORDS_OUT.labels(DEAD_LETTER_STREAM).inc(len(records))
    return records


def _to_learner(batch: list[tuple[str, JourneyOutput]]) -> list[tuple[str, Ack | Scored]]:
    out: list[tuple[str, Ack | Scored]] = []
    for _, emitted in batch:
        if isinstance(emitted, Ack):
            out.append((LEARNER_KEY, emitted))
        elif isinstance(emitted, Emitted) and isinstance(emitted.output, Scored):
            out.append((LEARNER_KEY, emitted.output))
    return out


def _to_capacity(batch: list[tuple[str, JourneyOutput]]) -> list[tuple[str, Ack | Request]]:
    return [(CAPACITY_KEY, r) for _, r in batch if isinstance(r, (Ack, Request))]


def _emit(batch: list[tuple[str, JourneyOutput]]) -> Iterable[OutRecord]:
    records: list[OutRecord] = []
    now = time.time()
    actions: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    held_back: dict[tuple[str, str], int] = {}
    streams: dict[str, int] = {}
    measured: dict[tuple[str, str], int] = {}
    for _, emitted in batch:
        if isinstance(emitted, Transfer):
            records.append(encode_transfer(emitted))
            continue
        if isinstance(emitted, (Ack, Request)):
            continue
        record = encode(emitted)
        output = emitted.output
        if isinstance(output, Action):
            actions[output.channel] = actions.get(output.channel, 0) + 1
            RECENT_SENDS.observe(output.recent_sends)
            if emitted.received_at:
                LATENCY.observe(now - emitted.received_at)
        elif isinstance(output, Conversion):
            _count_conversion(output)
        elif isinstance(output, Scored):
            _count_trial(output)
        else:
            outcome = output.outcome
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if output.rule is not None and outcome is not Outcome.HELD_OUT:
                held = (outcome.value, output.rule)
                held_back[held] = held_back.get(held, 0) + 1
            if outcome is Outcome.SENT or outcome is Outcome.HELD_OUT:
                group = (output.action, outcome.value)
                measured[group] = measured.get(group, 0) + 1
                if output.learning is not None:
                    _count_choices(output.learning, output.at)
            if emitted.received_at:
                PROCESSING.observe(now - emitted.received_at)
        streams[record.stream] = streams.get(record.stream, 0) + 1
        records.append(record)
    _count(actions, ACTIONS.labels)
    _count(outcomes, DECISIONS.labels)
    _count(streams, RECORDS_OUT.labels)
    _count(held_back, lambda held: HELD_BACK.labels(*held))
    _count(measured, lambda group: MEASURED.labels(*group))
    for (action, group), n in measured.items():
        if group == Outcome.HELD_OUT:
            HELD_OUT.labels(action).inc(n)
    return records


def _count_conversion(conversion: Conversion) -> None:
    labels = (conversion.action, conversion.outcome.value)
    CONVERSIONS.labels(*labels).inc()
    if conversion.first:
        CONVERTED.labels(*labels).inc()


def _count_trial(trial: Scored) -> None:
    group = "control" if trial.control else "learning"
    LEARNING_TRIALS.labels(trial.action, trial.channel, trial.template, group).inc()
    for outcome in trial.outcomes:
        LEARNING_OUTCOMES.labels(trial.action, trial.channel, trial.template, outcome, group).inc()


def _count_choices(learned: Learned, at: int) -> None:
    if learned.model is not None:
        LEARNING_MODEL_AGE.set((at - learned.model) / 1000)
    for choice in learned.choices:
        how = "control" if learned.control else "explored" if choice.explored else "best"
        LEARNING_CHOICES.labels(choice.kind, choice.chosen, how).inc()


def _count(tally: dict[Any, int], labels: Callable[[Any], Any]) -> None:
    for label, n in tally.items():
        labels(label).inc(n)
