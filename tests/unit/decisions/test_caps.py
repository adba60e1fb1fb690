"""Frequency caps at their edges (operators/decisions/caps.py)."""

from operators.decisions.caps import full_cap
from operators.model.state import Send
from operators.model.timefmt import parse_ms

HOUR = 3_600_000


def at(stamp):
    return parse_ms(stamp)


def send(t, action_id, action="product_nudge", channel="sms", category="marketing"):
    return Send(t, action_id, action, channel, category, None)


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


def test_a_send_decided_later_for_a_later_time_counts_for_an_earlier_decision(policy):
    """Out of order: a decision for Mar 3 comes after sends on Mar 2 and Mar 4 (and 1
    more): every 7-day window that would hold it must have room."""
    sends = [send(at(f"2026-03-0{d}T10:00:00Z"), f"a-{d}", channel="push") for d in (2, 4)]
    sends.append(send(at("2026-03-08T10:00:00Z"), "a-8", channel="push"))
    full = full_cap(
        policy.caps, sends, "product_nudge", "push", "marketing", at("2026-03-03T12:00:00Z")
    )
    assert full is not None and full[0].name == "marketing-weekly"
