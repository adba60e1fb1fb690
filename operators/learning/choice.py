"""Choosing an arm: the channel among those that passed every guardrail, the template
among an action's ``template`` and ``variants``.

An arm's estimate is the reward per send the customer's own trials say, shrunk toward the
prior: ``(prior.trials x prior.reward + reward) / (prior.trials + trials)``, their trials
and reward faded to now. A decision takes the arm with the highest estimate (the first in
the policy's order on a tie) or, with probability ``explore``, an arm drawn uniformly; so
every arm is chosen with a known probability, which the decision logs for offline
evaluation. The draw is a keyed hash of the decision (the salt, the customer, the action,
its moment and group, the event that opened it, what is chosen), never a random
generator's state: the same decision draws the same in every run, however it is scaled.

A customer in the control share (a stable place, as holdouts have) is decided by the
static policy: the first channel that passes, the action's ``template``.
"""

from __future__ import annotations

from operators.learning.evidence import CHANNEL, VARIANT, evidence_of, split_of
from operators.learning.population import PopulationModel
from operators.measurement.holdouts import place
from operators.model.records import Arm, Choice, Learned
from operators.model.state import CustomerState
from operators.policy.compiled import ActionSpec, Learning

CONTROL = "learning"
"""What a customer's control place is drawn for (beside the salt and their id)."""


def in_control(learning: Learning, customer_id: str) -> bool:
    """Whether the customer is decided by the static policy."""
    return learning.control > 0 and place(learning.salt, customer_id, CONTROL) < learning.control


def draw(learning: Learning, decision: str, kind: str) -> float:
    """The decision's stable draw in [0, 1) for choosing ``kind``: a place as holdouts draw
    one, of ``sha256("<salt>|<decision>|<kind>")``."""
    return place(learning.salt, decision, kind)


def shrunk(learning: Learning, trials: float, reward: float, toward: float) -> float:
    """The reward per trial ``trials`` that earned ``reward`` say, shrunk toward ``toward``
    as if it were ``prior.trials`` trials of its own."""
    prior = learning.prior_trials
    return (prior * toward + reward) / (prior + trials)


def chance(explore: float, arms: int, best: bool) -> float:
    """The probability an arm among ``arms`` is chosen: the best one (``best``), or another,
    when ``explore`` of the decisions draw one at random."""
    if arms == 1:
        return 1.0
    return explore / arms + (1.0 - explore if best else 0.0)


def estimate(
    learning: Learning,
    state: CustomerState,
    kind: str,
    action: str,
    arm: str,
    now: int,
    population: tuple[PopulationModel, str] | None = None,
) -> Arm:
    """What the customer's evidence, shrunk toward the prior, says ``arm`` is worth; with
    ``population`` (a version of the population model and the customer's split in it), the
    prior's reward is what the population says of the arm."""
    trials, reward = evidence_of(learning, state, kind, action, arm, now)
    if population is None:
        return Arm(arm, shrunk(learning, trials, reward, learning.prior_reward), trials)
    model, split = population
    rate, pooled, _ = model.estimate(learning, (kind, action, arm, split))
    return Arm(arm, shrunk(learning, trials, reward, rate), trials, (rate, pooled))


def population_for(
    learning: Learning, state: CustomerState, now: int, signal: str
) -> tuple[PopulationModel, str] | None:
    """The version of the population model a decision at ``now`` (of a moment ``signal``
    opened) uses, and its split in it (None: the policy learns no population model)."""
    if learning.population is None:
        return None
    return learning.population.model(learning, now), split_of(learning, state, signal) or ""


def choose(
    learning: Learning,
    state: CustomerState,
    kind: str,
    action: str,
    arms: tuple[str, ...],
    decision: str,
    now: int,
    population: tuple[PopulationModel, str] | None = None,
) -> Choice:
    """Choose one of ``arms`` (in the policy's order) for ``decision`` (see the module)."""
    estimates = tuple(estimate(learning, state, kind, action, arm, now, population) for arm in arms)
    best = max(range(len(arms)), key=lambda i: (estimates[i].estimate, -i))
    if len(arms) == 1:
        return Choice(kind, estimates, arms[0], 1.0, False, arms[0])
    explore = learning.explore
    u = draw(learning, decision, kind) if explore > 0 else 1.0
    explored = u < explore
    chosen = min(int(u / explore * len(arms)), len(arms) - 1) if explored else best
    propensity = chance(explore, len(arms), chosen == best)
    return Choice(kind, estimates, arms[chosen], propensity, explored, arms[best])


def choose_arms(
    learning: Learning,
    state: CustomerState,
    action: ActionSpec,
    channels: tuple[str, ...],
    decision: str,
    now: int,
    signal: str,
) -> Learned:
    """What learning chooses for ``action`` among ``channels`` (those that passed every
    guardrail, in the policy's order) and its templates, for a moment ``signal`` opened; a
    customer in the control share gets the static policy's choice, certainly, with the
    estimates beside it."""
    control = in_control(learning, state.customer_id)
    kinds = [(CHANNEL, "", channels)] if learning.channel else []
    if learning.variant and len(action.variants) > 1:
        kinds.append((VARIANT, action.name, action.variants))
    population = population_for(learning, state, now, signal) if kinds else None
    choices = tuple(
        _choice(learning, state, kind, name, arms, decision, now, control, population)
        for kind, name, arms in kinds
    )
    if population is None:
        return Learned(choices, control)
    model, split = population
    return Learned(choices, control, model.boundary, split)


def _choice(
    learning: Learning,
    state: CustomerState,
    kind: str,
    action: str,
    arms: tuple[str, ...],
    decision: str,
    now: int,
    control: bool,
    population: tuple[PopulationModel, str] | None,
) -> Choice:
    learned = choose(learning, state, kind, action, arms, decision, now, population)
    if not control:
        return learned
    return Choice(kind, learned.arms, arms[0], 1.0, False, learned.best)


def chosen(learned: Learned | None, kind: str, static: str) -> str:
    """The arm ``learned`` chose of ``kind``, or ``static`` if it chose none."""
    if learned is not None:
        for choice in learned.choices:
            if choice.kind == kind:
                return choice.chosen
    return static
