"""A moment's value with a half-life (operators/context/decay.py, operators/context/moments.py)."""

import pytest

from operators.context.decay import decayed, falls_below_at
from operators.context.moments import value_now
from operators.model.state import OpenMoment

HOUR = 3_600_000


@pytest.mark.parametrize(
    ("age_hours", "worth"), [(0, 50.0), (6, 25.0), (12, 12.5), (18, 6.25), (3, 35.3553)]
)
def test_a_moment_halves_every_half_life(age_hours, worth):
    assert decayed(50.0, age_hours * HOUR, 6 * HOUR) == pytest.approx(worth, abs=1e-4)


def test_a_moment_is_worth_its_full_value_until_it_opens():
    assert decayed(50.0, -HOUR, 6 * HOUR) == 50.0


def test_a_moments_value_now_decays_from_when_it_opened():
    moment = OpenMoment(40.0, 10 * HOUR, "e-1", ("s",), ("e-1",))
    assert value_now(moment, 2 * HOUR, 14 * HOUR) == pytest.approx(10.0)


def test_a_moment_expires_when_its_value_reaches_the_threshold():
    # 40 -> 15 with a 48 h half-life: log2(40 / 15) = 1.415 half-lives, 67 h 55 min 18 s
    expires = falls_below_at(40.0, 1_000_000, 48 * HOUR, 15.0)
    assert expires - 1_000_000 == 244_518_479
    assert decayed(40.0, expires - 1_000_000, 48 * HOUR) == pytest.approx(15.0, rel=1e-6)


def test_a_moment_already_below_the_threshold_expires_when_it_opens():
    assert falls_below_at(10.0, 5_000, HOUR, 15.0) == 5_000


def test_a_zero_threshold_never_expires_in_practice():
    assert falls_below_at(100.0, 0, HOUR, 0.0) >= 64 * HOUR
