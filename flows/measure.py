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

from operators.measurement.lift import lift, mean_lift, percentiles
from operators.policy.compiled import Policy

MEASURED_OUTCOMES = ("sent", "held_out")


Counts = dict[str, dict[str, int]]
"""Action -> ``{"sent": n, "sent_converted": k, "held_out": m, "held_out_converted": j}``."""


def conversions(out_dir: Path, policy: Policy) -> tuple[Counts, Counts]:
    """:func:`count_conversions` of a replay's decisions and conversions."""
    return count_conversions(
        policy, _records(out_dir / "decisions.jsonl"), _records(out_dir / "conversions.jsonl")
    )


def count_conversions(
    policy: Policy, decisions: Iterable[dict[str, Any]], conversions: Iterable[dict[str, Any]]
) -> tuple[Counts, Counts]:
    """Per action the policy measures, by decisions (``summary.json``'s ``conversions``:
    sent and held-out decisions, and how many of each converted at least once) and by
    customers (those with a sent, or a held-out, decision, and how many of them had one
    that converted: what the lift compares). A customer whose profiles were in both groups
    (a merge) counts in each."""
    measured = [action for action, specs in policy.conversions_by_action.items() if specs]
    by_decision = {action: _zeros() for action in sorted(measured)}
    customers: dict[tuple[str, str], set[str]] = defaultdict(set)
    customer_of: dict[str, str] = {}
    for record in decisions:
        outcome, action = record["outcome"], record["action"]
        if outcome in MEASURED_OUTCOMES and action in by_decision:
            by_decision[action][outcome] += 1
            customers[action, outcome].add(record["customer_id"])
            customer_of[record["action_id"]] = record["customer_id"]
    converted: set[tuple[str, str, str]] = set()
    for record in conversions:
        converted.add((record["action"], record["outcome"], record["action_id"]))
    converted_customers: dict[tuple[str, str], set[str]] = defaultdict(set)
    for action, outcome, action_id in converted:
        if action in by_decision:
            by_decision[action][f"{outcome}_converted"] += 1
            converted_customers[action, outcome].add(customer_of.get(action_id, action_id))
    by_customer = {action: _zeros() for action in by_decision}
    for (action, outcome), who in customers.items():
        by_customer[action][outcome] = len(who)
    for (action, outcome), who in converted_customers.items():
        by_customer[action][f"{outcome}_converted"] = len(who)
    return by_decision, by_customer


def lift_by_action(by_customer: Counts) -> dict[str, dict[str, Any]]:
    """The lift of each action, over customers (see :mod:`operators.measurement.lift`)."""
    return {
        action: lift(c["sent"], c["sent_converted"], c["held_out"], c["held_out_converted"])
        for action, c in by_customer.items()
    }


def learning(out_dir: Path) -> dict[str, Any]:
    """What learning did in a replay, from its scored trials (``trials.jsonl``) and its
    decisions: trials and reward by group (learning, or control: the static policy), by
    arm, the share of choices that explored, and learning's lift: the learning customers'
    reward per send over the control customers', a customer each."""
    per_customer: dict[tuple[bool, str], list[float]] = defaultdict(lambda: [0, 0.0])
    arms: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for trial in _records(out_dir / "trials.jsonl"):
        tally = per_customer[trial["control"], trial["customer_id"]]
        tally[0] += 1
        tally[1] += trial["reward"]
        for key in (("channel", trial["channel"]), ("variant", trial["template"])):
            arm = arms[(*key, "control" if trial["control"] else "learning")]
            arm[0] += 1
            arm[1] += trial["reward"]
    groups: dict[str, dict[str, float]] = {}
    rates: dict[bool, list[float]] = {True: [], False: []}
    for (control, _), (n, reward) in per_customer.items():
        group = groups.setdefault("control" if control else "learning", {"trials": 0, "reward": 0})
        group["trials"] += n
        group["reward"] += reward
        rates[control].append(reward / n)
    choices = explored = 0
    for record in _records(out_dir / "decisions.jsonl"):
        learned = record.get("learning")
        if learned is not None and not learned["control"]:
            for kind in ("channel", "variant"):
                if kind in learned:
                    choices += 1
                    explored += learned[kind]["explored"]
    return {
        "trials": {
            name: {**g, "reward_per_trial": _ratio(g["reward"], g["trials"])}
            for name, g in sorted(groups.items())
        },
        "arms": {
            f"{kind}:{arm}:{group}": {"trials": n, "reward_per_trial": _ratio(reward, n)}
            for (kind, arm, group), (n, reward) in sorted(arms.items())
        },
        "explored": _ratio(explored, choices),
        "lift": mean_lift(rates[False], rates[True]),
    }


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 6) if whole else None


