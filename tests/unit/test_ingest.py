import base64

import orjson
import pytest

from operators.identity.ids import canonical_id
from operators.ingest import Ingestor
from operators.model.action_ids import UNKEYED, keyed
from operators.model.identifiers import UNKEYED_IDENTITY
from operators.model.records import DeadLetter, DeadLetterReason, Event, Origin, dead_letter_bound
from operators.model.timefmt import parse_ms
from operators.policy.load import load_policy
from tests.conftest import REFERENCE_POLICY, event_dict

ids = UNKEYED_IDENTITY.identify_normalised


def reference_policy_with(extra):
    """The reference policy with ``extra`` YAML appended (a section it does not have)."""
    return load_policy(REFERENCE_POLICY.read_text() + "\n" + extra + "\n")


ORIGIN = Origin(topic="concierge.events", partition=2, offset=41, key=b"k-1")


def ingest(policy, raw, **kwargs):
    if isinstance(raw, dict):
        raw = orjson.dumps(raw)
    return Ingestor(policy).ingest(raw, ORIGIN, **kwargs)


def rejected(policy, raw, reason, **kwargs):
    result = ingest(policy, raw, **kwargs)
    assert isinstance(result, DeadLetter), result
    assert result.reason is reason, result.detail
    record = result.as_record()
    assert record["origin"] == {"topic": "concierge.events", "partition": 2, "offset": 41}
    return result


def test_a_valid_event_is_parsed_with_normalised_identifiers(policy):
    record = event_dict(
        "product_view",
        "2026-11-20T10:15:00+01:00",
        {"product_id": "p-42"},
        anonymous_id="a-9",
        email="  Ana@Example.COM ",
    )
    record["context"] = {"timezone": "Europe/Madrid", "channel": "web"}
    event = ingest(policy, record)
    assert isinstance(event, Event)
    assert event.identifiers == ids({"anonymous_id": "a-9", "email": "ana@example.com"})
    assert event.properties == {"product_id": "p-42"}
    assert event.context["timezone"] == "Europe/Madrid"


def test_open_event_types_and_extra_fields_are_accepted(policy):
    record = event_dict("loyalty_points_redeemed", "2026-11-20T10:15:00Z", {"points": 50})
    record["context"] = {"store": "Madrid-3", "channel": "pos"}
    assert isinstance(ingest(policy, record), Event)


def test_bad_json_keeps_the_raw_text(policy):
    dead = rejected(policy, b'{"event_id": "x", ', DeadLetterReason.INVALID_JSON)
    assert dead.as_record()["raw"] == '{"event_id": "x", '


def test_bytes_that_are_not_utf8_keep_the_original_bytes(policy):
    raw = b'{"event_id": "se\xf1or"}'
    record = rejected(policy, raw, DeadLetterReason.NOT_UTF8).as_record()
    assert base64.b64decode(record["raw_base64"]) == raw


def test_a_json_value_that_is_not_an_object_is_rejected(policy):
    rejected(policy, b"[1, 2]", DeadLetterReason.NOT_AN_OBJECT)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda r: r.pop("event_id"), "event_id"),
        (lambda r: r.pop("identifiers"), "identifiers"),
        (lambda r: r.update(identifiers={}), "identifiers"),
        (lambda r: r.update(identifiers={"email": "  ", "phone": ""}), "identifiers"),
        (lambda r: r.update(identifiers={"emial": "a@b.c"}), "identifiers"),
        (lambda r: r.update(identifiers={"phone": 34600111222}), "identifiers.phone"),
        (lambda r: r.update(timestamp="2026-11-20 10:15"), "timestamp"),
        (lambda r: r.update(timestamp="2026-11-20T10:15:00"), "timestamp"),
        (lambda r: r.update(type=""), "type"),
        (lambda r: r.update(properties=[1]), "properties"),
    ],
)
def test_schema_violations_name_the_field(policy, change, path):
    record = event_dict("product_view", "2026-11-20T10:15:00Z")
    change(record)
    dead = rejected(policy, record, DeadLetterReason.SCHEMA_VIOLATION)
    assert dead.path == path
    assert dead.detail


def test_one_empty_identifier_beside_a_good_one_is_fine(policy):
    record = event_dict("product_view", "2026-11-20T10:15:00Z", email="", anonymous_id="a-1")
    assert ingest(policy, record).identifiers == ids({"anonymous_id": "a-1"})


def test_an_impossible_date_is_an_invalid_timestamp(policy):
    rejected(
        policy,
        event_dict("product_view", "2026-02-30T10:00:00Z"),
        DeadLetterReason.INVALID_TIMESTAMP,
    )


