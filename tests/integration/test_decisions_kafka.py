"""Decisions in Kafka mode: a decision waiting for a cap slot is taken on the wall clock,
as of the moment the slot frees."""

from __future__ import annotations

from datetime import timedelta

from operators.model.timefmt import format_ms, parse_ms
from operators.policy.load import load_policy
from tests.conftest import event_dict
from tests.integration.conftest import stamp, wait_for

ONE_AT_A_TIME = """
channels: [in_app]
categories: {service: 100}
caps:
  - {name: one-per-5s, match: {}, max: 1, window: 5s}
signals:
  payment_failed: {on: payment_failed, at_least: 1, within: 1h}
moments:
  stuck: {from: payment_failed, value: 80, half_life: 30m}
actions:
  help_offer: {moment: stuck, channels: [in_app], category: service, template: proactive-help,
               min_value: 20}
"""


def test_a_capped_decision_is_taken_again_on_the_wall_clock_when_the_slot_frees(
    topics, flows, tmp_path
):
    path = tmp_path / "one-at-a-time.yaml"
    path.write_text(ONE_AT_A_TIME)
    topics.create(load_policy(ONE_AT_A_TIME), partitions=1)
    flow = flows(topics, policy=path).start()
    first, second = (
        event_dict("payment_failed", stamp(timedelta(seconds=s)), anonymous_id="dan")
        for s in (-2, -1)
    )
    topics.produce([first, second])
    wait_for(lambda: len(topics.read("actions.in_app")) == 2, 30, "the second help offer")
    decisions = topics.values("decisions")
    frees = format_ms(parse_ms(first["timestamp"]) + 5000)
    assert [(d["outcome"], d["at"]) for d in decisions] == [
        ("sent", format_ms(parse_ms(first["timestamp"]))),
        ("capped", format_ms(parse_ms(second["timestamp"]))),
        ("sent", frees),
    ]
    assert decisions[1]["rule"] == "one-per-5s" and decisions[1]["until"] == frees
    assert decisions[1]["reason"] == f"capped by one-per-5s until {frees}"
    metrics = flow.metrics()
    assert metrics['concierge_decisions_held_back_total{outcome="capped",rule="one-per-5s"}'] == 1
    assert flow.terminate()[0] == 0
