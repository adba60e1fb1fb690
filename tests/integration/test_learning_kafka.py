"""Learning on Kafka: two processes on four partitions give replay's records, send-time
learning's deferrals among them.

The story is the closed loop of tests/learning.py, replayed a day at a time until the
plant had answered six days of actions; Kafka mode then reads the whole answered story,
feedback keyed by the customer its action id names, and must decide, choose and score
exactly as replay does (the draws are keyed hashes, the evidence each customer's own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from flows.kafka.broker import free_port
from operators.policy.load import load_policy
from tests.integration.conftest import Topics
from tests.integration.test_kafka_flow import replay_prediction
from tests.integration.test_scale_out import produce, start_cluster
from tests.learning import LEARNING, closed_loop
from tests.scenarios.conftest import replayer

pytestmark = pytest.mark.usefixtures("cluster_key")


@pytest.mark.scale
@pytest.mark.timeout(600)
def test_two_processes_on_four_partitions_learn_as_replay_does(
    broker,
    flows,
    tmp_path,
    monkeypatch,
    reference_policy_path,
):
    monkeypatch.setenv("CONCIERGE_ACTION_KEY", "learning-test-action-key")  # replay's and the
    # cluster's, so the feedback's action ids are the cluster's own
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = int((midnight - timedelta(days=9)).timestamp() * 1000)  # every window closed by now
    replay = replayer(tmp_path, reference_policy_path)
    # customers view in the morning or the evening, and send-time learning may make a morning
    # action wait for the evening: deferrals the wall clock fires in Kafka mode
    timing = LEARNING + "  timing: {wait_up_to: 12h}\n"
    _, answered, policy = closed_loop(
        tmp_path, replay, 60, 6, start, timing, lambda n, day: 10 if (n + day) % 3 else 19
    )
    events = [orjson.loads(line) for line in answered.read_bytes().splitlines()]
    assert sum(e["type"] == "feedback" for e in events) > 60

    topics = read_on_two_processes(broker, flows, tmp_path, policy, events, timeout=180)

    predicted = replay_prediction(events, tmp_path, policy)
    assert len(predicted["trials"]) == 6 * 60 and predicted["actions.push"]
    waited = [
        d for d in map(orjson.loads, predicted["decisions"]) if d.get("rule") == "learning.timing"
    ]
    assert waited, "some morning actions should wait for the evening"
    assert_streams_as_predicted(topics, predicted)


STREAMS = ("decisions", "trials", "actions.email", "actions.push")
"""What the closed loop's policy writes."""


def read_on_two_processes(broker, flows, tmp_path, policy, events, timeout) -> Topics:
    """``events`` on four partitions, read to their end by two processes of one cluster
    with ``policy``: the topics they wrote."""
    topics = Topics(broker, f"learn{free_port()}.")
    topics.create(load_policy(policy.read_text(), "learning"), partitions=4)
    produce(topics, events)
    cluster = start_cluster(
        lambda *a, **k: flows(*a, policy=policy, **k), topics, tmp_path / "two", 2, "--stop-at-end"
    )
    assert [flow.wait(timeout) for flow in cluster] == [0, 0], cluster[0].output()
    return topics


def assert_streams_as_predicted(topics: Topics, predicted: dict[str, list[bytes]]) -> None:
    """Each stream holds replay's records, byte for byte, and no other. A record written
    twice is the same record (Kafka mode writes at least once: a producer's retry may
    repeat one), so the streams are compared as sets; what differs is shown, record by
    record, where it fails."""
    for stream in STREAMS:
        kafka = {value for _, value, _, _ in topics.read(stream)}
        expected = set(predicted[stream])
        assert len(expected) == len(predicted[stream]), f"replay repeated a record in {stream}"
        missing, extra = sorted(expected - kafka), sorted(kafka - expected)
        assert not missing and not extra, (
            f"{stream}: {len(missing)} of replay's records not in Kafka, {len(extra)} in Kafka "
            f"not replay's; the first of each:\n"
            + "\n".join(f"replay: {r.decode()}" for r in missing[:3])
            + "\n"
            + "\n".join(f"kafka:  {r.decode()}" for r in extra[:3])
        )
