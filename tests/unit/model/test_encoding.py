"""Output records, and what replaces one the brokers refuse as too large
(operators/model/encoding.py)."""

from __future__ import annotations

import jsonschema
import orjson

import schemas
from operators.model.encoding import DEAD_LETTERS, TRANSFERS, replacement_for_too_large
from operators.model.records import DeadLetter, DeadLetterReason, Origin


def _valid_dead_letter(value: bytes) -> dict:
    record = orjson.loads(value)
    jsonschema.validate(record, schemas.load("dead_letter"))
    return record


def test_a_refused_decision_becomes_a_dead_letter_quoting_its_start():
    decision = orjson.dumps({"customer_id": "cus_1", "signals": ["x" * 5000]})
    stream, value = replacement_for_too_large("decisions", decision)
    record = _valid_dead_letter(value)
    assert stream == DEAD_LETTERS
    assert record["reason"] == "output_too_large"
    assert record["origin"] == {"stream": "decisions"}
    assert record["raw_size"] == len(decision) and decision.decode().startswith(record["raw"])
    assert len(value) < 1500


def test_a_refused_dead_letter_is_written_again_without_its_raw_text():
    origin = Origin(file="f", line=3)
    dead = DeadLetter(DeadLetterReason.INVALID_JSON, "not JSON", b"{" * 200_000, origin)
    stream, value = replacement_for_too_large(DEAD_LETTERS, orjson.dumps(dead.as_record()))
    record = _valid_dead_letter(value)
    assert stream == DEAD_LETTERS and record["reason"] == "invalid_json"
    assert record["raw"] == "" and record["raw_truncated"] and record["raw_size"] == 200_000
    assert record["origin"] == {"file": "f", "line": 3}


def test_a_refused_transfer_completes_the_merge_without_the_context():
    transfer = orjson.dumps({"merge_id": "1:a>b", "retired": "a", "survivor": "b", "state": {}})
    stream, value = replacement_for_too_large(TRANSFERS, transfer)
    assert stream == TRANSFERS
    assert orjson.loads(value) == {
        "merge_id": "1:a>b",
        "retired": "a",
        "survivor": "b",
        "state": None,
    }
