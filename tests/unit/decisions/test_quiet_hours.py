"""Quiet hours in the customer's own time zone (operators/decisions/quiet_hours.py)."""

from zoneinfo import ZoneInfo

from operators.decisions.quiet_hours import quiet_until
from operators.model.timefmt import format_ms, parse_ms
from operators.policy.compiled import QuietHours

HOUR = 3_600_000


def at(stamp):
    return parse_ms(stamp)


MADRID = ZoneInfo("Europe/Madrid")


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


def test_in_the_hour_a_fall_back_repeats_quiet_hours_end_after_now():
    quiet = QuietHours(22 * 60, 2 * 60 + 30, frozenset(), frozenset(), {}, 0)
    second_pass = at("2025-10-26T01:10:00Z")  # 02:10 CET, after 02:10 CEST an hour before
    assert format_ms(quiet_until(quiet, second_pass, MADRID)) == "2025-10-26T01:30:00Z"
    first_pass = at("2025-10-26T00:10:00Z")  # 02:10 CEST
    assert format_ms(quiet_until(quiet, first_pass, MADRID)) == "2025-10-26T00:30:00Z"


FULL_QUIET_HOURS = """quiet_hours:
  default: {start: "21:00", end: "08:00"}
  except_channels: [in_app, agent]
  except_categories: [care]
  channels:
    sms: {start: "20:00", end: "09:00"}
  release_over: 30m
"""
"""As ``policy-full.yaml`` pins them."""


def spread_policy():
    from operators.policy.load import load_policy
    from tests.conftest import REFERENCE_POLICY

    text = REFERENCE_POLICY.read_text()
    start = text.index("quiet_hours:")
    end = text.index("\ncaps:", start)
    return load_policy(text[:start] + FULL_QUIET_HOURS + text[end:])


def test_a_channel_with_its_own_window_keeps_it_and_the_others_keep_the_default():
    quiet = spread_policy().quiet_hours
    evening = at("2026-11-20T19:30:00Z")  # 20:30 in Madrid
    assert format_ms(quiet_until(quiet, evening, MADRID, "sms")) == "2026-11-21T08:00:00Z"
    assert quiet_until(quiet, evening, MADRID, "email") is None
    morning = at("2026-11-21T07:30:00Z")  # 08:30 in Madrid: email may go, sms not yet
    assert quiet_until(quiet, morning, MADRID, "email") is None
    assert format_ms(quiet_until(quiet, morning, MADRID, "sms")) == "2026-11-21T08:00:00Z"


def test_10000_deferrals_leave_spread_over_30_minutes_not_in_one_second():
    """The largest second's burst of deferred nudges released after one night, with and
    without ``release_over`` (each customer browsing at 22:00 Madrid time)."""
    from collections import Counter

    from operators.journey import Journey
    from operators.model.records import Decision, Outcome
    from operators.model.state import CustomerState
    from operators.policy.load import load_policy
    from tests.conftest import REFERENCE_POLICY, make_event

    grant = {"purpose": "marketing", "channel": "*", "granted": True}
    night = ["2026-11-20T21:00:00Z", "2026-11-20T21:05:00Z", "2026-11-20T21:10:00Z"]

    def releases(policy):
        due = []
        for n in range(10_000):
            journey = Journey(CustomerState(f"cus_{n:020x}"))
            events = [make_event("consent_changed", "2026-11-01T09:00:00Z", grant)]
            events += [make_event("product_view", t, {"product_id": "p-1"}) for t in night]
            for event in events:
                for output in journey.on_event(policy, event):
                    if isinstance(output, Decision) and output.outcome is Outcome.DEFERRED:
                        due.append(output.until)
        return due

    at_once = releases(load_policy(REFERENCE_POLICY.read_text()))
    spread = releases(spread_policy())
    window_end = at("2026-11-21T07:00:00Z")
    assert len(at_once) == len(spread) == 10_000
    assert set(at_once) == {window_end}
    assert all(window_end <= due < window_end + 30 * 60_000 for due in spread)
    burst = max(Counter(due // 1000 for due in spread).values())
    assert burst <= 25  # 10,000 over 1,800 seconds: about 5.6 a second on average
    assert releases(spread_policy())[:100] == spread[:100]  # the same offset every time


def test_a_window_for_a_channel_the_policy_lacks_is_refused_naming_it():
    import pytest

    from operators.policy.load import PolicyError, load_policy
    from tests.conftest import REFERENCE_POLICY

    text = REFERENCE_POLICY.read_text()
    start = text.index("quiet_hours:")
    end = text.index("\ncaps:", start)
    bad = FULL_QUIET_HOURS.replace("sms: {", "fax: {").replace("30m", "0x")
    with pytest.raises(PolicyError) as refused:
        load_policy(text[:start] + bad + text[end:])
    assert "quiet_hours.channels.fax" in str(refused.value)
    assert "names no channel: 'fax'" in str(refused.value)
    assert "quiet_hours.release_over" in str(refused.value)
