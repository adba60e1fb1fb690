"""Decisions with guardrails, one customer at a time (operators/decisions/decide.py, journey.py)."""

import dataclasses

from operators.context.suppression import suppressed_by
from operators.decisions.decide import decide
from operators.journey import Journey
from operators.model.records import Action, Decision, Outcome
from operators.model.state import CustomerState, MomentKey, OpenMoment, Send
from operators.model.timefmt import format_ms, parse_ms
from operators.policy.load import load_policy
from tests.conftest import REFERENCE_POLICY, make_event

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}
HOUR = 3_600_000
DAY = 24 * HOUR


def run(policy, events, journey=None, until=None):
    journey = journey or Journey(CustomerState("cus_ana"))
    outputs = []
    for event in events:
        outputs += journey.on_event(policy, event)
    if until is not None:
        outputs += journey.fire_due(policy, parse_ms(until), inclusive=True)
    return journey, outputs


def decisions(outputs):
    return [
        (d.action, d.outcome, d.channel, format_ms(d.at))
        for d in outputs
        if isinstance(d, Decision)
    ]


def sent(outputs):
    return [o for o in outputs if isinstance(o, Action)]


def views(*stamps, product="p-42"):
    return [make_event("product_view", at, {"product_id": product}) for at in stamps]


def grant(at="2026-11-01T09:00:00Z", **properties):
    return make_event("consent_changed", at, {**GRANT, **properties})


def test_a_nudge_in_quiet_hours_is_deferred_to_their_end_with_the_same_action_id(policy):
    night = views("2026-11-20T20:00:00Z", "2026-11-20T20:10:00Z", "2026-11-20T21:30:00Z")
    _, outputs = run(policy, [grant(), *night], until="2026-11-21T12:00:00Z")
    assert decisions(outputs) == [
        ("product_nudge", Outcome.DEFERRED, "push", "2026-11-20T21:30:00Z"),
        ("product_nudge", Outcome.SENT, "push", "2026-11-21T07:00:00Z"),
    ]
    deferred, done = [o for o in outputs if isinstance(o, Decision)]
    assert deferred.reason == "quiet hours until 2026-11-21T07:00:00Z"
    assert (deferred.rule, deferred.until) == ("quiet_hours", parse_ms("2026-11-21T07:00:00Z"))
    assert deferred.action_id == done.action_id == sent(outputs)[0].action_id


def test_an_opt_out_during_the_night_stops_a_deferred_nudge(policy):
    night = views("2026-11-20T20:00:00Z", "2026-11-20T20:10:00Z", "2026-11-20T21:30:00Z")
    opt_out = grant("2026-11-21T02:00:00Z", granted=False)
    _, outputs = run(policy, [grant(), *night, opt_out], until="2026-11-21T12:00:00Z")
    assert [d[1] for d in decisions(outputs)] == [Outcome.DEFERRED, Outcome.NO_CONSENT]
    assert sent(outputs) == []


def test_a_moment_that_would_be_stale_by_morning_is_dropped_not_deferred():
    text = REFERENCE_POLICY.read_text().replace(
        "cart_abandoned:  {from: checkout_abandoned, value: 50, half_life: 6h}",
        "cart_abandoned:  {from: checkout_abandoned, value: 50, half_life: 2h}",
    )
    short = load_policy(text)
    checkout = make_event("checkout_started", "2026-11-20T19:45:00Z")  # 20:45 in Madrid
    _, outputs = run(short, [grant(), checkout], until="2026-11-21T12:00:00Z")
    (decision,) = [o for o in outputs if isinstance(o, Decision)]
    assert decision.outcome is Outcome.STALE
    assert decision.reason.startswith("quiet hours until 2026-11-21T07:00:00Z, when its value")


def test_care_and_in_app_are_not_held_back_by_quiet_hours(policy):
    night = "2026-11-20T23:00:00Z"
    searches = [make_event("help_search", night) for _ in range(3)]
    call = make_event("support_contact", night, {"text": "my wife died"})
    _, outputs = run(policy, [*searches, call])
    assert [(d[0], d[1], d[2]) for d in decisions(outputs)] == [
        ("help_offer", Outcome.SENT, "in_app"),
        ("empathy_handoff", Outcome.SENT, "agent"),
    ]


def four_products_in_an_hour():
    events = [grant()]
    for n in range(4):
        events += views(*(f"2026-11-16T1{h}:0{n}:00Z" for h in (0, 1, 2)), product=f"p-{n}")
    return events


