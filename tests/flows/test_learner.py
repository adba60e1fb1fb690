"""The learner step (flows/learner.py) across a crash: a learner resumed from its recovery
snapshot, given again what the input replays after it, makes the versions an unbroken one
makes, each trial counted once."""

import orjson

from flows.barrier import Ack
from flows.learner import LearnerLogic, with_population
from operators.model.records import Scored
from operators.policy.load import load_policy
from tests.learning import LEARNING, POLICY

DAY = 86_400_000
START = 1_795_046_400_000  # 2026-11-19T00:00:00Z, a period's start


def policy():
    """A learning policy with a daily population model, and its store of versions."""
    text = LEARNING + "  population: {every: 1d}\n"
    return with_population(load_policy(POLICY + text, "population"))


def trial(n: int, at: int) -> Scored:
    return Scored(f"cus_{n}", f"a-{n}", "nudge", "email", "nudge", at - DAY, at, 1.0, (), False)


def counted(records) -> dict[int, int]:
    """Trials per period in the learner's records."""
    periods = {}
    for record in records:
        for period, arms in orjson.loads(record.value)["periods"]:
            periods[period] = sum(n for kind, _, _, _, n, _ in arms if kind == "channel")
    return periods


def test_a_learner_resumed_from_its_snapshot_counts_each_trial_the_input_replays_once():
    replayed = [trial(n, START + n * 3_600_000) for n in range(1, 6)]
    replayed.append(Ack(0, START + 2 * DAY))
    logic = LearnerLogic(policy(), workers=1, resume=None)
    logic.on_batch([trial(0, START)])
    snapshot = logic.snapshot()
    # After the snapshot it counts more, and is killed before the next: the input replays
    # those trials to a learner resumed from the snapshot.
    unbroken, _ = logic.on_batch(replayed)
    resumed, _ = LearnerLogic(policy(), workers=1, resume=snapshot).on_batch(replayed)
    assert counted(unbroken) == {START // DAY: 6}
    assert counted(resumed) == counted(unbroken)
