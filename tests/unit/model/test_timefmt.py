import random

import pytest

from operators.model.durations import format_duration, parse_duration_ms
from operators.model.timefmt import LATEST, InvalidTimestamp, format_ms, parse_ms


def test_offsets_and_z_name_the_same_instant():
    assert parse_ms("2026-11-20T10:15:00+01:00") == parse_ms("2026-11-20T09:15:00Z")


def test_output_times_are_utc_with_z_and_milliseconds_only_when_needed():
    assert format_ms(parse_ms("2026-11-20T10:15:00+01:00")) == "2026-11-20T09:15:00Z"
    assert format_ms(parse_ms("2026-11-20T09:15:00.250Z")) == "2026-11-20T09:15:00.250Z"


def test_nanosecond_fractions_are_accepted_to_the_millisecond():
    assert format_ms(parse_ms("2026-11-20T09:15:00.123456789Z")) == "2026-11-20T09:15:00.123Z"


@pytest.mark.parametrize("text", ["2026-02-30T10:00:00Z", "2026-11-20T25:00:00Z"])
def test_impossible_instants_are_rejected(text):
    with pytest.raises(InvalidTimestamp):
        parse_ms(text)


def test_durations_in_every_unit():
    assert parse_duration_ms("30s") == 30_000
    assert parse_duration_ms("30m") == 1_800_000
    assert parse_duration_ms("24h") == 86_400_000
    assert parse_duration_ms("7d") == 604_800_000
    assert format_duration(604_800_000) == "7d"
    assert format_duration(90_000) == "90s"
    with pytest.raises(ValueError):
        parse_duration_ms("1 hour")


def test_output_times_round_trip_across_the_calendar():
    rng = random.Random(5)
    for ms in [
        0,
        1,
        999,
        1000,
        86_399_999,
        LATEST - 1,
        *(rng.randrange(LATEST) for _ in range(5000)),
    ]:
        assert parse_ms(format_ms(ms)) == ms
    assert format_ms(10**15) == "9999-12-31T23:59:59.999Z"
