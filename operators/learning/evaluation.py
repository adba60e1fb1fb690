"""Offline evaluation: what a candidate policy would have earned, estimated from the
decisions learning logged, before it ships.

Each logged decision carries what learning chose, the arms it weighed and the probability
it chose what it chose. A candidate that would have chosen the same counts that
decision's reward, weighted by one over that probability; the estimate is the weighted
mean (self-normalised inverse propensity scoring). With a control share, two policies
logged side by side, each customer's by a stable draw: learning, and the static policy.
Then the probability is the pooled one (the balance heuristic of multiple importance
sampling): the control share times the static policy's probability of the arms chosen
(1 or 0) plus the rest times learning's (recomputed from the logged estimates, for the
control customers too). It stays unbiased and keeps a decision learning rarely made from
weighing thousands of times more than the static policy's own. Its interval is the delta method's,
at 95%; the effective sample size (the sum of the weights squared, over the sum of their
squares) says how many decisions the estimate is really worth, and is what a warning
looks at: a candidate the logs rarely chose cannot be estimated from them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from operators.learning.choice import chance

Z95 = 1.959964
MIN_EFFECTIVE = 30.0
"""Below this effective sample size an estimate is reported with a warning."""


@dataclass(frozen=True, slots=True)
class Logged:
    """One decision as learning logged it, and what it earned."""

    chosen: Mapping[str, str]
    """Kind (``channel``, ``variant``) -> the arm chosen."""
    arms: Mapping[str, tuple[tuple[str, float], ...]]
    """Kind -> the arms weighed, in the policy's order, with their estimates."""
    best: Mapping[str, str]
    """Kind -> the arm with the highest estimate: learning's choice when not exploring."""
    propensity: float
    """The probability its own policy (learning, or the static one) chose what it chose."""
    reward: float
    control: bool = False


Candidate = Callable[[Logged], Mapping[str, str]]
"""What a candidate policy would have chosen for a logged decision, by kind."""


def static(logged: Logged) -> Mapping[str, str]:
    """The static policy: the first arm of each kind (the first channel that passed, the
    action's template)."""
    return {kind: arms[0][0] for kind, arms in logged.arms.items()}


def greedy(logged: Logged) -> Mapping[str, str]:
    """Learning without exploring: the arm with the highest estimate (the first on a tie)."""
    return logged.best


def preferring(channels: tuple[str, ...]) -> Candidate:
    """A static policy with another channel order: the first of ``channels`` that passed
    (else the first that did), and the action's template."""

    def choose(logged: Logged) -> Mapping[str, str]:
        chosen = dict(static(logged))
        passed = [arm for arm, _ in logged.arms.get("channel", ())]
        for channel in channels:
            if channel in passed:
                chosen["channel"] = channel
                break
        return chosen

    return choose


@dataclass(frozen=True, slots=True)
class Estimate:
    """A candidate's estimated reward per decision, and how far to trust it."""

    value: float | None
    low: float | None
    high: float | None
    effective: float
    """The effective sample size."""
    matched: int
    """Logged decisions the candidate would have taken alike."""
    decisions: int
    logged_value: float | None
    """What the logged decisions earned, on average."""
    warning: str | None


def learning_propensity(logged: Logged, explore: float) -> float:
    """The probability learning (exploring ``explore`` of the time) chose the arms
    ``logged`` chose, from the estimates it logged."""
    best = greedy(logged)
    probability = 1.0
    for kind, arms in logged.arms.items():
        probability *= chance(explore, len(arms), logged.chosen[kind] == best[kind])
    return probability


def pooled_propensity(logged: Logged, explore: float, control: float) -> float:
    """The probability the two policies side by side chose what ``logged`` chose (see the
    module); its own propensity when there is no control share."""
    if control <= 0:
        return logged.propensity
    static_chose = all(static(logged)[kind] == arm for kind, arm in logged.chosen.items())
    return control * static_chose + (1.0 - control) * learning_propensity(logged, explore)


def evaluate(
    logs: Iterable[Logged], candidate: Candidate, explore: float = 0.0, control: float = 0.0
) -> Estimate:
    """The candidate's estimated reward per decision (see the module), the decisions logged
    by learning exploring ``explore`` of the time beside a ``control`` share of customers
    decided by the static policy."""
    weights: list[float] = []
    rewards: list[float] = []
    total = 0
    earned = 0.0
    for logged in logs:
        total += 1
        earned += logged.reward
        wanted = candidate(logged)
        if all(wanted.get(kind) == arm for kind, arm in logged.chosen.items()):
            propensity = pooled_propensity(logged, explore, control)
            if propensity > 0:
                weights.append(1.0 / propensity)
                rewards.append(logged.reward)
    logged_value = earned / total if total else None
    if not weights:
        why = "no logged decision chose what the candidate would have: the logs cannot support it"
        return Estimate(None, None, None, 0.0, 0, total, logged_value, why)
    weight = sum(weights)
    value = sum(w * r for w, r in zip(weights, rewards, strict=True)) / weight
    spread = sum(w * w * (r - value) ** 2 for w, r in zip(weights, rewards, strict=True))
    half = Z95 * math.sqrt(spread) / weight
    effective = weight * weight / sum(w * w for w in weights)
    warning = None
    if effective < MIN_EFFECTIVE:
        warning = (
            f"effective sample size {effective:.1f} is below {MIN_EFFECTIVE:g}: the logs "
            "rarely chose what the candidate would, so the estimate is unreliable"
        )
    return Estimate(
        value, value - half, value + half, effective, len(weights), total, logged_value, warning
    )


def logged_of(record: Mapping[str, object], reward: float) -> Logged | None:
    """A decision record's learning, as :class:`Logged` (None when it has none)."""
    learning = record.get("learning")
    if not isinstance(learning, dict):
        return None
    chosen: dict[str, str] = {}
    arms: dict[str, tuple[tuple[str, float], ...]] = {}
    best: dict[str, str] = {}
    for kind in ("channel", "variant"):
        choice = learning.get(kind)
        if isinstance(choice, dict):
            chosen[kind] = str(choice["chosen"])
            best[kind] = str(choice["best"])
            arms[kind] = tuple((str(a["arm"]), float(a["estimate"])) for a in choice["arms"])
    propensity = float(learning["propensity"])
    return Logged(chosen, arms, best, propensity, reward, bool(learning["control"]))