def test_oversize_records_are_rejected_before_parsing(policy, reference_policy_path):
    small = load_policy(reference_policy_path.read_text() + "\ningest: {max_record_bytes: 300}\n")
    record = event_dict("support_contact", "2026-11-20T10:00:00Z", {"text": "x" * 400})
    dead = rejected(small, record, DeadLetterReason.OVERSIZE)
    assert "300" in dead.detail
    assert isinstance(ingest(policy, record), Event)


def test_a_timestamp_further_ahead_of_its_arrival_than_the_skew_is_rejected(policy):
    ingestor = Ingestor(policy)
    arrival = parse_ms("2026-11-20T10:00:00Z")
    record = orjson.dumps(event_dict("a", "2026-11-20T10:59:00Z"))
    assert isinstance(ingestor.ingest(record, ORIGIN, arrival), Event)
    far = ingestor.ingest(orjson.dumps(event_dict("a", "2026-11-20T11:01:00Z")), ORIGIN, arrival)
    assert isinstance(far, DeadLetter) and far.reason is DeadLetterReason.FUTURE_TIMESTAMP
    assert "more than 1h past the record's arrival 2026-11-20T10:00:00Z" in far.detail


def test_no_handful_of_records_stamped_ahead_moves_the_clock(policy):
    """A file has no arrival times: what it stamps ahead is accepted as it is read, but the
    clock that decides lateness is the time its latest events agree on."""
    ingestor = Ingestor(policy)
    for minute in range(30):
        ingestor.ingest(orjson.dumps(event_dict("a", f"2026-11-20T10:{minute:02d}:00Z")), ORIGIN)
        if minute % 3 == 0:
            ahead = ingestor.ingest(orjson.dumps(event_dict("a", "2027-06-01T00:00:00Z")), ORIGIN)
            assert isinstance(ahead, Event)
    assert ingestor.clock == parse_ms("2026-11-20T10:29:00Z")
    assert ingestor.bound is not None and ingestor.bound < parse_ms("2026-11-21T00:00:00Z")
    after = ingestor.ingest(orjson.dumps(event_dict("a", "2026-11-20T10:30:00Z")), ORIGIN)
    assert isinstance(after, Event) and not after.late


def test_old_events_do_not_widen_what_the_clock_takes_from_a_record_ahead(policy):
    """One event from long ago first, then a backlog a day behind read among live events
    (two in five): a record five days ahead still does not move the clock."""
    ingestor = Ingestor(policy)

    def read(at: str) -> None:
        ingestor.ingest(orjson.dumps(event_dict("a", at)), ORIGIN)

    read("2025-01-01T00:00:00Z")
    for minute in range(40):
        read(f"2026-11-20T10:{minute:02d}:00Z")
        if minute % 3 != 0:
            read(f"2026-11-19T10:{minute:02d}:00Z")
    read("2026-11-25T10:00:00Z")
    assert ingestor.clock == parse_ms("2026-11-20T10:39:00Z")


def test_one_record_is_no_clock_to_be_late_by(policy):
    ingestor = Ingestor(policy)
    ingestor.ingest(orjson.dumps(event_dict("a", "2027-06-01T00:00:00Z")), ORIGIN)
    first = ingestor.ingest(orjson.dumps(event_dict("a", "2026-11-20T10:00:00Z")), ORIGIN)
    second = ingestor.ingest(orjson.dumps(event_dict("a", "2026-11-20T10:01:00Z")), ORIGIN)
    assert not first.late and not second.late


def test_the_broker_arrival_time_bounds_the_first_event_too(policy):
    arrival = 1_795_000_000_000  # 2026-11-18
    rejected(
        policy,
        event_dict("a", "2099-01-01T00:00:00Z"),
        DeadLetterReason.FUTURE_TIMESTAMP,
        arrival=arrival,
    )


def test_a_closed_set_of_event_types_rejects_the_others(reference_policy_path):
    closed = load_policy(reference_policy_path.read_text() + "\nevent_types: [product_view]\n")
    rejected(
        closed, event_dict("page_view", "2026-11-20T10:00:00Z"), DeadLetterReason.UNKNOWN_EVENT_TYPE
    )
    assert isinstance(ingest(closed, event_dict("product_view", "2026-11-20T10:00:00Z")), Event)


def test_feedback_names_its_action_and_needs_no_identifiers(policy):
    action_id = policy.action_ids.issue(
        "cus_" + "ab" * 10, "product_nudge", "browse_intent", "p-1", "v"
    )
    record = {
        "event_id": "f-1",
        "type": "feedback",
        "timestamp": "2026-11-20T10:00:00Z",
        "properties": {"action_id": action_id, "channel": "push", "outcome": "clicked"},
    }
    assert isinstance(ingest(policy, record), Event)
    record["properties"]["outcome"] = "liked"
    rejected(policy, record, DeadLetterReason.SCHEMA_VIOLATION)


