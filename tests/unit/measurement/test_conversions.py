"""Held-out decisions and conversions, one customer at a time (operators/decisions/decide.py,
operators/measurement/conversions.py)."""

import dataclasses

from operators.identity.merging import merge_states
from operators.journey import Journey
from operators.measurement.holdouts import place
from operators.model.records import Action, Conversion, Decision, Outcome
from operators.model.state import CustomerState
from operators.model.timefmt import format_ms, parse_ms
from tests.conftest import make_event
from tests.measurement import holding_out, measured_policy
from tests.unit.decisions.test_decide import run

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}
DAY = 86_400_000
CONVERTING = measured_policy("conversions:\n  purchase: {within: 3d}\n")


def browse(day, product="p-42"):
    """Three views of a product on the morning of 2026-11-``day``: a nudge is decided at the
    third, at 10:20 UTC."""
    return [
        make_event("product_view", f"2026-11-{day:02d}T10:{m:02d}:00Z", {"product_id": product})
        for m in (0, 10, 20)
    ]


def purchase(at):
    return make_event("purchase", at, {"product_id": "p-other"})


def start():
    return [make_event("consent_changed", "2026-11-01T09:00:00Z", GRANT)]


def of(outputs, kind):
    return [o for o in outputs if isinstance(o, kind)]


def test_a_held_out_customer_gets_no_action_but_lives_the_same_journey():
    held = holding_out("0.9999999")
    assert place("h2-2026", "cus_ana", "product_nudge") < 0.9999999
    story = [*start(), *browse(10), *browse(11), *browse(14), *browse(14, "p-7")]
    _, as_held = run(held, story)
    _, as_sent = run(CONVERTING, story)
    assert of(as_held, Action) == []
    assert len(of(as_sent, Action)) == 3
    shape = [
        (d.action, d.outcome, d.at, d.action_id, d.channel, d.value, d.moment, d.group)
        for d in of(as_sent, Decision)
    ]
    assert [
        (
            d.action,
            Outcome.SENT if d.outcome is Outcome.HELD_OUT else d.outcome,
            d.at,
            d.action_id,
            d.channel,
            d.value,
            d.moment,
            d.group,
        )
        for d in of(as_held, Decision)
    ] == shape
    outcomes = [d.outcome for d in of(as_held, Decision)]
    assert outcomes == [
        Outcome.HELD_OUT,
        *[Outcome.COOLDOWN] * 3,  # the held-out nudge started its cooldown
        Outcome.HELD_OUT,
        *[Outcome.COOLDOWN] * 2,
        Outcome.HELD_OUT,
    ]
    first = of(as_held, Decision)[0]
    assert (first.rule, first.reason) == (
        "holdouts.actions.product_nudge",
        "held out of product_nudge",
    )


def test_held_out_decisions_count_against_the_caps_as_sends_do():
    held = holding_out("0.9999999")
    story = [*start(), *(e for p in ("p-1", "p-2", "p-3", "p-4") for e in browse(10, p))]
    _, outputs = run(held, story)
    assert [d.outcome for d in of(outputs, Decision)] == [Outcome.HELD_OUT] * 3 + [Outcome.CAPPED]
    assert of(outputs, Decision)[-1].rule == "marketing-weekly"


def test_the_first_purchase_within_the_window_converts_the_decision_once():
    _, outputs = run(
        CONVERTING,
        [*start(), *browse(10), purchase("2026-11-11T09:00:00Z"), purchase("2026-11-12T09:00:00Z")],
    )
    (nudge,) = of(outputs, Action)
    (converted,) = of(outputs, Conversion)
    assert converted.as_record() == {
        "customer_id": "cus_ana",
        "action_id": nudge.action_id,
        "action": "product_nudge",
        "outcome": "sent",
        "conversion": "purchase",
        "event_id": converted.event_id,
        "at": "2026-11-11T09:00:00Z",
        "decided_at": "2026-11-10T10:20:00Z",
    }


def test_the_window_includes_its_end_and_nothing_after_it():
    decided = parse_ms("2026-11-10T10:20:00Z")
    at_end = format_ms(decided + 3 * DAY)
    just_after = format_ms(decided + 3 * DAY + 1)
    _, on_time = run(CONVERTING, [*start(), *browse(10), purchase(at_end)])
    _, too_late = run(CONVERTING, [*start(), *browse(10), purchase(just_after)])
    assert [c.at for c in of(on_time, Conversion)] == [decided + 3 * DAY]
    assert of(too_late, Conversion) == []


