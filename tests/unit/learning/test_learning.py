"""Trials, evidence and choices, one customer at a time (operators/learning/)."""

import pickle
from collections import Counter

import jsonschema
import pytest

import schemas
from operators.identity.merging import merge_states
from operators.journey import Journey
from operators.learning.choice import choose, in_control
from operators.learning.evidence import evidence_of
from operators.model.records import Action, Decision, Outcome, Scored
from operators.model.state import CustomerState, Evidence, Trial
from operators.model.state_records import state_from_record, state_to_record
from operators.model.timefmt import format_ms, parse_ms
from operators.policy.load import PolicyError, load_policy
from tests.conftest import make_event
from tests.learning import LEARNING, POLICY, learning_policy

GREEDY = learning_policy(LEARNING.replace("explore: 0.05", "explore: 0").replace("0.2", "0"))


def view(at, n):
    return make_event("product_view", at, {"product_id": "p-1"}, f"view-{n}")


def click(action, at, outcome="clicked", n=0):
    return make_event("feedback", at, {"action_id": action.action_id, "outcome": outcome}, f"f-{n}")


def day(n, hour="10:00"):
    return f"2026-11-{n:02d}T{hour}:00Z"


def sent_on(outputs):
    return [(o.channel, o.template) for o in outputs if isinstance(o, Action)]


def live(days, answer, policy=GREEDY, journey=None):
    """A customer who views every morning and answers each send as ``answer(action)`` says
    (a feedback outcome an hour later, or None)."""
    journey = journey or Journey(CustomerState("cus_ana"))
    outputs = []
    for n in days:
        for output in journey.on_event(policy, view(day(n), n)):
            outputs.append(output)
            outcome = answer(output) if isinstance(output, Action) else None
            if outcome is not None:
                outputs += journey.on_event(policy, click(output, day(n, "11:00"), outcome, n))
    return journey, outputs


def test_a_customer_who_answers_only_push_is_sent_push():
    _, outputs = live(range(2, 20), lambda a: "clicked" if a.channel == "push" else None)
    channels = [channel for channel, _ in sent_on(outputs)]
    assert channels[0] == "email"
    assert channels[-8:] == ["push"] * 8


def test_an_outcome_after_the_window_counts_as_none():
    policy = GREEDY
    journey = Journey(CustomerState("cus_ana"))
    first = next(o for o in journey.on_event(policy, view(day(2), 1)) if isinstance(o, Action))
    journey.on_event(policy, click(first, day(4, "10:01"), n=1))  # the window (2d) is over
    journey.on_event(policy, view(day(5), 2))
    closed = first.decided_at + 2 * 86_400_000
    trials, reward = evidence_of(
        policy.learning, journey.state, "channel", "", first.channel, closed
    )
    assert (trials, reward) == (1.0, 0.0)


def test_each_outcome_counts_once_and_the_rewards_add_up():
    policy = learning_policy(LEARNING.replace("{clicked: 1}", "{opened: 0.25, clicked: 1}"))
    journey = Journey(CustomerState("cus_ana"))
    first = next(o for o in journey.on_event(policy, view(day(2), 1)) if isinstance(o, Action))
    for n, outcome in enumerate(["opened", "opened", "clicked", "clicked"]):
        journey.on_event(policy, click(first, day(2, f"1{n + 1}:00"), outcome, n))
    journey.on_event(policy, view(day(5), 2))
    trials, reward = evidence_of(
        policy.learning,
        journey.state,
        "channel",
        "",
        first.channel,
        first.decided_at + 2 * 86_400_000,
    )
    assert (trials, reward) == (1.0, 1.25)


def test_evidence_fades_by_its_half_life():
    journey, _ = live([2, 5], lambda a: "clicked" if a.decided_at < parse_ms(day(3)) else None)
    later = parse_ms(day(4, "10:00")) + 30 * 86_400_000  # the first trial's close, + 30d
    trials, reward = evidence_of(GREEDY.learning, journey.state, "channel", "", "email", later)
    assert (trials, reward) == (pytest.approx(0.5), pytest.approx(0.5))


