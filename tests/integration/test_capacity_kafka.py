"""Capacity on Kafka: two processes on four partitions, whose demand exceeds a pace and two
budgets, give replay's records: the same sends leave at the same ``send_at``, the same
decisions fall through or are over budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from tests.integration.test_kafka_flow import replay_prediction
from tests.integration.test_learning_kafka import read_on_two_processes
from tests.scenarios.conftest import concierge

pytestmark = pytest.mark.usefixtures("cluster_key")

CAPACITY = """
capacity:
  paces:
    push: {limit: 2, per: 1m}
  budgets:
    email_day: {channel: email, limit: 10, per: day, timezone: UTC}
    nudges_day: {action: product_nudge, limit: 25, per: day, timezone: UTC}
"""
STREAMS = ("decisions", "actions.push", "actions.email", "actions.in_app", "actions.agent")


@pytest.mark.timeout(600)
def test_two_processes_on_four_partitions_pace_and_budget_as_replay_does(
    broker, flows, tmp_path, reference_policy_path
):
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = (midnight - timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    stream = tmp_path / "stream.jsonl"
    done = concierge(
        "generate", "--customers", "400", "--events", "6000", "--days", "3", "--seed", "5",
        "--start", start, "--broken", "0", "--out", str(stream),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [orjson.loads(line) for line in stream.read_bytes().splitlines()]
    policy = tmp_path / "paced.yaml"
    policy.write_text(reference_policy_path.read_text() + CAPACITY)

    topics = read_on_two_processes(broker, flows, tmp_path, policy, events, timeout=240)

    predicted = replay_prediction(events, tmp_path, policy)
    decisions = [orjson.loads(d) for d in predicted["decisions"]]
    assert any(b'"send_at"' in a for a in predicted["actions.push"]), "nothing was paced"
    assert any(d["outcome"] == "over_budget" for d in decisions), "no budget was spent"
    assert any("in place of" in d["reason"] or "over budget on" in d["reason"]
               for d in decisions if d["outcome"] == "sent"), "nothing fell through"  # fmt: skip
    for name in STREAMS:
        kafka = sorted(value for _, value, _, _ in topics.read(name))
        assert kafka == predicted.get(name, []), name
