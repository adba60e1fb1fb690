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