def test_a_held_out_decision_is_no_trial():
    held = load_policy(
        POLICY + LEARNING + "holdouts:\n  salt: s\n  global: {share: 0.9999999}\n", "held"
    )
    journey, outputs = live(range(2, 6), lambda a: "clicked", policy=held)
    decided = [o for o in outputs if isinstance(o, Decision)]
    assert {d.outcome for d in decided} == {Outcome.HELD_OUT}
    assert decided[0].learning is not None
    assert journey.state.trials == () and journey.state.evidence == ()


def test_a_control_customer_gets_the_static_policy_and_still_teaches():
    policy = learning_policy(LEARNING.replace("control: 0.2", "control: 0.9999999"))
    assert in_control(policy.learning, "cus_ana")
    _, outputs = live(range(2, 20), lambda a: "clicked" if a.channel == "push" else None, policy)
    assert set(sent_on(outputs)) == {("email", "nudge-plain")}
    decided = [o for o in outputs if isinstance(o, Decision)]
    assert all(d.learning.control and d.learning.propensity == 1.0 for d in decided)
    assert decided[-1].learning.choices[0].arms[0].trials > 5


def test_each_arm_is_chosen_as_often_as_its_logged_propensity_says():
    policy = learning_policy(LEARNING.replace("explore: 0.05", "explore: 0.5"))
    state = CustomerState("cus_ana")
    counts, said = Counter(), {}
    for n in range(4000):
        choice = choose(policy.learning, state, "channel", "", ("email", "push"), f"d{n}", 0)
        counts[choice.chosen] += 1
        said[choice.chosen] = choice.propensity
    assert said == {"email": 0.75, "push": 0.25}
    assert counts["email"] / 4000 == pytest.approx(0.75, abs=0.03)


def test_trials_and_evidence_survive_a_snapshot_and_a_merge():
    journey, _ = live(range(2, 8), lambda a: "clicked" if a.channel == "email" else None)
    state = journey.state
    assert state.trials and state.evidence
    assert pickle.loads(pickle.dumps(state)).evidence == state.evidence
    copy = state_from_record(state_to_record(state))
    assert (copy.trials, copy.evidence) == (state.trials, state.evidence)
    other, _ = live(range(2, 8), lambda a: "clicked", journey=Journey(CustomerState("cus_bob")))
    merge_states(GREEDY, copy, other.state)
    now = parse_ms(day(9))
    mine = evidence_of(GREEDY.learning, state, "channel", "", "email", now)
    theirs = evidence_of(GREEDY.learning, other.state, "channel", "", "email", now)
    both = evidence_of(GREEDY.learning, copy, "channel", "", "email", now)
    assert both == pytest.approx((mine[0] + theirs[0], mine[1] + theirs[1]))


def test_an_older_snapshot_without_learning_still_reads():
    state = CustomerState("cus_ana")
    values = state.__getstate__()[:-2]
    old = CustomerState("x")
    old.__setstate__(values)
    assert (old.trials, old.evidence, old.customer_id) == ((), (), "cus_ana")


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("rewards: {clickd: 1}", "'clickd' is neither a feedback outcome nor a conversion type"),
        ("window: 0d", "learning.window"),
        ("explore: 1", "learning.explore"),
    ],
)
def test_a_bad_learning_section_is_refused_by_field(section, problem):
    text = POLICY + LEARNING.replace("  rewards: {clicked: 1}\n", "").replace("  window: 2d\n", "")
    text = text.replace("learning:\n", "learning:\n  rewards: {clicked: 1}\n  window: 2d\n")
    key = section.split(":")[0]
    lines = [line for line in text.splitlines() if not line.startswith(f"  {key}:")]
    with pytest.raises(PolicyError, match=problem):
        load_policy("\n".join([*lines, f"  {section}"]), "bad")