def learning_table(learned: dict[str, Any]) -> str:
    """Learning's lift as lines a person reads."""
    result = learned["lift"]
    who = result["customers"]
    lines = [
        "learning: reward per send, a customer each",
        f"  learning customers {who['treated']:>8,}  {_number(result['mean_treated'])}",
        f"  control (static)   {who['control']:>8,}  {_number(result['mean_control'])}",
        f"  lift {_number(result['absolute'], signed=True)}"
        f"  95% interval {_interval(result['absolute_95'], lambda v: f'{v:+.4f}')}"
        + ("  *" if result["significant"] else ""),
    ]
    if learned.get("explored") is not None:
        lines.append(f"  choices that explored: {learned['explored']:.1%}")
    lines.extend(f"    ! {warning}" for warning in result["warnings"])
    return "\n".join(lines)


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _zeros() -> dict[str, int]:
    return {"sent": 0, "sent_converted": 0, "held_out": 0, "held_out_converted": 0}


def fatigue(recent_sends: list[tuple[str, int]], audit: Path) -> dict[str, Any]:
    """Actions per customer per rolling 7 days: at each action sent, the actions its
    customer got in the 7 days up to it, itself included (what Kafka mode's histogram
    observes); and each person's busiest 7 days, a merged profile counted with the one it
    merged into (``audit`` says which)."""
    merged = merged_into(audit)
    peaks: dict[str, int] = {}
    for customer, count in recent_sends:
        person = survivor(customer, merged)
        peaks[person] = max(peaks.get(person, 0), count)
    return {
        "window": "7d",
        "per_action": percentiles([count for _, count in recent_sends]),
        "per_customer_peak": percentiles(list(peaks.values())),
    }


def merged_into(audit: Path) -> dict[str, str]:
    """Each profile merged into another, and the one it was merged into, from the audit."""
    merged: dict[str, str] = {}
    for record in _records(audit):
        if record["kind"] == "merge":
            for customer in record["customer_ids"]:
                if customer != record["surviving_id"]:
                    merged[customer] = record["surviving_id"]
    return merged


def survivor(customer: str, merges: dict[str, str]) -> str:
    """The profile ``customer`` is part of now, following merges."""
    seen = {customer}
    while customer in merges and merges[customer] not in seen:
        customer = merges[customer]
        seen.add(customer)
    return customer


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
    unmeasured = [action for action, result in lifts.items() if not result["customers"]["held_out"]]
    for action, result in lifts.items():
        if action in unmeasured:
            continue
        who = result["customers"]
        lines.append(
            f"{action:<18}{who['sent']:>8,}{who['sent_converted']:>7,}"
            f"{_percent(result['rate_sent']):>8}{who['held_out']:>10,}"
            f"{who['held_out_converted']:>7,}{_percent(result['rate_held_out']):>8}  "
            f"{_points(result['absolute']):>9}  "
            f"{_interval(result['absolute_95'], _signed_points):<18}"
            f"{_percent(result['relative'], signed=True):>9}  "
            f"{_interval(result['relative_95'], lambda v: _percent(v, signed=True))}"
            + ("  *" if result["significant"] else "")
        )
        lines.extend(f"    ! {warning}" for warning in result["warnings"])
    if unmeasured:
        lines.append(f"no customer held out, nothing to compare: {', '.join(unmeasured)}")
    lines.append(
        "sent, held out: customers with at least one decision of the action in that group; "
        "conv: how many of them converted"
    )
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
