"""Holdouts, conversions, eligibility, reachability, fatigue and renewal dates in Kafka mode:
the same records as replay, conversions on their own topic."""

from __future__ import annotations

import orjson
import pytest

from operators.policy.load import load_policy
from tests.integration.test_kafka_flow import recent_stream, replay_prediction
from tests.measurement import measured_policy_text
from tests.unit.context.test_reachability import SECTION as REACHABILITY
from tests.unit.decisions.test_eligibility import SECTIONS as ELIGIBILITY

pytestmark = pytest.mark.integration
GRANT = {"purpose": "marketing", "channel": "*", "granted": True}

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


def test_kafka_mode_runs_policy_full_renewal_dates_on_the_wall_clock_as_replay_predicts(
    topics, flows, tmp_path
):
    """``policy-full.yaml`` unchanged: a renewal date within 30 days fires at once, one 30
    days and seconds ahead fires when the wall clock gets there, a renewal cancels its
    timer, a past date starts nothing, and bad dates are counted by signal and reason."""
    from datetime import timedelta

    from tests.conftest import FULL_POLICY, event_dict
    from tests.integration.conftest import stamp, wait_for

    policy = load_policy(FULL_POLICY.read_text())
    topics.create(policy, partitions=2)
    soon = stamp(timedelta(days=30, seconds=8))
    dates = {
        "soon": soon,
        "at_once": stamp(timedelta(days=10)),
        "past": stamp(timedelta(days=-1)),
        "renewed": soon,
        "bad": "next spring",
        "missing": None,
    }
    events = []
    for who, date in dates.items():
        email = {"email": f"{who}@example.com"}
        events.append(
            event_dict("consent_changed", stamp(timedelta(hours=-1)), GRANT, f"{who}-g", **email)
        )
        properties = {} if date is None else {"renewal_date": date}
        at = stamp(timedelta(minutes=-30))
        events.append(event_dict("renewal_scheduled", at, properties, f"{who}-r", **email))
    at = stamp(timedelta(minutes=-10))
    events.append(event_dict("renewed", at, {}, "renewed-done", email="renewed@example.com"))
    topics.produce(events)
    flow = flows(topics, policy=FULL_POLICY).start()

    def renewals():
        decided = [orjson.loads(v) for _, v, _, _ in topics.read("decisions")]
        return {d["triggered_by"][0] for d in decided if d["action"] == "renewal_reminder"}

    wait_for(lambda: "soon-r" in renewals(), 60, "the timer at the renewal date - 30d")
    samples = wait_for(
        lambda: (m := flow.metrics()).get("concierge_records_in_total") == len(events) and m,
        30,
        "the flow's metrics",
    )
    assert samples['concierge_bad_dates_total{reason="not_a_date",signal="renewal_due"}'] == 1
    assert samples['concierge_bad_dates_total{reason="missing",signal="renewal_due"}'] == 1
    code, _ = flow.terminate()
    assert code == 0, flow.output()
    assert renewals() == {"soon-r", "at_once-r"}

    predicted = replay_prediction(events, tmp_path, FULL_POLICY)
    for stream in ["decisions"] + [f"actions.{c}" for c in policy.channels]:
        kafka = sorted(value for _, value, _, _ in topics.read(stream))
        assert kafka == predicted.get(stream, []), stream
