"""Holdouts, conversions, eligibility, reachability and fatigue in Kafka mode: the same
records as replay, conversions on their own topic."""

from __future__ import annotations

import orjson
import pytest

from operators.policy_load import load_policy
from tests.integration.test_kafka_flow import recent_stream, replay_prediction
from tests.measurement import measured_policy_text
from tests.unit.test_eligibility import SECTIONS as ELIGIBILITY
from tests.unit.test_reachability import SECTION as REACHABILITY

pytestmark = pytest.mark.integration

GENEROUS = """
holdouts:
  salt: kafka-test
  global: {share: 0.2, categories: [marketing, retention]}
  actions: {product_nudge: 0.3, cart_recovery: 0.3}
conversions:
  purchase: {within: 3d}
"""
FATIGUE = """
fatigue:
  - {name: ignoring-us, match: {}, ignored: 2, within: 12h, engaged_within: 1h}
"""
"""Short enough for a day of traffic (nobody answers: the generator writes no feedback)."""


def test_kafka_mode_holds_out_converts_and_refuses_the_ineligible_as_replay_predicts(
    topics, flows, tmp_path
):
    policy_path = tmp_path / "measured.yaml"
    policy_path.write_text(measured_policy_text(GENEROUS + ELIGIBILITY + REACHABILITY + FATIGUE))
    policy = load_policy(policy_path.read_text())
    topics.create(policy, partitions=2)
    events = recent_stream(customers=300, count=6000, seed=21)
    for n, event in enumerate(events):  # some customers state a status that stops marketing
        if n % 50 == 0:
            event.setdefault("properties", {})["account_status"] = "in_collections"
    topics.produce(events)
    flow = flows(topics, "--stop-at-end", policy=policy_path).start()
    assert flow.wait(180) == 0, flow.output()

    predicted = replay_prediction(events, tmp_path, policy_path)
    streams = ["decisions", "conversions"] + [f"actions.{c}" for c in policy.channels]
    for stream in streams:
        kafka = sorted(value for _, value, _, _ in topics.read(stream))
        assert kafka == predicted.get(stream, []), stream
    decisions = [orjson.loads(v) for v in predicted["decisions"]]
    assert any(d["outcome"] == "held_out" for d in decisions)
    assert "no-marketing-in-collections" in {
        d.get("rule") for d in decisions if d["outcome"] == "ineligible"
    }
    unreachable = [d for d in decisions if d["outcome"] == "unreachable"]
    assert unreachable and all(d["reason"].startswith("unreachable: no ") for d in unreachable)
    fatigued = [d for d in decisions if d.get("rule") == "ignoring-us"]
    assert fatigued and {d["outcome"] for d in fatigued} == {"suppressed"}
    conversions = [orjson.loads(v) for v in predicted["conversions"]]
    assert {c["outcome"] for c in conversions} == {"sent", "held_out"}
