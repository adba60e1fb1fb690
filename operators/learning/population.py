"""Population models: what every customer's trials say of an arm, in versions of event time.

A scored trial counts in the period of event time its window closed in (periods are
``every`` long, counted from the Unix epoch). A period's :class:`Tally` holds whole numbers
only, trials and reward in millionths, per arm: so tallies made apart (one per process, or
per partition) add up to the same tally whatever their grouping and order, as the input
frontier's marks combine.

Version ``k`` of the model is what the periods before ``k`` say, each period's tally faded
by the half-life from the period's end to the version's boundary, the start of period
``k``; a decision at event time ``t`` uses the version of the period before ``t``'s, whose
trials had a whole period to be scored (:func:`version_for`). Building a version from the
same tallies gives the same numbers to the last bit in every process (one order: periods
oldest first, arms sorted), so a decision is a function of the events, however the
cluster is scaled.

A customer's own evidence is shrunk toward the population's estimate of the arm (the
population's rate as the prior mean), so a new customer starts from what the population
does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from operators.learning.evidence import CHANNEL, VARIANT
from operators.model.records import Scored
from operators.policy.compiled import Learning

FOREVER_MS = 2**62
MICROS = 1_000_000
"""A reward counts in millionths: whole numbers add up alike in any order."""

ArmKey = tuple[str, str, str, str]
"""(kind, action, arm, feature): ``kind`` is channel or variant; a channel's ``action`` is
empty (evidence across actions) as a customer's is; ``feature`` is the split's value, such
as ``region=eu`` (empty without a split)."""


@dataclass(frozen=True, slots=True)
class Count:
    """Trials of one arm in one period, and their reward in millionths."""

    trials: int
    reward: int

    def __add__(self, other: Count) -> Count:
        return Count(self.trials + other.trials, self.reward + other.reward)


@dataclass(slots=True)
class Tally:
    """The trials of one period, arm by arm: a partial tally of one process or partition,
    or the whole period's once every one is in."""

    period: int
    arms: dict[ArmKey, Count] = field(default_factory=dict)

    def add(self, key: ArmKey, count: Count) -> None:
        known = self.arms.get(key)
        self.arms[key] = count if known is None else known + count

    def absorb(self, other: Tally) -> None:
        """Add ``other`` (of the same period) into this tally."""
        assert other.period == self.period, "tallies of two periods do not add"
        for key, count in other.arms.items():
            self.add(key, count)


def period_of(at: int, every: int) -> int:
    """The period event time ``at`` (ms) falls in."""
    return at // every


def boundary(version: int, every: int) -> int:
    """Where version ``version`` stands: the start of its period (ms)."""
    return version * every


def version_for(now: int, every: int) -> int:
    """The version a decision at ``now`` uses: that of the period before ``now``'s, so every
    trial it counts closed a whole period before the decision."""
    return period_of(now, every) - 1


def reward_micros(reward: float) -> int:
    """A trial's reward as whole millionths."""
    return round(reward * MICROS)


def arm_keys(scored: Scored, feature: str = "") -> tuple[ArmKey, ArmKey]:
    """The arms a scored trial counts for: its channel (across actions) and its template
    (of its action), each within ``feature``."""
    return (
        (CHANNEL, "", scored.channel, feature),
        (VARIANT, scored.action, scored.template, feature),
    )


def count(tallies: dict[int, Tally], trial: Scored, every: int, first: int | None = None) -> None:
    """Count a scored trial into the tally of the period it closed in (or period ``first``,
    if that is later), for each of its arms within its split (:attr:`Scored.feature`)."""
    period = period_of(trial.at, every)
    if first is not None and period < first:
        period = first
    counted = tallies.setdefault(period, Tally(period))
    one = Count(1, reward_micros(trial.reward))
    for key in arm_keys(trial, trial.feature):
        counted.add(key, one)


def tally(scored: Iterable[Scored], every: int) -> dict[int, Tally]:
    """The trials of ``scored`` tallied by period."""
    tallies: dict[int, Tally] = {}
    for trial in scored:
        count(tallies, trial, every)
    return tallies


@dataclass(frozen=True, slots=True)
class PopulationModel:
    """Version ``version`` of the population model: per arm, (trials, reward) faded to its
    boundary."""

    version: int
    boundary: int
    arms: Mapping[ArmKey, tuple[float, float]]
    periods: int
    """How many periods' tallies it holds (its evidence reaches back that far)."""
    trials: int
    """How many trials it counts, unfaded."""

    def estimate(self, learning: Learning, key: ArmKey) -> tuple[float, float, float]:
        """What the population says of arm ``key``: (its reward per trial shrunk toward the
        policy's prior, faded trials, faded reward)."""
        trials, reward = self.arms.get(key, (0.0, 0.0))
        prior = learning.prior_trials
        return (prior * learning.prior_reward + reward) / (prior + trials), trials, reward


