import math

import pytest

from operators.decay import decayed, falls_below_at

HOUR = 3_600_000


@pytest.mark.parametrize("age_hours", [0, 1, 6, 12, 30, 48])
def test_value_follows_the_half_life_formula(age_hours):
    value, half_life = 50.0, 6 * HOUR
    expected = value * 2 ** (-(age_hours * HOUR) / half_life)
    assert decayed(value, age_hours * HOUR, half_life) == pytest.approx(expected, rel=1e-12)


def test_one_half_life_halves_the_value():
    assert decayed(80.0, 30 * 60_000, 30 * 60_000) == pytest.approx(40.0)


def test_expiry_is_when_the_value_reaches_the_threshold():
    opened, value, half_life, threshold = 1_000_000, 40.0, 48 * HOUR, 15.0
    expires = falls_below_at(value, opened, half_life, threshold)
    assert expires - opened == math.floor(half_life * math.log2(value / threshold))
    assert decayed(value, expires - opened, half_life) == pytest.approx(threshold, rel=1e-6)
    assert decayed(value, expires - opened + 1000, half_life) < threshold


def test_a_zero_threshold_never_expires_in_practice():
    assert falls_below_at(100.0, 0, HOUR, 0.0) >= 64 * HOUR
