"""Guardrails at their edges: caps, quiet hours, deferrals (operators/guardrails.py)."""

from zoneinfo import ZoneInfo

from operators.guardrails import full_cap, quiet_until
from operators.timefmt import format_ms, parse_ms

MADRID = ZoneInfo("Europe/Madrid")
HOUR = 3_600_000


def at(stamp):
    return parse_ms(stamp)


def test_quiet_hours_start_at_their_start_and_end_at_their_end(policy):
    quiet = policy.quiet_hours
    # 21:00-08:00 Madrid is 20:00-07:00 UTC in November (CET, +01:00)
    assert quiet_until(quiet, at("2026-11-20T19:59:59.999Z"), MADRID) is None
    assert format_ms(quiet_until(quiet, at("2026-11-20T20:00:00Z"), MADRID)) == (
        "2026-11-21T07:00:00Z"
    )
    assert format_ms(quiet_until(quiet, at("2026-11-21T06:59:59Z"), MADRID)) == (
        "2026-11-21T07:00:00Z"
    )
    assert quiet_until(quiet, at("2026-11-21T07:00:00Z"), MADRID) is None


def test_a_deferral_crosses_midnight_to_the_next_morning(policy):
    ends = quiet_until(policy.quiet_hours, at("2026-11-20T23:30:00Z"), MADRID)  # 00:30 local
    assert format_ms(ends) == "2026-11-21T07:00:00Z"
    ends = quiet_until(policy.quiet_hours, at("2026-12-31T22:59:00Z"), MADRID)  # 23:59 local
    assert format_ms(ends) == "2027-01-01T07:00:00Z"


def test_quiet_hours_follow_daylight_saving_changes(policy):
    quiet = policy.quiet_hours
    # spring forward (29 March 2026): 22:00 CET to 08:00 CEST is 9 hours, not 10
    start = at("2026-03-28T21:00:00Z")
    assert quiet_until(quiet, start, MADRID) - start == 9 * HOUR
    # fall back (25 October 2026): 22:00 CEST to 08:00 CET is 11 hours
    start = at("2026-10-24T20:00:00Z")
    assert quiet_until(quiet, start, MADRID) - start == 11 * HOUR
    # the same UTC instant is daytime in summer and quiet in winter
    assert quiet_until(quiet, at("2026-07-01T06:30:00Z"), MADRID) is None  # 08:30 CEST
    assert quiet_until(quiet, at("2026-12-01T06:30:00Z"), MADRID) is not None  # 07:30 CET


def test_quiet_hours_are_the_customers_own(policy):
    tokyo = ZoneInfo("Asia/Tokyo")
    noon_in_madrid = at("2026-11-20T11:00:00Z")  # 20:00 in Tokyo
    assert quiet_until(policy.quiet_hours, noon_in_madrid, MADRID) is None
    assert quiet_until(policy.quiet_hours, noon_in_madrid + HOUR, tokyo) == at(
        "2026-11-20T23:00:00Z"
    )


def send(t, action_id, action="product_nudge", channel="sms", category="marketing"):
    return (t, action_id, action, channel, category, None)


def test_a_cap_exactly_at_its_limit_holds_until_the_window_frees_a_slot(policy):
    t = at("2026-11-20T10:00:00Z")
    sends = [send(t, "a-1")]
    cap, frees = full_cap(policy.caps, sends, "loan_offer", "sms", "marketing", t + 24 * HOUR - 1)
    assert cap.name == "sms-daily" and frees == t + 24 * HOUR
    assert full_cap(policy.caps, sends, "loan_offer", "sms", "marketing", t + 24 * HOUR) is None
    assert full_cap(policy.caps, sends, "loan_offer", "email", "marketing", t + HOUR) is None


def test_caps_count_each_action_id_once_and_across_channels(policy):
    t = at("2026-11-20T10:00:00Z")
    same_twice = [send(t, "a-1", channel="email"), send(t + 1, "a-1", channel="email")]
    assert full_cap(policy.caps, same_twice, "loan_offer", "email", "marketing", t + 2) is None
    three = [send(t + n, f"a-{n}", channel=c) for n, c in enumerate(("email", "push", "email"))]
    cap, frees = full_cap(policy.caps, three, "loan_offer", "push", "marketing", t + HOUR)
    assert cap.name == "marketing-weekly" and frees == t + 7 * 24 * HOUR
    four = [*three, send(t + 3, "s-1", "help_offer", "in_app", "service")]
    cap, _ = full_cap(policy.caps, four, "help_offer", "in_app", "service", t + HOUR)
    assert cap.name == "all-daily"


def test_in_the_hour_a_fall_back_repeats_quiet_hours_end_after_now():
    from operators.policy import QuietHours

    quiet = QuietHours(22 * 60, 2 * 60 + 30, frozenset(), frozenset())
    second_pass = at("2025-10-26T01:10:00Z")  # 02:10 CET, after 02:10 CEST an hour before
    assert format_ms(quiet_until(quiet, second_pass, MADRID)) == "2025-10-26T01:30:00Z"
    first_pass = at("2025-10-26T00:10:00Z")  # 02:10 CEST
    assert format_ms(quiet_until(quiet, first_pass, MADRID)) == "2025-10-26T00:30:00Z"


def test_a_send_decided_later_for_a_later_time_counts_for_an_earlier_decision(policy):
    """Out of order: a decision for Mar 3 comes after sends on Mar 2 and Mar 4 (and 1
    more): every 7-day window that would hold it must have room."""
    sends = [send(at(f"2026-03-0{d}T10:00:00Z"), f"a-{d}", channel="push") for d in (2, 4)]
    sends.append(send(at("2026-03-08T10:00:00Z"), "a-8", channel="push"))
    full = full_cap(
        policy.caps, sends, "product_nudge", "push", "marketing", at("2026-03-03T12:00:00Z")
    )
    assert full is not None and full[0].name == "marketing-weekly"


def test_time_zone_names_that_are_not_zones_are_ignored():
    from operators.guardrails import zone

    assert zone("Europe") is None and zone("Etc") is None and zone("Mars/Olympus") is None
    assert zone("../../etc/passwd") is None and zone("") is None
    assert zone("Asia/Tokyo") is not None