def test_a_capped_action_is_decided_again_when_a_slot_frees():
    daily = load_policy(
        REFERENCE_POLICY.read_text().replace(
            "match: {category: marketing}, max: 3, window: 7d}",
            "match: {category: marketing}, max: 3, window: 1d}",
        )
    )
    _, outputs = run(daily, four_products_in_an_hour(), until="2026-11-18T00:00:00Z")
    assert decisions(outputs)[-2:] == [
        ("product_nudge", Outcome.CAPPED, "push", "2026-11-16T12:03:00Z"),
        ("product_nudge", Outcome.SENT, "push", "2026-11-17T12:00:00Z"),
    ]
    capped = [o for o in outputs if isinstance(o, Decision)][-2]
    assert capped.reason == "capped by marketing-weekly until 2026-11-17T12:00:00Z"
    assert capped.as_record()["rule"] == "marketing-weekly"
    assert capped.as_record()["until"] == "2026-11-17T12:00:00Z"
    assert [a.group for a in sent(outputs)] == ["p-0", "p-1", "p-2", "p-3"]


def test_a_capped_action_that_will_be_stale_when_a_slot_frees_is_not_decided_again(policy):
    _, outputs = run(policy, four_products_in_an_hour(), until="2026-11-30T00:00:00Z")
    assert decisions(outputs)[-1] == (
        "product_nudge",
        Outcome.CAPPED,
        "push",
        "2026-11-16T12:03:00Z",
    )
    reason = [o for o in outputs if isinstance(o, Decision)][-1].reason
    assert (
        reason == "capped by marketing-weekly; its value falls below min_value before a slot frees"
    )


def test_no_cap_is_exceeded_even_when_moments_keep_coming(policy):
    events = [grant()]
    for n in range(8):
        events += views(*(f"2026-11-16T1{h}:{n:02d}:00Z" for h in (0, 1, 2)), product=f"p-{n}")
    _, outputs = run(policy, events, until="2026-11-17T00:00:00Z")
    assert len(sent(outputs)) == 3  # marketing-weekly


def test_channels_are_tried_in_order(policy):
    sms_only = grant(channel="email")
    _, outputs = run(
        policy,
        [sms_only, *views("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z", "2026-11-20T12:00:00Z")],
    )
    assert decisions(outputs) == [("product_nudge", Outcome.SENT, "email", "2026-11-20T12:00:00Z")]


def _two_moments(policy, sends=()):
    """Ana, with a nudge moment (score 40) and a loan moment (60) open at 10:00 and the
    marketing ``sends`` (days before) behind her."""
    journey = Journey(CustomerState("cus_ana"))
    journey.on_event(policy, grant())
    now = parse_ms("2026-11-20T10:00:00Z")
    journey.state.sends = [
        Send(now - days * 86_400_000, f"old-{days}", "product_nudge", "push", "marketing", "p-1")
        for days in sends
    ]
    journey.state.moments[("browse_intent", "p-42")] = OpenMoment(
        40.0, now, "v-1", ("repeat_product_interest",), ("v-1",)
    )
    journey.state.moments[("loan_intent", None)] = OpenMoment(
        60.0, now, "l-1", ("eligibility_checks",), ("l-1",)
    )
    keys = [MomentKey("browse_intent", "p-42"), MomentKey("loan_intent", None)]
    return journey, decide(policy, journey.state, keys, now)


def test_the_highest_score_goes_first_and_what_it_outranked_is_decided_again_after_it(policy):
    journey, outputs = _two_moments(policy)
    assert [
        (d.action, d.outcome, d.channel, d.reason) for d in outputs if isinstance(d, Decision)
    ] == [
        ("loan_offer", Outcome.SENT, "email", "eligible"),
        ("product_nudge", Outcome.OUTRANKED, None, "outranked by loan_offer"),
        ("product_nudge", Outcome.SENT, "push", "eligible"),
    ]
    assert [(a.action, a.recent_sends) for a in sent(outputs)] == [
        ("loan_offer", 1),
        ("product_nudge", 2),
    ], "the nudge was decided with the loan offer counted"
    assert not journey.state.moments, "both moments were consumed"