def test_one_purchase_converts_every_decision_whose_window_it_falls_in():
    _, outputs = run(
        CONVERTING,
        [*start(), *browse(10, "p-1"), *browse(11, "p-2"), purchase("2026-11-12T09:00:00Z")],
    )
    assert len(of(outputs, Action)) == 2
    assert sorted(c.action_id for c in of(outputs, Conversion)) == sorted(
        a.action_id for a in of(outputs, Action)
    )


def test_a_held_out_decision_converts_as_held_out():
    _, outputs = run(
        holding_out("0.9999999"), [*start(), *browse(10), purchase("2026-11-11T09:00:00Z")]
    )
    (converted,) = of(outputs, Conversion)
    assert converted.outcome is Outcome.HELD_OUT
    assert converted.action_id == of(outputs, Decision)[0].action_id


def test_a_conversion_for_other_actions_converts_nothing_else():
    policy = measured_policy("conversions:\n  purchase: {within: 3d, actions: [loan_offer]}\n")
    _, outputs = run(policy, [*start(), *browse(10), purchase("2026-11-11T09:00:00Z")])
    assert len(of(outputs, Action)) == 1
    assert of(outputs, Conversion) == []


def test_a_decision_of_a_merged_profile_converts_on_the_survivor_once():
    retired, outputs = run(CONVERTING, [*start(), *browse(10)])
    (nudge,) = of(outputs, Action)
    survivor = Journey(CustomerState("cus_bo"))
    merge_states(CONVERTING, survivor.state, retired.state)
    merge_states(CONVERTING, survivor.state, retired.state)  # a repeated transfer
    _, after = run(CONVERTING, [purchase("2026-11-11T09:00:00Z")], survivor)
    (converted,) = of(after, Conversion)
    assert (converted.customer_id, converted.action_id) == ("cus_bo", nudge.action_id)


def test_a_policy_without_measurement_keeps_no_conversion_state(policy):
    journey, outputs = run(policy, [*start(), *browse(10), purchase("2026-11-11T09:00:00Z")])
    assert len(of(outputs, Action)) == 1
    assert of(outputs, Conversion) == []
    assert journey.state.watches == ()


def test_an_action_deferred_by_quiet_hours_is_held_out_when_the_deferral_ends():
    journey = Journey(CustomerState("cus_ana"))
    night = [
        make_event("product_view", at, {"product_id": "p-42"})
        for at in ("2026-11-20T20:00:00Z", "2026-11-20T20:10:00Z", "2026-11-20T21:30:00Z")
    ]
    held = holding_out("0.9999999")
    _, outputs = run(held, [*start(), *night], journey)
    outputs += journey.fire_due(held, parse_ms("2026-11-21T12:00:00Z"), inclusive=True)
    deferred, done = of(outputs, Decision)
    assert (deferred.outcome, done.outcome) == (Outcome.DEFERRED, Outcome.HELD_OUT)
    assert format_ms(done.at) == "2026-11-21T07:00:00Z"
    assert done.action_id == deferred.action_id and done.channel == "push"
    assert of(outputs, Action) == []


def test_a_second_conversion_type_converts_again_but_is_not_the_first():
    policy = measured_policy(
        "conversions:\n  purchase: {within: 3d}\n  loan_application: {within: 14d}\n"
    )
    _, outputs = run(
        policy,
        [
            *start(),
            *browse(10),
            purchase("2026-11-11T09:00:00Z"),
            make_event("loan_application", "2026-11-12T09:00:00Z"),
        ],
    )
    assert [(c.conversion, c.first) for c in of(outputs, Conversion)] == [
        ("purchase", True),
        ("loan_application", False),
    ]


def late(event, clock):
    return dataclasses.replace(event, late=True, watermark=parse_ms(clock))


def test_a_late_purchase_converts_nothing_whatever_came_before_it():
    """Further behind the input's clock than allowed_lateness (1d): it counts in no window,
    and converts no decision, whether the event before it was a purchase or not."""
    for between in ("page_view", "purchase"):
        _, outputs = run(
            CONVERTING,
            [
                *start(),
                *browse(10),
                make_event(between, "2026-11-15T09:00:00Z"),
                late(purchase("2026-11-11T09:00:00Z"), "2026-11-15T09:00:00Z"),
            ],
        )
        assert of(outputs, Conversion) == [], between


def test_a_purchase_out_of_order_within_the_lateness_converts_whatever_came_before_it():
    for between in ("page_view", "purchase"):
        _, outputs = run(
            CONVERTING,
            [
                *start(),
                *browse(10),
                make_event(between, "2026-11-13T12:00:00Z"),  # after the window's end
                purchase("2026-11-13T10:00:00Z"),  # inside it, 2 hours behind
            ],
        )
        assert [format_ms(c.at) for c in of(outputs, Conversion)] == ["2026-11-13T10:00:00Z"]
