"""What bounds event time in replay: no record, nor a handful of records, stamped far ahead
moves the clock that decides lateness or the end of event time (Kafka mode:
tests/integration/test_event_time_kafka.py)."""

from __future__ import annotations

from tests.conftest import event_dict, write_jsonl

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}
CUSTOMERS = 50


def shoppers() -> list[dict]:
    """Fifty customers who consent, then look at one product three times in two hours (in
    the afternoon in Madrid, the policy's zone): fifty product nudges."""
    consents = [
        event_dict(
            "consent_changed", f"2026-11-20T10:00:{n:02d}Z", GRANT, email=f"c{n}@example.com"
        )
        for n in range(CUSTOMERS)
    ]
    views = [
        event_dict("product_view", f"2026-11-20T{hour}:{n:02d}Z", {"product_id": f"p-{n}"},
                   email=f"c{n}@example.com")
        for hour in ("11:00", "11:30", "12:00")
        for n in range(CUSTOMERS)
    ]  # fmt: skip
    return consents + views


def ahead(at: str, n: int = 0) -> dict:
    return event_dict("page_view", at, event_id=f"ahead-{n}", anonymous_id=f"stranger-{n}")


def replayed(tmp_path, replay, events, *extra, policy=None):
    result = replay(write_jsonl(tmp_path / "events.jsonl", events), *extra, policy=policy)
    assert result.returncode == 0, result.stderr
    return result


def nudges(result) -> int:
    path = result.out / "actions.push.jsonl"
    return len(result.lines("actions.push.jsonl")) if path.exists() else 0


def win_backs(result) -> int:
    path = result.out / "actions.email.jsonl"
    emails = result.lines("actions.email.jsonl") if path.exists() else []
    return sum(1 for a in emails if a["action"] == "win_back_offer")


def dead(result) -> list[tuple[str, str | None]]:
    return [(d["reason"], d.get("event_id")) for d in result.lines("dlq.jsonl")]


def test_one_record_stamped_months_ahead_makes_no_one_late(tmp_path, replay):
    events = shoppers()
    events.insert(1, ahead("2027-06-01T00:00:00Z"))  # inside a year: once accepted as it was
    result = replayed(tmp_path, replay, events)
    assert nudges(result) == CUSTOMERS
    assert result.summary()["late_events"] == 0
    assert dead(result) == [("future_timestamp", "ahead-0")]
    (letter,) = result.lines("dlq.jsonl")
    assert "2027-06-01T00:00:00Z is past 2026-11-20T" in letter["detail"]


def test_a_handful_of_records_stamped_ahead_dead_letter_nothing_else(
    tmp_path, replay, reference_policy_path
):
    events = shoppers()
    for n, at in enumerate(
        ["2027-06-01T00:00:00Z", "2026-12-24T00:00:00Z", "2027-01-10T00:00:00Z"]
    ):
        events.insert(40 * n + 1, ahead(at, n))
    events += [ahead("2027-03-01T00:00:00Z", 3), ahead("2027-03-01T00:00:00Z", 4)]
    strict = tmp_path / "strict.yaml"
    strict.write_text(reference_policy_path.read_text() + "\ningest: {late_events: dead_letter}\n")
    result = replayed(tmp_path, replay, events, policy=strict)
    assert nudges(result) == CUSTOMERS
    assert sorted(dead(result)) == [("future_timestamp", f"ahead-{n}") for n in range(5)]


def test_a_record_stamped_ahead_at_the_end_of_the_file_does_not_end_event_time_there(
    tmp_path, replay
):
    """Were it the end of event time, every customer's 45-day `inactive` timer would fire:
    fifty win-back emails."""
    result = replayed(tmp_path, replay, [*shoppers(), ahead("2027-02-01T00:00:00Z")])
    assert win_backs(result) == 0
    assert nudges(result) == CUSTOMERS
    assert dead(result) == [("future_timestamp", "ahead-0")]
    # Event time that is asked for still ends where it is asked to.
    result = replayed(tmp_path, replay, shoppers(), "--until", "2027-02-01T00:00:00Z")
    assert win_backs(result) == CUSTOMERS


def test_a_quiet_file_moves_on_in_steps_as_long_as_its_own(tmp_path, replay):
    """A file of a few events days apart is not a file of records stamped ahead."""
    views = [
        event_dict("product_view", f"2026-11-{day:02d}T11:00:00Z", {"product_id": "p-42"})
        for day in (2, 4, 6, 9, 11, 13, 16, 18, 20, 23, 25, 27)
    ]
    consent = event_dict("consent_changed", "2026-11-01T09:00:00Z", GRANT)
    idle = [
        event_dict("page_view", f"2026-11-{d:02d}T09:00:00Z", anonymous_id=f"a{d}")
        for d in range(1, 31)
    ]
    events = sorted([consent, *idle, *views], key=lambda e: e["timestamp"])
    result = replayed(tmp_path, replay, events)
    assert dead(result) == []
    assert result.summary()["late_events"] == 0


def test_a_second_60_is_a_timestamp_only_where_a_leap_second_was(tmp_path, replay):
    events = [
        *shoppers(),
        event_dict("page_view", "2026-11-20T10:30:60Z", event_id="no-leap", anonymous_id="x"),
        event_dict("page_view", "2016-12-31T23:59:60Z", event_id="leap", anonymous_id="y"),
    ]
    result = replayed(tmp_path, replay, events)
    assert dead(result) == [("invalid_timestamp", "no-leap")]
    (letter,) = result.lines("dlq.jsonl")
    assert "second 60 of a minute that had no leap second" in letter["detail"]
