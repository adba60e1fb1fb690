"""What a replay's records measure: conversions and lift per action, and fatigue.

Read from the output files themselves, so ``concierge lift DIR`` and the summary agree
and say exactly what the records say.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from operators.lift import lift, percentiles, trailing_counts
from operators.policy import Policy
from operators.sends import FATIGUE_WINDOW
from operators.timefmt import parse_ms

MEASURED_OUTCOMES = ("sent", "held_out")


def conversions(out_dir: Path, policy: Policy) -> dict[str, dict[str, int]]:
    """Per action the policy measures: sent and held-out decisions, and how many of each
    converted at least once (``summary.json``'s ``conversions``)."""
    return count_conversions(
        policy, _records(out_dir / "decisions.jsonl"), _records(out_dir / "conversions.jsonl")
    )


def count_conversions(
    policy: Policy, decisions: Iterable[dict[str, Any]], conversions: Iterable[dict[str, Any]]
) -> dict[str, dict[str, int]]:
    """:func:`conversions` of decision and conversion records, wherever they were read."""
    counts: dict[str, dict[str, int]] = {
        action: {"sent": 0, "sent_converted": 0, "held_out": 0, "held_out_converted": 0}
        for action, specs in policy.conversions_by_action.items()
        if specs
    }
    for record in decisions:
        outcome = record["outcome"]
        if outcome in MEASURED_OUTCOMES and record["action"] in counts:
            counts[record["action"]][outcome] += 1
    converted: set[tuple[str, str, str]] = set()
    for record in conversions:
        converted.add((record["action"], record["outcome"], record["action_id"]))
    for action, outcome, _ in converted:
        if action in counts:
            counts[action][f"{outcome}_converted"] += 1
    return dict(sorted(counts.items()))


def lift_by_action(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """The lift of each action (see :mod:`operators.lift`)."""
    return {
        action: lift(c["sent"], c["sent_converted"], c["held_out"], c["held_out_converted"])
        for action, c in counts.items()
    }


def fatigue(out_dir: Path) -> dict[str, Any]:
    """Actions per customer per rolling 7 days: at each action, the actions its customer got
    in the 7 days up to it (itself included); and each customer's busiest 7 days."""
    times: dict[str, list[int]] = defaultdict(list)
    for path in sorted(out_dir.glob("actions.*.jsonl")):
        for record in _records(path):
            times[record["customer_id"]].append(parse_ms(record["decided_at"]))
    per_action: list[int] = []
    peaks: list[int] = []
    for customer_times in times.values():
        counts = trailing_counts(sorted(customer_times), FATIGUE_WINDOW)
        per_action.extend(counts)
        peaks.append(max(counts))
    return {
        "window": "7d",
        "per_action": percentiles(per_action),
        "per_customer_peak": percentiles(peaks),
    }


def _records(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open("rb") as lines:
        for line in lines:
            yield orjson.loads(line)


def lift_table(lifts: dict[str, dict[str, Any]]) -> str:
    """The lift of each action as a table a person reads, warnings under their action."""
    header = (
        f"{'action':<18}{'sent':>8}{'conv':>7}{'rate':>8}{'held out':>10}{'conv':>7}"
        f"{'rate':>8}  {'lift':>9}  {'95% interval':<18}{'relative':>9}  95% interval"
    )
    lines = [header]
    unmeasured = [action for action, result in lifts.items() if not result["held_out"]]
    for action, result in lifts.items():
        if action in unmeasured:
            continue
        lines.append(
            f"{action:<18}{result['sent']:>8,}{result['sent_converted']:>7,}"
            f"{_percent(result['rate_sent']):>8}{result['held_out']:>10,}"
            f"{result['held_out_converted']:>7,}{_percent(result['rate_held_out']):>8}  "
            f"{_points(result['absolute']):>9}  "
            f"{_interval(result['absolute_95'], _signed_points):<18}"
            f"{_percent(result['relative'], signed=True):>9}  "
            f"{_interval(result['relative_95'], lambda v: _percent(v, signed=True))}"
            + ("  *" if result["significant"] else "")
        )
        lines.extend(f"    ! {warning}" for warning in result["warnings"])
    if unmeasured:
        lines.append(f"no decision held out, nothing to compare: {', '.join(unmeasured)}")
    lines.append(
        "lift: the sent rate less the held-out rate, in percentage points; relative: the sent "
        "rate over the held-out rate, less 1; *: the 95% interval of the lift excludes 0"
    )
    return "\n".join(lines)


def _percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} pts"


def _signed_points(value: float) -> str:
    return f"{value * 100:+.1f}"


def _interval(bounds: list[float] | None, show: Any) -> str:
    return "-" if bounds is None else f"[{show(bounds[0])}, {show(bounds[1])}]"
