"""Lift, its intervals, and the fatigue figures (operators/measurement/lift.py)."""

import random

import pytest

from operators.measurement.lift import lift, percentiles


def test_lift_and_its_intervals_by_the_documented_methods():
    result = lift(1000, 300, 1000, 200)
    assert (result["rate_sent"], result["rate_held_out"]) == (0.3, 0.2)
    assert result["absolute"] == pytest.approx(0.1)
    # normal approximation: 1.96 * sqrt(.3 * .7 / 1000 + .2 * .8 / 1000)
    assert result["absolute_95"] == pytest.approx([0.0623, 0.1377], abs=1e-4)
    assert result["relative"] == pytest.approx(0.5)
    # Katz: 1.5 * exp(+-1.96 * sqrt(.7 / 300 + .8 / 200)) - 1
    assert result["relative_95"] == pytest.approx([0.2834, 0.7532], abs=1e-4)
    assert result["significant"] and result["warnings"] == []


def test_a_small_control_group_is_flagged_and_an_empty_one_gives_no_lift():
    small = lift(5000, 500, 300, 20)
    assert small["warnings"] == [
        "too few to say anything reliable: 300 held out (fewer than 1,000 customers)"
    ]
    empty = lift(5000, 500, 0, 0)
    assert empty["absolute"] is None and empty["absolute_95"] is None
    assert empty["warnings"] == ["nothing to compare: no customer held out"]
    none_converted = lift(2000, 10, 2000, 0)
    assert none_converted["relative"] is None and none_converted["absolute"] == 0.005


def test_the_interval_covers_the_true_lift_about_95_times_in_100():
    rng = random.Random(3)
    covered = 0
    trials = 300
    for _ in range(trials):
        k = sum(rng.random() < 0.12 for _ in range(2000))
        j = sum(rng.random() < 0.10 for _ in range(2000))
        low, high = lift(2000, k, 2000, j)["absolute_95"]
        covered += low <= 0.02 <= high
    assert 0.91 <= covered / trials <= 0.99


def test_percentiles_are_nearest_rank():
    assert percentiles(list(range(1, 101))) == {
        "observed": 100,
        "p50": 50,
        "p90": 90,
        "p99": 99,
        "max": 100,
    }
    assert percentiles([]) == {"observed": 0}


def test_a_mean_lift_is_the_difference_of_the_means_with_welchs_interval():
    from operators.measurement.lift import mean_lift

    treated, control = [1.0, 0.0] * 600, [1.0, 0.0, 0.0, 0.0] * 300
    result = mean_lift(treated, control)
    assert (result["mean_treated"], result["mean_control"], result["absolute"]) == (
        0.5,
        0.25,
        0.25,
    )
    spread = 1.959963984540054 * (0.25 * 1200 / 1199 / 1200 + 0.1875 * 1200 / 1199 / 1200) ** 0.5
    assert result["absolute_95"] == [round(0.25 - spread, 6), round(0.25 + spread, 6)]
    assert result["significant"] and result["warnings"] == []
    small = mean_lift([1.0], [0.0, 1.0])
    assert small["absolute"] is None and "too few" in small["warnings"][0]