ANA = canonical_id("email", "ana@example.com")
FORGED = {
    "the issue's forgery": f"{ANA}.product_nudge.0000000000000000",
    "a well-formed id with a made-up tag": f"{ANA}.product_nudge.{'0' * 32}",
    "a genuine digest with a made-up tag": UNKEYED.issue(ANA, "product_nudge", "m", None, "e")[:-16]
    + "0" * 16,
    "an id issued under another key": keyed(b"someone else's deployment").issue(
        ANA, "product_nudge", "m", None, "e"
    ),
    "not an id": "cus_evil",
    "not ours at all": "abc.product_nudge.0123456789abcdef",
}


@pytest.mark.parametrize("action_id", FORGED.values(), ids=FORGED.keys())
def test_feedback_about_an_action_we_never_issued_is_a_dead_letter(policy, action_id):
    record = {
        "event_id": "f-2",
        "type": "feedback",
        "timestamp": "2026-11-20T10:00:00Z",
        "properties": {"action_id": action_id, "outcome": "unsubscribed", "channel": "push"},
    }
    dead = rejected(policy, record, DeadLetterReason.UNKNOWN_ACTION_ID)
    assert dead.path == "properties.action_id"


def test_feedback_about_an_action_the_policy_does_not_have_is_a_dead_letter(policy):
    record = {
        "event_id": "f-3",
        "type": "feedback",
        "timestamp": "2026-11-20T10:00:00Z",
        "properties": {
            "action_id": policy.action_ids.issue(ANA, "free_money", "m", None, "e"),
            "outcome": "clicked",
        },
    }
    dead = rejected(policy, record, DeadLetterReason.UNKNOWN_ACTION_ID)
    assert "free_money" in dead.detail


def test_dead_letters_never_grow_past_their_input(policy):
    huge_id = "x" * 200_000
    record = event_dict("product_view", "2026-11-20T10:00:00Z", event_id=huge_id)
    record["identifiers"] = {"email": 5}
    raw = orjson.dumps(record)
    small = reference_policy_with("ingest: {max_record_bytes: 262144}")
    dead = Ingestor(small).ingest(raw, ORIGIN)
    assert len(orjson.dumps(dead.as_record())) < len(raw) + 4096
    assert dead.as_record()["raw"] == raw.decode()


@pytest.mark.parametrize(
    ("stamp", "instant"),
    [
        ("2026-11-20t10:00:00z", "2026-11-20T10:00:00Z"),
        ("2016-12-31T23:59:60Z", "2017-01-01T00:00:00Z"),
    ],
)
def test_rfc3339_forms_python_does_not_parse_are_accepted(policy, stamp, instant):
    from operators.model.timefmt import format_ms

    assert format_ms(ingest(policy, event_dict("a", stamp)).time) == instant


@pytest.mark.parametrize("stamp", ["2026-11-20T10:00:00+05:99", "2026-13-01T10:00:00Z"])
def test_impossible_offsets_and_months_are_schema_violations(policy, stamp):
    rejected(policy, event_dict("a", stamp), DeadLetterReason.SCHEMA_VIOLATION)


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-23:59", "1969-12-31T23:59:59Z"])
def test_instants_outside_1970_to_9000_are_invalid_not_a_crash(policy, stamp):
    dead = rejected(policy, event_dict("a", stamp), DeadLetterReason.INVALID_TIMESTAMP)
    assert "1970-9000" in dead.detail


def test_consent_changes_need_a_purpose_and_a_boolean_grant(policy):
    record = event_dict(
        "consent_changed",
        "2026-11-20T10:00:00Z",
        {"purpose": "marketing", "channel": "*", "granted": "yes"},
    )
    dead = rejected(policy, record, DeadLetterReason.SCHEMA_VIOLATION)
    assert dead.path == "properties.granted"


def test_an_event_whose_identifiers_are_all_blocked_is_a_dead_letter(policy):
    record = event_dict(
        "product_view", "2026-11-20T10:00:00Z", email="test@test.com", phone="0000000000"
    )
    record["context"] = {"region": "ES"}
    dead = rejected(policy, record, DeadLetterReason.NO_USABLE_IDENTIFIER)
    assert "email blocked" in dead.detail and "phone blocked" in dead.detail


def test_phones_are_normalised_with_the_event_region(policy):
    record = event_dict(
        "purchase", "2026-11-20T10:00:00Z", phone="600 111 222", email="noreply@shop.example"
    )
    record["context"] = {"region": "ES"}
    event = ingest(policy, record)
    assert event.identifiers == ids({"phone": "+34600111222"})
    assert event.rejected_identifiers == (("email", "blocked"),)


