"""Population models on Kafka: two processes on four partitions give replay's records, and
they differ from what each customer's own evidence alone decides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

import tests.learning as loop
from tests.integration.test_kafka_flow import replay_prediction
from tests.integration.test_learning_kafka import (
    assert_streams_as_predicted,
    read_on_two_processes,
)
from tests.learning import LEARNING, closed_loop, segment
from tests.scenarios.conftest import replayer

pytestmark = pytest.mark.usefixtures("cluster_key")

SPLIT = LEARNING + "  population: {every: 1d, by: region}\nattributes:\n  region: context.region\n"


@pytest.mark.timeout(600)
def test_two_processes_on_four_partitions_learn_the_population_as_replay_does(
    broker, flows, tmp_path, monkeypatch, reference_policy_path
):
    monkeypatch.setenv("CONCIERGE_ACTION_KEY", "learning-test-action-key")
    plain = loop.view_record

    def regional(n, day, start=loop.START, hour=10):
        record = plain(n, day, start, hour)
        record.setdefault("context", {})["region"] = segment(n)
        return record

    monkeypatch.setattr(loop, "view_record", regional)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = int((midnight - timedelta(days=9)).timestamp() * 1000)
    replay = replayer(tmp_path, reference_policy_path)
    _, answered, policy = closed_loop(tmp_path, replay, 60, 6, start, SPLIT)
    events = [orjson.loads(line) for line in answered.read_bytes().splitlines()]

    topics = read_on_two_processes(broker, flows, tmp_path, policy, events, timeout=240)

    predicted = replay_prediction(events, tmp_path, policy)
    assert len(predicted["trials"]) == 6 * 60
    own = tmp_path / "own.yaml"
    own.write_text(policy.read_text().replace("  population: {every: 1d, by: region}\n", ""))
    assert "population" not in own.read_text()
    (tmp_path / "alone").mkdir()
    alone = replay_prediction(events, tmp_path / "alone", own)
    assert alone["decisions"] != predicted["decisions"], "the population model changes nothing"
    assert_streams_as_predicted(topics, predicted)


@pytest.mark.timeout(600)
def test_runs_that_stop_at_the_end_go_on_learning_and_a_policy_may_drop_or_add_the_population(
    topics, flows, tmp_path
):
    """Four runs with --stop-at-end over one recovery directory, each reading new views: the
    second resumes after the first ended the population model's partition (its views are of
    the same day, whose period the first run's model already counted); the third's policy
    drops the population model, the fourth's brings it back. Each reads its input to the end
    and decides every view, with the population model when its policy has one."""
    from operators.policy.load import load_policy
    from tests.learning import POLICY
    from tests.scenarios.test_population import POPULATION, view

    with_it = tmp_path / "population.yaml"
    with_it.write_text(POLICY + POPULATION)
    without = tmp_path / "own.yaml"
    without.write_text(
        POLICY + POPULATION.replace("  population: {every: 1d, by: [region, signal]}\n", "")
    )
    assert "population:" not in without.read_text()
    topics.create(load_policy(with_it.read_text(), "population"))
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = (int(midnight.timestamp() * 1000) - loop.START) // loop.DAY
    runs = [(with_it, today - 3, 10), (with_it, today - 3, 15), (without, today - 1, 10)]
    runs.append((with_it, today - 1, 15))
    for run, (policy, day, hour) in enumerate(runs):
        customers = range(8 * run, 8 * run + 8)
        topics.produce([view(n, day, "north", hour) for n in customers])
        flow = flows(topics, "--stop-at-end", policy=policy).start()
        assert flow.wait(180) == 0, flow.output()
        everything = topics.values("decisions")
        assert len(everything) == 8 * (run + 1)
        decisions = [d for d in everything if int(d["triggered_by"][0].split("-")[1]) in customers]
        assert len(decisions) == 8, run
        pooled = [d["learning"].get("population") for d in decisions]
        if policy is without:
            assert pooled == [None] * 8
            continue
        assert all(p is not None and p["split"] == "region=north,signal=browsing" for p in pooled)
        if run:  # a process that starts has the periods made before it, before it decides
            assert "records of the population model's periods" in flow.output()
        # the workers answered up to the end (the wall clock), not past it: the model is made
        # no further than the day after today, where the next run goes on from
        made = max(m["ready_until"] for m in topics.values("models"))
        assert made < int((midnight + timedelta(days=2)).timestamp() * 1000)
