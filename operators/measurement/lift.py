"""Lift: what sending adds, from the conversion rates of the sent and the held-out group.

The unit is the customer, as holdouts draw customers
(:mod:`operators.measurement.holdouts`): for one
action, ``n`` customers had decisions sent and ``k`` of them had one that converted; ``m``
had decisions held out and ``j`` of them had one that converted. Counting decisions
instead would treat a customer's several decisions (and one purchase converting all of
them) as independent draws, and give intervals too narrow. The rates are ``k/n`` and
``j/m``; the
absolute lift is their difference, with a 95% interval from the normal approximation to
the difference of two proportions (unpooled standard error); the relative lift is the
ratio of the rates less one, with a 95% interval from the normal approximation to the
logarithm of the ratio (Katz's method). Both say how much the rates could differ by
chance alone; neither says why they differ.
"""

from __future__ import annotations

import math
from typing import Any

Z_95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95% interval."""
MIN_GROUP = 1000
"""Fewer customers than this in a group, and the lift is flagged as too uncertain to use
(Braze advises at least 1,000 customers in a control group)."""


def size_warnings(sizes: tuple[tuple[str, int], ...]) -> list[str]:
    """What the sizes of the groups compared, (name, customers) each, say of a comparison:
    nothing to compare when one is empty, too uncertain when one is under :data:`MIN_GROUP`."""
    empty = [group for group, size in sizes if size == 0]
    small = [f"{size:,} {group}" for group, size in sizes if 0 < size < MIN_GROUP]
    if empty:
        return [f"nothing to compare: no customer {' or '.join(empty)}"]
    if small:
        return [
            f"too few to say anything reliable: {' and '.join(small)} "
            f"(fewer than {MIN_GROUP:,} customers)"
        ]
    return []


def lift(sent: int, sent_converted: int, held_out: int, held_out_converted: int) -> dict[str, Any]:
    """The customers of the two groups, their conversion rates, the absolute and relative
    lift with their 95% intervals (None where the data cannot give one), and warnings."""
    warnings = size_warnings((("sent", sent), ("held out", held_out)))
    rate_sent = sent_converted / sent if sent else None
    rate_held = held_out_converted / held_out if held_out else None
    result: dict[str, Any] = {
        "customers": {
            "sent": sent,
            "sent_converted": sent_converted,
            "held_out": held_out,
            "held_out_converted": held_out_converted,
        },
        "rate_sent": _round(rate_sent),
        "rate_held_out": _round(rate_held),
        "absolute": None,
        "absolute_95": None,
        "relative": None,
        "relative_95": None,
        "significant": False,
    }
    if rate_sent is None or rate_held is None:
        result["warnings"] = warnings
        return result
    difference = rate_sent - rate_held
    spread = Z_95 * math.sqrt(
        rate_sent * (1 - rate_sent) / sent + rate_held * (1 - rate_held) / held_out
    )
    result["absolute"] = _round(difference)
    result["absolute_95"] = [_round(difference - spread), _round(difference + spread)]
    result["significant"] = spread > 0 and abs(difference) > spread
    if sent_converted and held_out_converted:
        ratio = rate_sent / rate_held
        log_spread = Z_95 * math.sqrt(
            (1 - rate_sent) / sent_converted + (1 - rate_held) / held_out_converted
        )
        result["relative"] = _round(ratio - 1)
        result["relative_95"] = [
            _round(ratio * math.exp(-log_spread) - 1),
            _round(ratio * math.exp(log_spread) - 1),
        ]
    else:
        warnings.append("a group has no conversions: no relative lift")
    result["warnings"] = warnings
    return result


def mean_lift(treated: list[float], control: list[float]) -> dict[str, Any]:
    """What one group's values (a customer each: their reward per send) add over another's:
    the two means, their difference and its 95% interval (Welch's, from the normal
    approximation), with the warnings :func:`lift` gives."""
    warnings = size_warnings((("treated", len(treated)), ("control", len(control))))
    result: dict[str, Any] = {
        "customers": {"treated": len(treated), "control": len(control)},
        "mean_treated": _round(_mean(treated)),
        "mean_control": _round(_mean(control)),
        "absolute": None,
        "absolute_95": None,
        "significant": False,
        "warnings": warnings,
    }
    if len(treated) < 2 or len(control) < 2:
        return result
    one, other = _mean(treated), _mean(control)
    assert one is not None and other is not None
    spread = Z_95 * math.sqrt(_variance(treated) / len(treated) + _variance(control) / len(control))
    difference = one - other
    result["absolute"] = _round(difference)
    result["absolute_95"] = [_round(difference - spread), _round(difference + spread)]
    result["significant"] = spread > 0 and abs(difference) > spread
    return result


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _variance(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def percentiles(values: list[int]) -> dict[str, int]:
    """p50, p90, p99 (nearest rank) and the maximum of ``values``, and how many there were."""
    if not values:
        return {"observed": 0}
    ordered = sorted(values)

    def rank(p: float) -> int:
        return ordered[max(math.ceil(p * len(ordered)) - 1, 0)]

    return {
        "observed": len(ordered),
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": ordered[-1],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
