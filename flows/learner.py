"""The learner step: one key that tallies every scored trial and builds the population
model's versions as every worker's journey answers past their boundaries (see
:mod:`flows.barrier` and :mod:`operators.learning.population`).

Its versions go round the loop, as merged contexts do (replay: in-process; Kafka mode:
``<prefix>models``, not built yet), into the identity step, which hands each to every
worker before the first event that uses it, and holds the input back until the version
it needs is built: how far that is (``ready_until``) is one more partition of its
alignment. Its tallies are its recovery snapshot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import orjson
from bytewax.operators import StatefulBatchLogic

from flows.barrier import Ack
from flows.metrics import POPULATION_TRIALS
from operators.identity.alignment import Progress
from operators.learning.population import Complete, Count, Learner, Tally, Versions
from operators.model.encoding import MODELS, Order, OutRecord
from operators.model.records import Scored
from operators.policy.compiled import Policy

LEARNER_KEY = "learner"
MODELS_PART = "models"
"""The alignment partition the learner's progress comes in on."""


def encode_complete(complete: Complete, ready_until: int) -> bytes:
    return orjson.dumps(
        {
            "ready_until": ready_until,
            "latest": complete.latest,
            "periods": [
                [t.period, [[*key, c.trials, c.reward] for key, c in sorted(t.arms.items())]]
                for t in complete.tallies
            ],
        }
    )


def decode_complete(value: bytes) -> list[Complete | Progress]:
    """A learner's record as it comes back in: what it completed, then how far decisions
    have their version, as the progress of the identity step's :data:`MODELS_PART` (never
    caught up: it is waited for however long)."""
    record: dict[str, Any] = orjson.loads(value)
    tallies = tuple(
        Tally(period, {(k, a, arm, f): Count(n, r) for k, a, arm, f, n, r in arms})
        for period, arms in record["periods"]
    )
    ready_until: int = record["ready_until"]
    return [
        Complete(tallies, record["latest"]),
        Progress(MODELS_PART, ready_until + 1, caught_up=False),
    ]


def with_population(policy: Policy) -> Policy:
    """``policy`` with an empty store for the population model's versions, when it learns
    one: each run (and each replay) learns its own."""
    learning = policy.learning
    if learning is None or learning.population_every is None:
        return policy
    versions = Versions(learning.population_every)
    return dataclasses.replace(policy, learning=dataclasses.replace(learning, population=versions))


class LearnerLogic(StatefulBatchLogic[Any, OutRecord, Learner]):
    def __init__(self, policy: Policy, workers: int, resume: Learner | None) -> None:
        learning = policy.learning
        assert learning is not None and learning.population_every is not None
        self._policy = policy
        self._learner = resume or Learner(learning.population_every, workers)

    def on_batch(self, values: list[Any]) -> tuple[Iterable[OutRecord], bool]:
        learner = self._learner
        for value in values:
            if isinstance(value, Scored):
                learner.add(value)
            elif isinstance(value, Ack):
                learner.ack(value.worker, value.at - 1 if value.past_end else value.at)
        complete = learner.complete()
        if complete is None:
            return [], StatefulBatchLogic.RETAIN
        POPULATION_TRIALS.inc(complete.trials)
        value = encode_complete(complete, complete.ready_until(learner.every))
        record = OutRecord(MODELS, b"models", value, Order.of_line(0), "")
        return [record], StatefulBatchLogic.RETAIN

    def snapshot(self) -> Learner:
        # A copy: Bytewax may pickle the snapshot after this logic has counted more, and a
        # learner resumed from a snapshot that holds trials the input replays after it
        # counts them twice (kill -9 at scale found it).
        return self._learner.copy()
