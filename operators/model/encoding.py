"""Output records as bytes, each with the stream it belongs on and its key."""

from __future__ import annotations

import base64
from typing import NamedTuple

import orjson

from operators.model.handover import Transfer
from operators.model.records import (
    DEFAULT_MESSAGE_MAX_BYTES,
    Action,
    Audit,
    Conversion,
    DeadLetter,
    DeadLetterReason,
    Decision,
    Scored,
)

DECISIONS = "decisions"
TRANSFERS = "transfers"
"""Internal: a retired profile's context on its way to the survivor (see
:mod:`operators.model.handover`)."""
FRONTIER = "frontier"
"""Internal: how far the whole input has got, as the identity step says (Kafka mode)."""
DEAD_LETTERS = "dlq"
AUDIT = "audit"
CONVERSIONS = "conversions"
TRIALS = "trials"
MODELS = "models"
"""The population model's versions, on their way round the loop (learning)."""
GRANTS = "grants"
"""The capacity owner's answers, on their way round the loop to the customers who asked."""
ACTIONS_PREFIX = "actions."


class Order(NamedTuple):
    """Where a record goes in replay's output: what input line ``at`` caused comes in input
    order (phase 0), then what the end of input fired, by due time ``at`` and customer
    (phase 1); ``n`` orders the records of one cause."""

    phase: int
    at: int
    customer: str
    n: int

    @staticmethod
    def of_line(line: int, n: int = 0) -> Order:
        """The ``n``-th record caused by input line ``line``."""
        return Order(0, line, "", n)

    @staticmethod
    def of_timer(due: int, customer: str, n: int = 0) -> Order:
        """The ``n``-th record a timer of ``customer`` due at ``due`` fired at the end of input."""
        return Order(1, due, customer, n)


class Emitted(NamedTuple):
    """A decision or action, with its place in replay order and when its trigger was read."""

    output: Decision | Action | Conversion | Scored
    order: Order
    received_at: float


class OutRecord(NamedTuple):
    """One record to write: ``stream`` is the topic suffix (or file stem)."""

    stream: str
    key: bytes | None
    value: bytes
    order: Order
    tag: str
    """What it counts as: an action's channel, a decision's outcome, a dead letter's reason."""
    recent_sends: int = 0
    """For an action: its customer's actions in the 7 days up to it (the fatigue measure)."""


def action_stream(channel: str) -> str:
    return ACTIONS_PREFIX + channel


def encode(emitted: Emitted) -> OutRecord:
    """The record for a decision, action, conversion or scored trial, keyed by its canonical
    customer id."""
    output = emitted.output
    key = output.customer_id.encode()
    value = orjson.dumps(output.as_record())
    if isinstance(output, Action):
        stream = action_stream(output.channel)
        return OutRecord(stream, key, value, emitted.order, output.channel, output.recent_sends)
    if isinstance(output, Conversion):
        return OutRecord(CONVERSIONS, key, value, emitted.order, output.action)
    if isinstance(output, Scored):
        return OutRecord(TRIALS, key, value, emitted.order, output.action)
    return OutRecord(DECISIONS, key, value, emitted.order, output.outcome.value)


def encode_dead_letter(dead: DeadLetter, max_bytes: int = DEFAULT_MESSAGE_MAX_BYTES) -> OutRecord:
    """The dead-letter record, keyed by its source record's key, at most ``max_bytes`` (the
    producer's ``message.max.bytes``)."""
    line = dead.origin.line if dead.origin.line is not None else (dead.origin.offset or 0)
    return OutRecord(
        DEAD_LETTERS,
        dead.origin.key,
        orjson.dumps(dead.as_record(max_bytes)),
        Order.of_line(line),
        dead.reason.value,
    )


def encode_audit(audit: Audit, order: Order) -> OutRecord:
    """An identity merge or refusal, keyed by the surviving customer id."""
    return OutRecord(
        AUDIT,
        audit.surviving_id.encode(),
        orjson.dumps(audit.as_record()),
        order,
        audit.kind,
    )


def encode_transfer(transfer: Transfer) -> OutRecord:
    """A transfer for the loop back into the flow, keyed by the survivor."""
    value = orjson.dumps(
        {
            "merge_id": transfer.merge_id,
            "retired": transfer.retired,
            "survivor": transfer.survivor,
            "state": transfer.state,
        }
    )
    return OutRecord(TRANSFERS, transfer.survivor.encode(), value, Order.of_line(0), "transfer")


QUOTED_OUTPUT_CHARS = 1000
"""How much of an output record the brokers refused its dead letter quotes."""


def replacement_for_too_large(stream: str, value: bytes) -> tuple[str, bytes]:
    """What to write instead of a record the brokers refused as too large: (stream, value).

    A dead letter becomes one without its raw text; a transfer becomes one without the
    context (the merge completes with nothing folded in, rather than waiting forever);
    anything else becomes a dead letter ``output_too_large`` quoting its beginning.
    """
    if stream == DEAD_LETTERS:
        record = orjson.loads(value)
        if "raw_size" in record:
            raw_size = record["raw_size"]
        elif "raw_base64" in record:
            raw_size = len(base64.b64decode(record["raw_base64"]))
        else:
            raw_size = len(record.get("raw", "").encode())
        for field in ("raw", "raw_base64", "detail", "event_id", "type", "path"):
            record.pop(field, None)
        record.update(raw="", raw_truncated=True, raw_size=raw_size)
        record["detail"] = "its dead letter was too large for the brokers; raw left out"
        return DEAD_LETTERS, orjson.dumps(record)
    if stream == TRANSFERS:
        transfer = orjson.loads(value)
        transfer["state"] = None
        return TRANSFERS, orjson.dumps(transfer)
    text = value[: QUOTED_OUTPUT_CHARS * 4].decode("utf-8", "ignore")[:QUOTED_OUTPUT_CHARS]
    dead = {
        "reason": DeadLetterReason.OUTPUT_TOO_LARGE.value,
        "detail": f"a {stream} record of {len(value)} bytes was too large for the brokers",
        "raw": text,
        "raw_truncated": True,
        "raw_size": len(value),
        "origin": {"stream": stream},
    }
    return DEAD_LETTERS, orjson.dumps(dead)


def decode_transfer(value: bytes) -> Transfer:
    """The inverse of :func:`encode_transfer`."""
    record = orjson.loads(value)
    return Transfer(record["merge_id"], record["retired"], record["survivor"], record["state"])