def late_stream(policy):
    ingestor = Ingestor(policy)
    first = ingestor.ingest(orjson.dumps(event_dict("page_view", "2026-11-20T10:00:00Z")), ORIGIN)
    within = ingestor.ingest(orjson.dumps(event_dict("page_view", "2026-11-20T09:55:00Z")), ORIGIN)
    beyond = ingestor.ingest(orjson.dumps(event_dict("page_view", "2026-11-20T09:54:59Z")), ORIGIN)
    return first, within, beyond


def test_an_event_more_than_the_allowed_lateness_behind_the_clock_is_marked_late(policy):
    lenient = reference_policy_with("ingest: {allowed_lateness: 5m}")
    first, within, beyond = late_stream(lenient)
    assert not first.late and not within.late
    assert isinstance(beyond, Event) and beyond.late
    assert beyond.watermark == first.time


def test_late_events_are_dead_letters_when_the_policy_says_so(policy):
    strict = reference_policy_with("ingest: {allowed_lateness: 5m, late_events: dead_letter}")
    _, within, beyond = late_stream(strict)
    assert isinstance(within, Event)
    assert isinstance(beyond, DeadLetter) and beyond.reason is DeadLetterReason.LATE_EVENT
    assert beyond.path == "timestamp" and "5m behind" in beyond.detail


POISON = {
    "control characters": b'{"x":"' + b"\x01" * 262_000 + b'"}',
    "invalid bytes": b"\xff" * 262_000,
    "quotes": b'"' * 262_000,
    "backslashes": b'{"x":"' + b"\\" * 262_000,
    "latin-1 text": ('{"text": "' + "é" * 100_000 + '"}').encode("latin-1"),
    "oversize control characters": b"\x01" * 1_000_000,
}


@pytest.mark.parametrize("raw", POISON.values(), ids=POISON.keys())
def test_a_dead_letter_keeps_its_record_whole_at_a_bounded_size(policy, raw):
    """However much quoting would expand it, the record is all there (as base64 where
    quoting costs more than the record); an oversize one keeps its first 64 KiB."""
    big = reference_policy_with("ingest: {max_record_bytes: 262144}")
    dead = Ingestor(big).ingest(raw, ORIGIN)
    assert isinstance(dead, DeadLetter)
    serialized = orjson.dumps(dead.as_record())
    kept_at_most = 65536 if dead.reason is DeadLetterReason.OVERSIZE else len(raw)
    assert len(serialized) <= dead_letter_bound(kept_at_most)
    record = orjson.loads(serialized)
    kept = (
        base64.b64decode(record["raw_base64"]) if "raw_base64" in record else record["raw"].encode()
    )
    assert kept == raw[:kept_at_most]
    if kept_at_most < len(raw):
        assert record["raw_truncated"] is True and record["raw_size"] == len(raw)
    else:
        assert "raw_truncated" not in record


def test_a_60_kb_record_of_nested_quotes_is_kept_whole_not_cut():
    """Quoted, it would take 84 KB; as base64 80 KB, with its beginning to read."""
    raw = ('{"a":' * 12_040).encode()
    record = DeadLetter(DeadLetterReason.INVALID_JSON, "x", raw, ORIGIN).as_record()
    assert base64.b64decode(record["raw_base64"]) == raw and "raw_truncated" not in record
    assert (
        raw.decode().startswith(record["raw"]) and 4_000 < len(orjson.dumps(record["raw"])) <= 4_096
    )


def test_a_dead_letter_is_cut_to_the_producers_message_max_bytes():
    raw = ('{"a":' * 12_040).encode()
    dead = DeadLetter(DeadLetterReason.INVALID_JSON, "x", raw, ORIGIN)
    record = dead.as_record(max_bytes=50_000)
    assert len(orjson.dumps(record)) <= 50_000
    assert record["raw_truncated"] is True and record["raw_size"] == len(raw)
    kept = base64.b64decode(record["raw_base64"]) if "raw_base64" in record else record["raw"]
    assert raw.startswith(kept if isinstance(kept, bytes) else kept.encode())
    assert len(kept) > 20_000, "what fits, whichever way keeps more"


def test_an_ordinary_bad_record_keeps_all_of_its_text(policy):
    raw = b'{"event_id": "e-1", "type": "a \\"quoted\\" \\u0001 word", "timestamp": 7'
    record = rejected(policy, raw, DeadLetterReason.INVALID_JSON).as_record()
    assert record["raw"] == raw.decode() and "raw_truncated" not in record


def test_a_huge_quoted_field_is_cut_once_escaped(policy):
    record = event_dict("a", "2026-11-20T10:00:00Z", event_id="\x01" * 250)
    record["identifiers"] = {"email": 5}
    dead = rejected(policy, record, DeadLetterReason.SCHEMA_VIOLATION).as_record()
    assert len(orjson.dumps(dead["event_id"])) <= 2048 + 8
