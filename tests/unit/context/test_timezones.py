"""The customer's time zone (operators/context/timezones.py)."""

from operators.model.timefmt import zone


def test_time_zone_names_that_are_not_zones_are_ignored():
    assert zone("Europe") is None and zone("Etc") is None and zone("Mars/Olympus") is None
    assert zone("../../etc/passwd") is None and zone("") is None
    assert zone("Asia/Tokyo") is not None
