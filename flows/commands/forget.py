"""``concierge forget``: ask a running flow to erase a person, through its events topic.

It writes one ``erasure_requested`` event naming the identifiers it is given, as a producer
would, and says where it went. The flow erases the person when it reads the event (see
:meth:`operators.identity.graph.IdentityGraph.erase`) and writes one ``erased`` audit record.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from flows.kafka.config import (
    ENV_BROKERS,
    KafkaSettings,
    check_settings,
    client_properties,
    wait_for_brokers,
)
from operators.model.identifiers import (
    KNOWN_IDENTIFIERS,
    UNKEYED_IDENTITY,
    IdentifierRules,
    Rejection,
    mask,
    normalise,
)
from operators.model.records import ERASURE
from operators.model.timefmt import format_ms

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ForgetError(ValueError):
    """Flags or identifiers that name nobody to erase."""


def forget_from_args(args: argparse.Namespace) -> int:
    """Send the erasure request; 0 once the brokers have it, 1 if they did not take it."""
    try:
        if not args.brokers:
            raise ForgetError(f"no brokers: pass --brokers or set {ENV_BROKERS}")
        identifiers, normal = _identifiers(args.identifiers, args.region)
        settings = KafkaSettings(
            args.brokers, args.topic_prefix, client_properties(args.properties, os.environ)
        )
        check_settings(settings)
    except ValueError as err:
        print(f"concierge forget: {err}", file=sys.stderr)
        return EXIT_USAGE
    event: dict[str, Any] = {
        "event_id": f"erasure-{uuid.uuid4().hex}",
        "type": ERASURE,
        "timestamp": format_ms(int(datetime.now(UTC).timestamp() * 1000)),
        "identifiers": identifiers,
    }
    if args.region:
        event["context"] = {"region": args.region}
    named = ", ".join(f"{kind}:{mask(kind, value)}" for kind, value in normal.items())
    strongest = min(normal, key=KNOWN_IDENTIFIERS.index)
    key = UNKEYED_IDENTITY.identify(strongest, normal[strongest]).name
    topic = settings.events_topic()
    try:
        wait_for_brokers(settings, args.timeout)  # one clear line if nobody answers
        partition, offset = _send(settings, topic, key, event, args.timeout)
    except RuntimeError as err:
        print(f"concierge forget: the erasure request was not sent: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"sent erasure request {event['event_id']} for {named} to {topic} "
        f"(partition {partition}, offset {offset}) at {event['timestamp']}"
    )
    print(
        "the flow erases whoever holds any of them when it reads it, and writes one 'erased' "
        f"record to {settings.prefix}audit"
    )
    return EXIT_OK


def _identifiers(given: list[str], region: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """The identifiers of the request as given (the flow normalises them as it does every
    event's), and normalised; refuse a value no profile could hold."""
    identifiers: dict[str, str] = {}
    normal: dict[str, str] = {}
    for who in given:
        kind, sep, value = who.partition(":")
        if not sep or kind not in KNOWN_IDENTIFIERS:
            raise ForgetError(
                f"name each identifier as TYPE:VALUE (types: {', '.join(KNOWN_IDENTIFIERS)})"
            )
        found = normalise(kind, value, IdentifierRules(), region)
        if kind == "email" and not isinstance(found, Rejection) and not _an_address(found):
            raise ForgetError(
                f"email {mask(kind, value.strip())} is {Rejection.INVALID.value} "
                "(an address is NAME@DOMAIN)"
            )
        if isinstance(found, Rejection):
            raise ForgetError(f"{kind} {mask(kind, value.strip())} is {found.value}")
        if kind in identifiers:
            raise ForgetError(f"one {kind} per request: send another for the next")
        identifiers[kind], normal[kind] = value.strip(), found
    return identifiers, normal


def _an_address(email: str) -> bool:
    """Whether ``email`` has the shape of an address: a name, an ``@`` and a domain, with no
    space. Events may name any email (the engine keeps what it is given), but an erasure
    request is typed by a person, and one naming no address is a slip, not a person."""
    name, at, domain = email.rpartition("@")
    return bool(name and at and domain) and not any(ch.isspace() for ch in email)


def _send(
    settings: KafkaSettings, topic: str, key: str, event: dict[str, Any], timeout: float
) -> tuple[int, int]:
    """Produce the event under ``key`` (its strongest identifier's canonical id, as a
    producer keys events); where it landed."""
    landed: list[Message] = []
    failed: list[KafkaError] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failed.append(error)
        else:
            landed.append(message)

    producer = Producer(
        settings.config(
            **{
                "acks": "all",
                "enable.idempotence": True,
                "message.timeout.ms": int(timeout * 1000),
                "log_level": 0,  # a failure is said once, below; -X log_level=7 to see more
            }
        )
    )
    producer.produce(topic, orjson.dumps(event), key.encode(), on_delivery=delivered)
    producer.flush(timeout + 5)
    if failed:
        raise RuntimeError(failed[0].str())
    if not landed:
        raise RuntimeError(f"the brokers at {settings.brokers} did not answer within {timeout:g} s")
    partition, offset = landed[0].partition(), landed[0].offset()
    assert partition is not None and offset is not None
    return partition, offset