def test_a_variant_repeating_its_template_is_refused():
    with pytest.raises(
        PolicyError, match=r"actions.nudge.variants.0.*repeats the action's template"
    ):
        load_policy(POLICY.replace("[nudge-discount]", "[nudge-plain]"), "bad")


def test_learning_decisions_and_their_actions_match_the_published_schemas():
    _, outputs = live(range(2, 12), lambda a: "clicked" if a.channel == "push" else None)
    names = {Action: "action", Decision: "decision", Scored: "trial"}
    for output in outputs:
        jsonschema.validate(output.as_record(), schemas.load(names[type(output)]))
    assert any(isinstance(o, Scored) and o.reward for o in outputs)
    assert any(isinstance(o, Decision) and o.learning for o in outputs)


def test_turning_learning_off_drops_the_trials_waiting_and_time_goes_on():
    journey, _ = live([2], lambda a: "clicked")
    assert journey.state.trials
    static = learning_policy("")
    _, outputs = live([3, 6], lambda a: None, policy=static, journey=journey)
    assert journey.state.trials == () and len(sent_on(outputs)) == 2
    assert journey.fire_due(static, parse_ms(day(20)), inclusive=True) == []


def test_merging_two_learning_profiles_either_way_gives_the_same_trials_and_evidence():
    one, _ = live(range(2, 9), lambda a: "clicked" if a.channel == "email" else None)
    other, _ = live(range(4, 12), lambda a: "clicked", journey=Journey(CustomerState("cus_bob")))
    a, b = (state_from_record(state_to_record(j.state)) for j in (one, other))
    c, d = (state_from_record(state_to_record(j.state)) for j in (other, one))
    merge_states(GREEDY, a, b)
    merge_states(GREEDY, c, d)
    assert sorted(a.trials) == sorted(c.trials)
    assert sorted(a.evidence) == sorted(c.evidence)


ORDERING = """
version: "1"
defaults: {timezone: UTC}
channels: [email, push]
categories: {marketing: 1}
caps:
  - {name: one-a-day, match: {category: marketing}, max: 1, window: 24h}
signals:
  looked: {on: product_view, at_least: 1, within: 1h}
  looked_again: {on: product_view, at_least: 1, within: 1h}
moments:
  browsing: {from: looked, value: 40, half_life: 1d}
  comparing: {from: looked_again, value: 30, half_life: 1d}
actions:
  browse_mail: {moment: browsing, channels: [email], category: marketing, template: b, min_value: 1}
  compare_push: {moment: comparing, channels: [push], category: marketing, template: c,
                 min_value: 1}
learning:
  rewards: {clicked: 1}
  window: 2d
  explore: 0
  salt: order
"""


def answers_push_only():
    state = CustomerState("cus_ana")
    at = parse_ms(day(1))
    state.evidence = (
        Evidence("channel", "", "push", 10.0, 9.0, at),
        Evidence("channel", "", "email", 10.0, 0.0, at),
    )
    return Journey(state)


@pytest.mark.parametrize(
    ("choose", "sent", "reason"),
    [
        ("[channel]", "browse_mail", "capped by one-a-day"),
        ("[channel, order]", "compare_push", "capped by one-a-day"),
    ],
)
def test_order_sends_the_moment_of_a_category_with_the_highest_expected_value(choose, sent, reason):
    policy = load_policy(ORDERING + f"  choose: {choose}\n", "ordering")
    outputs = answers_push_only().on_event(policy, view(day(2), 1))
    assert [a.action for a in outputs if isinstance(a, Action)] == [sent]
    decided = [d for d in outputs if isinstance(d, Decision)]
    outranked = next(d for d in decided if d.outcome is Outcome.OUTRANKED)
    assert outranked.action != sent
    assert outranked.reason.endswith("(learning: a higher expected value)") is ("order" in choose)
    assert reason in next(d for d in decided if d.outcome is Outcome.CAPPED).reason


def test_order_leaves_a_control_customer_to_arbitration():
    policy = load_policy(
        ORDERING + "  choose: [channel, order]\n  control: 0.9999999\n", "ordering"
    )
    outputs = answers_push_only().on_event(policy, view(day(2), 1))
    assert [a.action for a in outputs if isinstance(a, Action)] == ["browse_mail"]


