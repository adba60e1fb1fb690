"""Learning in a closed loop (tests/learning.py): customers with planted responsiveness,
outcomes drawn from the plant for each sent action, fourteen days."""

import math

import pytest

from operators.learning.evaluation import (
    evaluate,
    greedy,
    learning_propensity,
    logged_of,
    static,
)
from operators.model.records import Outcome
from tests.learning import BEST, Loop, learning_policy

CUSTOMERS = 600


@pytest.fixture(scope="module")
def learned():
    return Loop(learning_policy(), CUSTOMERS).run(14)


@pytest.fixture(scope="module")
def unlearned():
    return Loop(learning_policy(""), CUSTOMERS).run(14)


def test_learning_reaches_most_of_the_plants_best_in_its_second_week(learned, unlearned):
    learning = learned.rate(7, 14, control=False)
    fixed = unlearned.rate(7, 14)
    assert learning >= 0.8 * BEST
    assert fixed < 0.6 * BEST
    rate, error = learned.rate_and_error(7, 14, control=False)
    other, other_error = unlearned.rate_and_error(7, 14)
    assert (rate - other) / math.hypot(error, other_error) > 5


def test_its_control_share_shows_what_learning_adds(learned):
    rate, error = learned.rate_and_error(7, 14, control=False)
    control, control_error = learned.rate_and_error(7, 14, control=True)
    assert rate - control - 1.96 * math.hypot(error, control_error) > 0
    assert len(learned.sends(0, 14, control=True)) == pytest.approx(0.2 * 14 * CUSTOMERS, rel=0.15)


def test_the_offline_estimate_of_the_static_policy_contains_its_actual_result(learned, unlearned):
    logs = [
        logged_of(d.as_record(), float(d.action_id in learned.clicked))
        for d in learned.decisions
        if d.outcome is Outcome.SENT
    ]
    policy = learning_policy().learning
    estimate = evaluate(logs, static, policy.explore, policy.control)
    assert estimate.warning is None
    assert estimate.low <= unlearned.rate(0, 14) <= estimate.high
    assert estimate.high < evaluate(logs, greedy, policy.explore, policy.control).low


def test_learnings_own_propensity_is_what_its_logged_estimates_give(learned):
    policy = learning_policy().learning
    logs = [logged_of(d.as_record(), 0.0) for d in learned.decisions if d.learning]
    ours = [log for log in logs if not log.control]
    assert ours and all(
        learning_propensity(log, policy.explore) == pytest.approx(log.propensity) for log in ours
    )


def test_the_same_events_learn_the_same(learned):
    again = Loop(learning_policy(), 50).run(14)
    first = Loop(learning_policy(), 50).run(14)
    assert [d.as_record() for d in again.decisions] == [d.as_record() for d in first.decisions]
    assert any(d.learning.choices[0].explored for d in again.decisions if d.learning)
