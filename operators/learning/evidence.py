"""Trials and evidence: what each sent decision earned, and what a customer's trials say.

A sent decision (not a held-out one: nothing reached a channel) opens a :class:`Trial` of
its channel and template. Until its window closes, each outcome the policy rewards counts
once: a feedback outcome about its action id, or a conversion of it. Once the customer's
event time passes the window's end, the trial is scored: its reward joins the evidence of
its channel (across actions) and of its template (of its action), and with send-time
learning of the local hour it was sent in, where older evidence weighs less, halving every
``half_life``.
"""

from __future__ import annotations

from collections.abc import Iterable

from operators.model.records import Conversion, Event, Scored
from operators.model.state import CustomerState, Evidence, Trial
from operators.policy.compiled import SPLIT_BY_SIGNAL, Learning

MAX_TRIALS = 64
"""Trials kept waiting per customer (the latest); an older one is scored early, as is."""
CHANNEL = "channel"
VARIANT = "variant"
HOUR = "hour"
"""The evidence of the local hour a trial was sent in (send-time learning)."""


def fade(learning: Learning, since: int, until: int) -> float:
    """How much evidence scored at ``since`` weighs at ``until``."""
    if until <= since:
        return 1.0
    return float(0.5 ** ((until - since) / learning.half_life))


def open_trial(
    learning: Learning,
    state: CustomerState,
    action_id: str,
    action: str,
    channel: str,
    template: str,
    now: int,
    control: bool,
    hour: int = -1,
    split: str | None = None,
) -> list[Scored]:
    """A sent decision starts waiting for its outcomes (once per action id: a decision sent
    again with the same id keeps its first trial). Beyond :data:`MAX_TRIALS`, the oldest is
    scored at once, as it stands."""
    if any(trial.action_id == action_id for trial in state.trials):
        return []
    closes = now + learning.window
    trial = Trial(
        closes, action_id, action, channel, template, 0.0, (), control, learning.window, hour, split
    )
    trials = [*state.trials, trial]
    early = trials[: max(len(trials) - MAX_TRIALS, 0)]
    state.trials = tuple(trials[len(early) :])
    return _score(learning, state, early, now)


def score_closed(learning: Learning, state: CustomerState, now: int) -> list[Scored]:
    """Score the trials whose window ended before ``now``."""
    if not state.trials or min(trial.closes for trial in state.trials) >= now:
        return []
    closed = [trial for trial in state.trials if trial.closes < now]
    state.trials = tuple(trial for trial in state.trials if trial.closes >= now)
    return _score(learning, state, sorted(closed, key=lambda t: (t.closes, t.action_id)))


def observe(
    learning: Learning, state: CustomerState, event: Event, conversions: Iterable[Conversion]
) -> list[Scored]:
    """What ``event`` tells the trials: first, windows that ended before it are scored (the
    records returned); then a feedback outcome about a waiting trial, and each conversion of
    one, count toward its reward. A late event (see :mod:`operators.ingest`) counts in no
    window."""
    if not state.trials or event.late:
        return []
    scored = score_closed(learning, state, event.time)
    if event.type == "feedback":
        outcome = event.properties.get("outcome")
        action_id = event.properties.get("action_id")
        if isinstance(outcome, str) and isinstance(action_id, str):
            _reward(learning, state, action_id, outcome)
    for conversion in conversions:
        _reward(learning, state, conversion.action_id, conversion.conversion)
    return scored


def _reward(learning: Learning, state: CustomerState, action_id: str, outcome: str) -> None:
    value = learning.rewards.get(outcome)
    if value is None:
        return
    state.trials = tuple(
        trial._replace(reward=trial.reward + value, outcomes=(*trial.outcomes, outcome))
        if trial.action_id == action_id and outcome not in trial.outcomes
        else trial
        for trial in state.trials
    )


def _score(
    learning: Learning, state: CustomerState, trials: list[Trial], at: int | None = None
) -> list[Scored]:
    """Add ``trials`` (in the order scored) to the evidence of their channel and template, as
    of the end of their window (or ``at``, when one is scored early); their records."""
    if not trials:
        return []
    evidence = {(e.kind, e.action, e.arm): e for e in state.evidence}
    scored: list[Scored] = []
    for trial in trials:
        decided_at = trial.closes - trial.window
        if at is not None:
            trial = trial._replace(closes=at)
        scored.append(
            Scored(
                state.customer_id,
                trial.action_id,
                trial.action,
                trial.channel,
                trial.template,
                decided_at,
                trial.closes,
                trial.reward,
                trial.outcomes,
                trial.control,
                trial.split or "",
            )
        )
        keys = [(CHANNEL, "", trial.channel), (VARIANT, trial.action, trial.template)]
        if trial.hour >= 0:
            keys.append((HOUR, "", f"{trial.hour:02d}"))
        for key in keys:
            known = evidence.get(key)
            its = Evidence(*key, 1.0, trial.reward, trial.closes)
            evidence[key] = its if known is None else _added(learning, known, its)
    state.evidence = tuple(evidence.values())
    return scored


def split_of(learning: Learning, state: CustomerState, signal: str) -> str | None:
    """The population model's split a decision is in, such as ``region=north,signal=browsing``
    (``by``'s names in its order, each with the customer's value of that attribute, or the
    ``signal`` that opened the decision's moment; an attribute they lack is empty); None when
    the policy splits none."""
    if learning.population_every is None or not learning.population_by:
        return None
    said = []
    for name in learning.population_by:
        if name == SPLIT_BY_SIGNAL:
            value = signal
        else:
            value = next((word.value for word in state.attributes if word.name == name), "")
        said.append(f"{name}={value}")
    return ",".join(said)


def evidence_of(
    learning: Learning, state: CustomerState, kind: str, action: str, arm: str, now: int
) -> tuple[float, float]:
    """The customer's (trials, reward) on an arm, faded to ``now``."""
    for known in state.evidence:
        if known.kind == kind and known.arm == arm and known.action == action:
            weight = fade(learning, known.at, now)
            return known.trials * weight, known.reward * weight
    return 0.0, 0.0


def merge_learning(
    learning: Learning | None, survivor: CustomerState, retired: CustomerState
) -> None:
    """One person's trials wait once each (by action id); the evidence of both profiles
    adds up, arm by arm, faded to the later of the two."""
    if not retired.trials and not retired.evidence:
        return
    trials = {trial.action_id: trial for trial in survivor.trials}
    for trial in retired.trials:
        trials.setdefault(trial.action_id, trial)
    ordered = sorted(trials.values(), key=lambda t: (t.closes, t.action_id))
    survivor.trials = tuple(ordered[-MAX_TRIALS:])
    evidence = {(e.kind, e.action, e.arm): e for e in survivor.evidence}
    for other in retired.evidence:
        key = (other.kind, other.action, other.arm)
        known = evidence.get(key)
        if known is None or learning is None:
            evidence.setdefault(key, other)
            continue
        evidence[key] = _added(learning, known, other)
    survivor.evidence = tuple(evidence.values())


def _added(learning: Learning, known: Evidence, other: Evidence) -> Evidence:
    """Two evidences of one arm as one, each faded to the later of the two (a trial scored
    out of order weighs its age too)."""
    at = max(known.at, other.at)
    mine, theirs = fade(learning, known.at, at), fade(learning, other.at, at)
    return known._replace(
        trials=known.trials * mine + other.trials * theirs,
        reward=known.reward * mine + other.reward * theirs,
        at=at,
    )
