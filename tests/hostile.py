"""Hostile input, to attack Concierge the way a bad producer or an attacker would.

``bad_records`` only ever draws records that must become exactly one dead letter each:
truncated and garbled JSON, every field with a wrong type, huge strings, deep nesting,
invalid UTF-8 and lone surrogates, NUL bytes, NaN and 1e400, impossible and far-away
timestamps, identifiers that cannot name anyone, and feedback forged from an email.
``odd_records`` draws records that are strange but valid, which must be processed without
harm. ``POISON`` holds the fixed records a crash-loop was once found with.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from operators.identity.ids import canonical_id

EXPECTED_REASONS = frozenset(
    {
        "oversize",
        "not_utf8",
        "invalid_json",
        "not_an_object",
        "schema_violation",
        "invalid_timestamp",
        "future_timestamp",
        "unknown_event_type",
        "no_usable_identifier",
        "unknown_action_id",
    }
)
MAX_RECORD_BYTES = 262_144
"""The largest ``ingest.max_record_bytes`` a policy may set: the policies attacked use it."""

SCALE = int(os.environ.get("CONCIERGE_FUZZ_SCALE", "1"))
"""``make fuzz`` runs every attack this many times longer, with fresh draws."""


def attacks(examples: int, *slow: HealthCheck) -> settings:
    """Hypothesis settings for an attack: ``examples`` draws (times :data:`SCALE`), the same
    draws every suite run, no deadline, and no explain phase (it traces and is slow)."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, *slow],
        derandomize=SCALE == 1,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    )


POISON = {
    "control characters": b'{"x":"' + b"\x01" * 262_000 + b'"}',
    "invalid bytes": b"\xff" * 262_000,
    "quotes": b'"' * 262_000,
}

_ints = st.integers(-(2**63), 2**64 - 1)
"""What JSON numbers orjson writes as integers."""
_names = st.sampled_from(["product_view", "purchase", "help_search", "complaint", "identify"])


@st.composite
def good_records(draw: st.DrawFn, who: str = "hostile@example.com") -> dict[str, Any]:
    """A valid event, the raw material of most attacks."""
    return {
        "event_id": f"h-{draw(st.integers(0, 10**9))}",
        "type": draw(_names),
        "timestamp": "2026-11-20T10:00:00Z",
        "identifiers": {"email": who},
        "context": {"timezone": "Europe/Madrid"},
        "properties": {"product_id": draw(st.sampled_from(["p-1", "p-2"]))},
    }


_WRONG = st.one_of(_ints, st.floats(allow_nan=False), st.booleans(), st.none(), st.lists(_ints))
_WRONG_TYPES: dict[str, Any] = {
    "event_id": st.one_of(_WRONG, st.just(""), st.text(min_size=257, max_size=300)),
    "type": st.one_of(_WRONG, st.just(""), st.text(min_size=129, max_size=140)),
    "timestamp": st.one_of(
        _WRONG, st.sampled_from(["yesterday", "2026-11-20", "2026-11-20 10:00", "10:00Z"])
    ),
    "identifiers": st.one_of(
        _WRONG,
        st.text(),
        st.just({}),
        st.just({"email": 5}),
        st.just({"emial": "a@b.c"}),
        st.just({"email": " ", "phone": ""}),
        st.just({"email": "x" * 513}),
    ),
    "context": st.one_of(_ints, st.text(), st.lists(_ints), st.just({"timezone": 5})),
    "properties": st.one_of(_ints, st.text(), st.lists(_ints)),
}


@st.composite
def wrong_type(draw: st.DrawFn) -> bytes:
    record = draw(good_records())
    field = draw(st.sampled_from(sorted(_WRONG_TYPES)))
    record[field] = draw(_WRONG_TYPES[field])
    return orjson.dumps(record)


@st.composite
def missing_field(draw: st.DrawFn) -> bytes:
    record = draw(good_records())
    del record[draw(st.sampled_from(["event_id", "type", "timestamp", "identifiers"]))]
    return orjson.dumps(record)


@st.composite
def truncated(draw: st.DrawFn) -> bytes:
    raw = orjson.dumps(draw(good_records()))
    return raw[: draw(st.integers(1, len(raw) - 1))]


@st.composite
def garbled(draw: st.DrawFn) -> bytes:
    """A valid record with bytes no JSON allows there: invalid UTF-8, a raw NUL or control
    character inside a string, a lone surrogate, NaN, a number too large for a double."""
    raw = orjson.dumps(draw(good_records()))
    inside = raw.index(b'"h-') + 2
    poison = draw(
        st.sampled_from(
            [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\x01", b"\n", b"\\ud800", b"\\x"]
        )
    )
    if draw(st.booleans()):
        return raw[:inside] + poison + raw[inside:]
    number = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"01", b"+1"]))
    return raw[:-1] + b',"n":' + number + b"}"


@st.composite
def deep(draw: st.DrawFn) -> bytes:
    """Nesting deeper than any JSON reader here goes (1,024 levels)."""
    depth = draw(st.integers(1100, 20_000))
    record = orjson.dumps(draw(good_records()))
    return record[:-1] + b',"deep":' + b"[" * depth + b"]" * depth + b"}"