TIMING_LEARNING = (
    LEARNING.replace("control: 0.2", "control: 0").replace("explore: 0.05", "explore: 0")
    + "  timing: {wait_up_to: 12h}\n"
)


def timing_policy(learning=TIMING_LEARNING, policy=POLICY):
    return load_policy(policy + learning, "timing")


def evening_person():
    """A customer whose sends at 19:00 (UTC, the policy's zone) earned far more than at any
    other hour."""
    state = CustomerState("cus_ana")
    at = parse_ms(day(1))
    state.evidence = tuple(
        Evidence("hour", "", f"{hour:02d}", 10.0, 8.0 if hour == 19 else 1.0, at)
        for hour in range(24)
    )
    return Journey(state)


def test_nothing_waits_for_a_customer_of_whom_nothing_is_known():
    policy = timing_policy()
    outputs = Journey(CustomerState("cus_ana")).on_event(policy, view(day(2, "10:00"), 1))
    assert [o.outcome for o in outputs if isinstance(o, Decision)] == [Outcome.SENT]


def test_an_action_waits_for_the_customers_likelier_hour_and_goes_then():
    policy, journey = timing_policy(), evening_person()
    outputs = journey.on_event(policy, view(day(2, "10:00"), 1))
    (deferred,) = [o for o in outputs if isinstance(o, Decision)]
    assert (deferred.outcome, deferred.rule, format_ms(deferred.until)) == (
        Outcome.DEFERRED,
        "learning.timing",
        "2026-11-02T19:00:00Z",
    )
    assert deferred.reason.startswith("learning: likelier hour 19:00 local until")
    later = journey.fire_due(policy, parse_ms(day(2, "23:00")), inclusive=True)
    (sent,) = [o for o in later if isinstance(o, Action)]
    assert format_ms(sent.decided_at) == "2026-11-02T19:00:00Z"
    assert journey.state.trials[-1].hour == 19


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(timing_policy(TIMING_LEARNING.replace("12h", "6h")), id="past wait_up_to"),
        pytest.param(
            timing_policy(policy=POLICY.replace("half_life: 1d", "half_life: 2h")),
            id="its value falls below min_value before then",
        ),
        pytest.param(
            timing_policy(
                TIMING_LEARNING.replace("12h}", "12h, categories: [service]}"),
                POLICY.replace("{marketing: 1}", "{marketing: 1, service: 10}"),
            ),
            id="its category does not wait",
        ),
        pytest.param(
            timing_policy(TIMING_LEARNING.replace("control: 0", "control: 0.9999999")),
            id="a control customer",
        ),
        pytest.param(
            timing_policy(
                policy=POLICY.replace(
                    "categories:",
                    'quiet_hours: {default: {start: "18:00", end: "23:00"}}\ncategories:',
                )
            ),
            id="quiet hours then",
        ),
    ],
)
def test_an_action_is_sent_now_when_its_likelier_hour_is_out_of_reach(policy):
    outputs = evening_person().on_event(policy, view(day(2, "10:00"), 1))
    sent = [format_ms(a.decided_at) for a in outputs if isinstance(a, Action)]
    assert sent == ["2026-11-02T10:00:00Z"]


def test_a_trial_scored_after_a_later_one_weighs_as_old_as_it_is():
    from operators.learning.evidence import _score

    policy = GREEDY.learning
    state = CustomerState("cus_ana")
    thirty_days = 30 * 86_400_000
    later = Trial(2 * thirty_days, "a2", "nudge", "push", "t", 1.0)
    earlier = Trial(thirty_days, "a1", "nudge", "push", "t", 1.0)
    _score(policy, state, [later])
    _score(policy, state, [earlier])
    trials, reward = evidence_of(policy, state, "channel", "", "push", 2 * thirty_days)
    assert (trials, reward) == (pytest.approx(1.5), pytest.approx(1.5))
