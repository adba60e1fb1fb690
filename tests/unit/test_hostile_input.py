"""Hostile records through ingest and the per-customer core (hypothesis): every bad record is
one dead letter with a reason, never much larger than the record, and nothing raises."""

from __future__ import annotations

import base64

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import schemas
from operators.identity.ids import resolve_customer
from operators.ingest import Ingestor
from operators.journey import Journey
from operators.model.records import RAW_KEEP_BYTES, DeadLetter, Event, Origin, dead_letter_bound
from operators.model.state import CustomerState
from operators.model.timefmt import parse_ms
from operators.policy.load import load_policy
from tests.conftest import REFERENCE_POLICY, event_dict
from tests.hostile import (
    EXPECTED_REASONS,
    MAX_RECORD_BYTES,
    POISON,
    attacks,
    bad_records,
    odd_records,
)

ORIGIN = Origin(topic="concierge.events", partition=0, offset=7, key=b"k")
ARRIVAL = parse_ms("2026-11-20T09:00:05Z")
"""When the records reached the broker: what bounds their timestamps."""
DEAD_LETTER_SCHEMA = schemas.load("dead_letter")
FUZZ = attacks(300)


@pytest.fixture(scope="module")
def wide_policy():
    text = REFERENCE_POLICY.read_text() + f"\ningest: {{max_record_bytes: {MAX_RECORD_BYTES}}}\n"
    return load_policy(text)


def primed(policy) -> Ingestor:
    """An ingestor whose clock a good event has set, as on a partition already in use."""
    ingestor = Ingestor(policy)
    good = event_dict("product_view", "2026-11-20T09:00:00Z", email="primer@example.com")
    assert isinstance(ingestor.ingest(orjson.dumps(good), ORIGIN), Event)
    return ingestor


def check_dead_letter(dead: DeadLetter, raw: bytes) -> None:
    assert dead.reason.value in EXPECTED_REASONS, dead
    assert dead.detail
    serialized = orjson.dumps(dead.as_record())
    record = orjson.loads(serialized)
    jsonschema.validate(record, DEAD_LETTER_SCHEMA)
    kept_at_most = min(len(raw), RAW_KEEP_BYTES) if record["reason"] == "oversize" else len(raw)
    assert len(serialized) <= dead_letter_bound(kept_at_most)
    kept = base64.b64decode(record.get("raw_base64", "")) or record["raw"].encode()
    assert kept == raw[:kept_at_most], "the record whole (an oversize one, its beginning)"
    assert record["origin"] == {"topic": "concierge.events", "partition": 0, "offset": 7}


@FUZZ
@given(raw=bad_records)
def test_every_bad_record_is_one_bounded_dead_letter_with_a_reason(wide_policy, raw):
    result = primed(wide_policy).ingest(raw, ORIGIN, ARRIVAL)
    assert isinstance(result, DeadLetter), (raw[:300], result)
    check_dead_letter(result, raw)


@pytest.mark.parametrize("raw", POISON.values(), ids=POISON.keys())
def test_the_records_that_once_crash_looped_kafka_mode_are_bounded_dead_letters(wide_policy, raw):
    result = primed(wide_policy).ingest(raw, ORIGIN)
    assert isinstance(result, DeadLetter)
    check_dead_letter(result, raw)


@FUZZ
@given(records=st.lists(st.one_of(odd_records(), bad_records), min_size=1, max_size=12))
def test_odd_and_bad_records_never_make_the_core_raise(wide_policy, records):
    ingestor = primed(wide_policy)
    journeys: dict[str, Journey] = {}
    accepted = dead = 0
    for raw in records:
        result = ingestor.ingest(raw, ORIGIN)
        if isinstance(result, DeadLetter):
            check_dead_letter(result, raw)
            dead += 1
            continue
        accepted += 1
        customer = resolve_customer(result, wide_policy.identifier_order)
        journey = journeys.setdefault(customer, Journey(CustomerState(customer)))
        outputs = journey.on_event(wide_policy, result)
        outputs += journey.fire_due(wide_policy, result.time + 400 * 86_400_000, inclusive=True)
        for output in outputs:
            orjson.dumps(output.as_record())
    assert accepted + dead == len(records)