def build(
    learning: Learning, tallies: Mapping[int, Tally], version: int, every: int
) -> PopulationModel:
    """Version ``version`` from the whole tallies of the periods before it (those from
    ``version`` on are left out): each faded from its period's end to the boundary, added
    oldest period first, arm by arm in sorted order, so every process builds the same
    numbers."""
    at = boundary(version, every)
    arms: dict[ArmKey, tuple[float, float]] = {}
    periods = trials = 0
    for period in sorted(p for p in tallies if p < version):
        periods += 1
        weight = 0.5 ** ((at - boundary(period + 1, every)) / learning.half_life)
        counted = tallies[period].arms
        for key in sorted(counted):
            count = counted[key]
            trials += count.trials if key[0] == CHANNEL else 0
            known = arms.get(key, (0.0, 0.0))
            arms[key] = (
                known[0] + count.trials * weight,
                known[1] + count.reward / MICROS * weight,
            )
    return PopulationModel(version, at, arms, periods, trials)


@dataclass(frozen=True, slots=True)
class Complete:
    """What the learner says: the tallies of the periods that are whole now, and the latest
    version they complete (every trial that closed before its boundary is in)."""

    tallies: tuple[Tally, ...]
    latest: int

    def ready_until(self, every: int) -> int:
        """The latest event time whose decisions have their version."""
        return (self.latest + 2) * every - 1

    @property
    def trials(self) -> int:
        """How many trials its periods count."""
        return sum(
            count.trials for t in self.tallies for key, count in t.arms.items() if key[0] == CHANNEL
        )


class Learner:
    """The population's tallies as the flow's one learner keeps them, and how far every
    worker has answered for (see :mod:`flows.barrier`): version ``v`` is complete once
    every worker has answered past its boundary, so every trial that closed before it has
    been scored and tallied."""

    def __init__(self, every: int, workers: int) -> None:
        self.every = every
        self.workers = workers
        self.tallies: dict[int, Tally] = {}
        self.acked: dict[int, int] = {}
        self.latest: int | None = None
        """The latest version complete (None: none yet)."""

    def copy(self) -> Learner:
        """A copy nothing done to this learner changes (its counts are immutable)."""
        copied = Learner(self.every, self.workers)
        copied.tallies = {p: Tally(p, dict(t.arms)) for p, t in self.tallies.items()}
        copied.acked = dict(self.acked)
        copied.latest = self.latest
        return copied

    def add(self, scored: Scored) -> None:
        """Count a scored trial. One whose period a version was already made of (it can
        only come after a run ended with ``--stop-at-end`` and the next reads input stamped
        before that end) counts in the first period still open: a version, once made,
        never changes."""
        count(self.tallies, scored, self.every, self.latest)

    def ack(self, worker: int, at: int) -> None:
        self.acked[worker] = max(at, self.acked.get(worker, at))

    def complete(self) -> Complete | None:
        """The periods every worker's answers have made whole since the last call (their
        tallies leave the learner), and the latest version they complete."""
        if len(self.acked) < self.workers:
            return None
        latest = (min(self.acked.values()) - 1) // self.every  # its boundary is before them
        if self.latest is not None and latest <= self.latest:
            return None
        self.latest = latest
        whole = sorted(p for p in self.tallies if p < latest)
        return Complete(tuple(self.tallies.pop(p) for p in whole), latest)


class Versions:
    """The population model as this process has it: the whole periods' tallies the learner
    sent, which the identity step handed to every worker before the first event that needs
    them; each version is built from them when first asked for (the same in every
    process)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.tallies: dict[int, Tally] = {}
        self.latest: int | None = None
        self.final: int | None = None
        """Once the input has ended: the last version any decision uses."""
        self._built: dict[int, PopulationModel] = {}

    def take(self, complete: Complete) -> None:
        for counted in complete.tallies:
            self.tallies[counted.period] = counted
        if self.latest is None or complete.latest > self.latest:
            self.latest = complete.latest

    def boundary(self) -> int:
        """The boundary of the latest version here (ms; the version before the first, none
        yet)."""
        return boundary(-1 if self.latest is None else self.latest, self.every)

    def ready_until(self) -> int | None:
        """The latest event time whose decisions have their version here (None: none yet)."""
        if self.final is not None:
            return FOREVER_MS
        return None if self.latest is None else (self.latest + 2) * self.every - 1

    def finish(self, last: int) -> None:
        """The input has ended with an event at ``last``: later decisions use its version."""
        self.final = version_for(last, self.every)

    def model(self, learning: Learning, now: int) -> PopulationModel:
        """The version a decision at ``now`` uses (never one past the last event's, once the
        input has ended)."""
        version = version_for(now, self.every)
        if self.final is not None:
            version = min(version, self.final)
        if self.latest is None or version > self.latest:
            raise LookupError(f"version {version} of the population model is not here yet")
        built = self._built.get(version)
        if built is None:
            built = self._built[version] = build(learning, self.tallies, version, self.every)
        return built