def test_an_outranked_moment_the_winner_leaves_no_cap_room_for_is_capped_and_stays_open(policy):
    journey, outputs = _two_moments(policy, sends=(6, 5))  # marketing-weekly: 2 of 3 used
    assert [(d.action, d.outcome, d.rule) for d in outputs if isinstance(d, Decision)] == [
        ("loan_offer", Outcome.SENT, None),
        ("product_nudge", Outcome.OUTRANKED, None),
        ("product_nudge", Outcome.CAPPED, "marketing-weekly"),
    ]
    assert [a.action for a in sent(outputs)] == ["loan_offer"]
    assert ("browse_intent", "p-42") in journey.state.moments
    freed = journey.state.deferred[MomentKey("browse_intent", "p-42")]
    assert format_ms(freed) == "2026-11-21T10:00:00Z", "when the 6-day-old send leaves the week"
    later = journey.fire_due(policy, freed, inclusive=True)
    assert [(d.action, d.outcome) for d in later if isinstance(d, Decision)] == [
        ("product_nudge", Outcome.SENT)
    ]


def feedback(action_id, outcome, at, channel="push"):
    return make_event(
        "feedback", at, {"action_id": action_id, "channel": channel, "outcome": outcome}
    )


def nudged(policy):
    journey, outputs = run(
        policy,
        [grant(), *views("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z", "2026-11-20T12:00:00Z")],
    )
    (action,) = sent(outputs)
    return journey, action


def test_an_unsubscribe_revokes_consent_on_that_channel(policy):
    journey, action = nudged(policy)
    journey.on_event(policy, feedback(action.action_id, "unsubscribed", "2026-11-20T13:00:00Z"))
    later = views(
        "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z", "2026-11-25T12:00:00Z", product="p-7"
    )
    _, outputs = run(policy, later, journey)
    assert decisions(outputs) == [("product_nudge", Outcome.SENT, "email", "2026-11-25T12:00:00Z")]


def test_a_click_closes_the_moment_so_no_other_channel_repeats_it(policy):
    journey, action = nudged(policy)
    more = views("2026-11-20T12:30:00Z", "2026-11-20T12:40:00Z")
    journey, _ = run(policy, more, journey)
    assert ("browse_intent", "p-42") in journey.state.moments  # reopened, held by the cooldown
    journey.on_event(policy, feedback(action.action_id, "clicked", "2026-11-20T13:00:00Z"))
    assert ("browse_intent", "p-42") not in journey.state.moments


def test_a_complaint_through_feedback_holds_marketing_back_like_a_complaint(policy):
    journey, action = nudged(policy)
    journey.on_event(policy, feedback(action.action_id, "complained", "2026-11-20T13:00:00Z"))
    loan = policy.actions["loan_offer"]
    assert suppressed_by(
        policy, journey.state, loan, "email", None, parse_ms("2026-11-27T00:00:00Z")
    ) == (
        "after-complaint",
        parse_ms("2026-12-04T13:00:00Z"),
    )


def test_the_customers_time_zone_is_the_latest_they_sent(policy):
    tokyo = [
        dataclasses.replace(v, context={"timezone": "Asia/Tokyo"})
        for v in views("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z", "2026-11-20T12:30:00Z")
    ]
    _, outputs = run(policy, [grant(), *tokyo], until="2026-11-21T12:00:00Z")  # 21:30 in Tokyo
    assert decisions(outputs) == [
        ("product_nudge", Outcome.DEFERRED, "push", "2026-11-20T12:30:00Z"),
        ("product_nudge", Outcome.SENT, "push", "2026-11-20T23:00:00Z"),
    ]


def test_an_unsubscribe_without_a_channel_revokes_the_channel_it_went_out_on(policy):
    journey, action = nudged(policy)
    unsubscribe = make_event(
        "feedback",
        "2026-11-20T13:00:00Z",
        {"action_id": action.action_id, "outcome": "unsubscribed"},
    )
    journey.on_event(policy, unsubscribe)
    assert journey.state.consent[("marketing", "push")].granted is False


def test_a_late_checkout_starts_no_cart_timer(policy):
    late = dataclasses.replace(make_event("checkout_started", "2026-11-17T10:00:00Z"), late=True)
    journey, outputs = run(policy, [grant(), late], until="2026-11-20T12:00:00Z")
    assert "checkout_abandoned" not in journey.state.pending and sent(outputs) == []


def test_a_time_zone_that_is_a_directory_of_zones_is_ignored(policy):
    event = dataclasses.replace(
        make_event("page_view", "2026-11-20T10:00:00Z"), context={"timezone": "Europe"}
    )
    journey, _ = run(policy, [event])
    assert journey.state.timezone is None