@st.composite
def not_an_object(draw: st.DrawFn) -> bytes:
    value = draw(st.one_of(_ints, st.text(), st.lists(_ints), st.none()))
    return orjson.dumps(value)


@st.composite
def huge(draw: st.DrawFn) -> bytes:
    record = draw(good_records())
    record["properties"]["text"] = "x" * draw(st.integers(MAX_RECORD_BYTES, MAX_RECORD_BYTES * 3))
    return orjson.dumps(record)


@st.composite
def _with(draw: st.DrawFn, field: str, values: list[Any]) -> bytes:
    """A valid record whose ``field`` is one of ``values``."""
    record = draw(good_records())
    record[field] = draw(st.sampled_from(values))
    return orjson.dumps(record)


bad_timestamp = _with(
    "timestamp",
    [
        "2026-02-30T10:00:00Z",
        "2026-04-31T10:00:00Z",
        "2025-02-29T10:00:00Z",
        "9999-12-31T23:59:59Z",
        "9001-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "8000-01-01T00:00:00Z",  # past max_future_skew of the record's arrival
        "2026-11-20T10:30:60Z",  # second 60 of a minute that had no leap second
        "2026-12-31T23:59:60Z",  # nor has this one been announced
    ],
)
unusable_identifiers = _with(
    "identifiers",
    [
        {"email": "test@test.com"},
        {"email": "NoReply@shop.example"},
        {"phone": "0000000000"},
        {"phone": "+1 123 456 7890"},
        {"phone": "call me maybe"},
        {"email": "test@test.com", "phone": "1234567890"},
    ],
)


@st.composite
def forged_feedback(draw: st.DrawFn) -> bytes:
    """Feedback whose action id anyone who knows an email can write."""
    email = draw(st.sampled_from(["ana@example.com", "hostile@example.com"]))
    customer = canonical_id("email", email)
    action = draw(st.sampled_from(["product_nudge", "loan_offer", "free_money"]))
    tail = draw(st.text("0123456789abcdef", min_size=16, max_size=32))
    return orjson.dumps(
        {
            "event_id": f"forged-{draw(st.integers(0, 10**9))}",
            "type": "feedback",
            "timestamp": "2026-11-20T10:00:00Z",
            "properties": {
                "action_id": f"{customer}.{action}.{tail}",
                "outcome": draw(st.sampled_from(["unsubscribed", "complained", "clicked"])),
                "channel": "push",
            },
        }
    )


bad_records = st.one_of(
    wrong_type(),
    missing_field(),
    truncated(),
    garbled(),
    deep(),
    not_an_object(),
    huge(),
    bad_timestamp,
    unusable_identifiers,
    forged_feedback(),
)
"""Records each of which must be exactly one dead letter."""


_odd_values = st.one_of(
    st.text(max_size=300),
    _ints,
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(_ints, max_size=5),
    st.dictionaries(st.text(max_size=5), _ints, max_size=3),
)


@st.composite
def odd_records(draw: st.DrawFn) -> bytes:
    """Strange but valid events: odd text and types where the schema allows anything."""
    record = draw(good_records(draw(st.sampled_from(["odd@example.com", "ana@example.com"]))))
    record["event_id"] = draw(st.text(min_size=1, max_size=256))
    record["type"] = draw(
        st.one_of(
            _names,
            st.sampled_from(["consent_changed_", "Feedback", "💥", "a" * 128]),
            st.text(min_size=1, max_size=128),
        )
    )
    record["identifiers"] = draw(
        st.dictionaries(
            st.sampled_from(["email", "phone", "device_id", "anonymous_id", "loyalty_id"]),
            st.text(min_size=1, max_size=512).filter(str.strip),
            min_size=1,
            max_size=3,
        )
    )
    record["context"] = {
        "timezone": draw(
            st.sampled_from(["Europe", "Etc", "A" * 64, "../../etc/passwd", "UTC", "+05:00"])
        ),
        "region": draw(st.text(max_size=5)),
        "extra": draw(_odd_values),
    }
    record["properties"] = {
        "product_id": draw(_odd_values),
        "text": draw(_odd_values),
        "nested": draw(st.recursive(_odd_values, lambda inner: st.lists(inner, max_size=3))),
    }
    record["timestamp"] = draw(
        st.sampled_from(
            ["2026-11-20T10:00:00Z", "2026-11-20T10:00:00.123456789+14:00", "1970-01-01T00:00:00Z"]
        )
    )
    raw = orjson.dumps(record)
    if draw(st.booleans()):  # as deep as JSON readers here go, under the group and the text
        depth = draw(st.integers(1, 1000))
        field = draw(st.sampled_from([b"product_id", b"text", b"deep"]))
        nested = b"[" * depth + b"]" * depth
        raw = raw[:-2] + b',"' + field + b'":' + nested + b"}}"  # properties is the last field
    return raw
