"""Kafka mode under attack and under faults: poison records on either input topic, output
records the brokers refuse for their size, forged feedback, and a broker that stalls."""

from __future__ import annotations

import base64
import os
import signal
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from confluent_kafka import Producer

from flows.kafka.broker import EmbeddedBroker
from operators.identity.ids import canonical_id
from operators.model.records import dead_letter_bound
from tests.conftest import event_dict
from tests.hostile import MAX_RECORD_BYTES, POISON
from tests.integration.conftest import QUIET, Topics, afternoon_zone, stamp, wait_for

pytestmark = pytest.mark.integration

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}
ANA = canonical_id("email", "ana@example.com")


def ana(event_type, hours, properties=None, event_id=None):
    event = event_dict(
        event_type, stamp(timedelta(hours=hours)), properties, event_id, email="ana@example.com"
    )
    event["context"] = {"timezone": afternoon_zone()}
    return event


def views(product, start_hours):
    return [
        ana("product_view", start_hours + n / 4, {"product_id": product}, f"{product}-{n}")
        for n in range(3)
    ]


@pytest.fixture
def wide_policy(tmp_path, reference_policy_path):
    """The reference policy with the largest records a policy allows."""
    path = tmp_path / "wide.yaml"
    path.write_text(
        reference_policy_path.read_text() + f"\ningest: {{max_record_bytes: {MAX_RECORD_BYTES}}}\n"
    )
    return path


def feedback(action_id, outcome, hours):
    return {
        "event_id": f"fb-{outcome}",
        "type": "feedback",
        "timestamp": stamp(timedelta(hours=hours)),
        "properties": {"action_id": action_id, "outcome": outcome, "channel": "push"},
    }


def test_poison_first_middle_and_last_on_each_topic_is_one_dead_letter_and_the_flow_goes_on(
    topics, flows, policy, wide_policy
):
    poisons = list(POISON.values())
    topics.create(policy, partitions=1)
    flow = flows(topics, policy=wide_policy).start()
    consent, coat = ana("consent_changed", -6, GRANT, "consent"), views("coat", -5)
    events = [poisons[0], consent, coat[0], poisons[1], coat[1], coat[2], poisons[2]]
    topics.produce(events, keys=[ANA.encode()] * len(events))
    wait_for(lambda: topics.values("actions.push"), 60, "the nudge about the coat")
    (push,) = topics.values("actions.push")

    forged = feedback(f"{ANA}.product_nudge.0000000000000000", "complained", -2)
    unsubscribe = feedback(push["action_id"], "unsubscribed", -2)
    on_feedback = [poisons[0], forged, poisons[1], unsubscribe, poisons[2]]
    topics.produce(on_feedback, topic="feedback", keys=[ANA.encode()] * len(on_feedback))
    flow.wait_for_records_in(len(events) + len(on_feedback))
    boots = views("boots", -1.5)
    topics.produce(boots, keys=[ANA.encode()] * 3)
    total = len(events) + len(on_feedback) + len(boots)
    metrics = flow.wait_for_records_in(total)
    wait_for(lambda: topics.values("actions.email"), 60, "the nudge about the boots by email")

    dead = [(orjson.loads(v), v) for _, v, _, _ in topics.read("dlq")]
    assert len(dead) == 7
    origins = sorted((d["origin"]["topic"], d["origin"]["offset"]) for d, _ in dead)
    prefix = topics.prefix
    assert origins == sorted(
        [(prefix + "events", n) for n in (0, 3, 6)]
        + [(prefix + "feedback", n) for n in (0, 1, 2, 4)]
    )
    for record, value in dead:
        assert len(value) <= dead_letter_bound(MAX_RECORD_BYTES)
        if record["reason"] != "unknown_action_id":
            assert base64.b64decode(record["raw_base64"]) in POISON.values(), "kept whole"
    assert sorted(d["reason"] for d, _ in dead).count("unknown_action_id") == 1
    # the forged complaint suppressed nothing; the genuine unsubscribe moved Ana to email
    told = [(d["action"], d["outcome"], d.get("channel")) for d in topics.values("decisions")]
    assert told == [("product_nudge", "sent", "push"), ("product_nudge", "sent", "email")]
    assert metrics["concierge_records_in_total"] == total
    assert sum(v for k, v in metrics.items() if k.startswith("concierge_dead_letters_total")) == 7
    assert flow.terminate()[0] == 0


def test_a_record_the_brokers_refuse_for_its_size_is_replaced_and_the_flow_goes_on(
    topics, flows, policy, wide_policy, tmp_path
):
    """With the producer's ``message.max.bytes`` at 2,500 bytes: the poison's dead letter
    keeps what fits of it (nothing but its size); the nudge, longer than that for its
    template's long name, is refused and replaced by a dead letter ``output_too_large``;
    the flow goes on."""
    template = "product-nudge-" + "x" * 3000
    long_named = tmp_path / "long-template.yaml"
    long_named.write_text(wide_policy.read_text().replace("product-nudge", template, 1))
    topics.create(policy, partitions=1)
    flow = flows(topics, "-X", "message.max.bytes=2500", policy=long_named).start()
    consent, coat = ana("consent_changed", -6, GRANT, "consent"), views("coat", -5)
    poison = POISON["control characters"]
    events = [consent, poison, *coat]
    topics.produce(events, keys=[ANA.encode()] * len(events))
    wait_for(
        lambda: any(d["origin"].get("stream") == "actions.push" for d in topics.values("dlq")),
        60,
        "the nudge replaced by a dead letter",
    )
    dead = {str(d["origin"].get("stream", d["reason"])): d for d in topics.values("dlq")}
    assert dead["invalid_json"]["raw_truncated"] and dead["invalid_json"]["raw_size"] == len(poison)
    assert dead["invalid_json"]["origin"] == {
        "topic": topics.prefix + "events",
        "partition": 0,
        "offset": 1,
    }
    nudge = dead["actions.push"]
    assert nudge["reason"] == "output_too_large" and '"action":"product_nudge"' in nudge["raw"]
    assert all(len(v) <= 2500 for _, v, _, _ in topics.read("dlq"))
    assert topics.read("actions.push") == []
    assert [d["outcome"] for d in topics.values("decisions")] == ["sent"]
    metrics = flow.metrics()
    assert metrics['concierge_records_refused_total{stream="actions.push"}'] == 1
    assert metrics.get('concierge_records_refused_total{stream="dlq"}', 0) == 0
    assert flow.terminate()[0] == 0
    assert "refused a " in flow.output() and "as too large" in flow.output()


def one_identifier_stream(customers: int, count: int, seed: int) -> list[dict]:
    """Customers who each always use one email, over the last day in event-time order: no
    merges, so the result depends on nothing but the events (see the README's known limits on
    merges in flight)."""
    import random

    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=1)
    step = timedelta(days=1) / count
    zone = afternoon_zone()
    kinds = [
        ("consent_changed", lambda: {**GRANT, "granted": rng.random() < 0.9}),
        ("product_view", lambda: {"product_id": f"p-{rng.randrange(5)}"}),
        ("product_view", lambda: {"product_id": f"p-{rng.randrange(5)}"}),
        ("product_view", lambda: {"product_id": f"p-{rng.randrange(5)}"}),
        ("help_search", lambda: {"query": "refund"}),
        ("loan_eligibility_check", dict),
        ("purchase", lambda: {"product_id": f"p-{rng.randrange(5)}"}),
        ("complaint", lambda: {"text": rng.choice(["late again", "my mother died"])}),
    ]
    events = []
    for n in range(count):
        kind, properties = rng.choice(kinds)
        at = (start + step * n).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = event_dict(
            kind, at, properties(), f"s-{n}", email=f"c{rng.randrange(customers)}@example.com"
        )
        event["context"] = {"timezone": zone}
        events.append(event)
    return events


def test_a_stalled_broker_is_waited_for_and_nothing_is_lost_or_changed(
    tmp_path, reference_policy_path, flows
):
    """The broker's process is stopped for 30 s while the flow is reading and writing, and
    more events are produced meanwhile; then it is continued. The flow is still running, and
    its records are those replay predicts: nothing lost, repeats identical."""
    from operators.policy.load import load_policy
    from tests.integration.test_kafka_flow import replay_prediction, without_timers

    policy_path = without_timers(reference_policy_path, tmp_path)
    policy = load_policy(policy_path.read_text())
    events = one_identifier_stream(customers=400, count=12_000, seed=5)
    first, later = events[: len(events) * 3 // 4], events[len(events) * 3 // 4 :]
    with EmbeddedBroker() as broker:
        topics = Topics(broker, "stall.")
        topics.create(policy, partitions=1)
        topics.produce(first)
        flow = flows(topics, "--snapshot-interval", "1", policy=policy_path).start()
        wait_for(lambda: flow.metrics().get("concierge_records_in_total"), 60, "the first reads")
        assert broker._process is not None
        os.kill(broker._process.pid, signal.SIGSTOP)
        try:
            stalled_at = time.monotonic()
            producer = Producer({"bootstrap.servers": broker.bootstrap, **QUIET})
            for record in later:
                producer.produce(topics.prefix + "events", orjson.dumps(record), _key(record))
            producer.poll(0)
            time.sleep(max(0.0, 30 - (time.monotonic() - stalled_at)))  # the stall itself
            assert flow.process is not None and flow.process.poll() is None, flow.output()
            during = flow.metrics()["concierge_records_in_total"]
        finally:
            os.kill(broker._process.pid, signal.SIGCONT)
        assert during < len(events), "nothing produced during the stall can have been read"
        assert producer.flush(60) == 0
        flow.wait_for_records_in(len(events), timeout=120)
        predicted = replay_prediction(events, tmp_path, policy_path)
        assert len(predicted["decisions"]) > 1000
        wait_for(
            lambda: {v for _, v, _, _ in topics.read("decisions")} == set(predicted["decisions"]),
            60,
            "the decisions replay predicts",
        )
        for channel in policy.channels:
            written = [v for _, v, _, _ in topics.read(f"actions.{channel}")]
            assert set(written) == set(predicted.get(f"actions.{channel}", [])), channel
            by_id: dict[str, set[bytes]] = {}
            for value in written:
                by_id.setdefault(orjson.loads(value)["action_id"], set()).add(value)
            assert all(len(copies) == 1 for copies in by_id.values()), "a repeat differs"
        code, _ = flow.terminate()
        assert code == 0, flow.output()
        assert "waiting for the brokers to acknowledge" in flow.output()


def test_a_write_that_fails_stops_the_flow_which_then_resumes_and_skips_nothing(
    tmp_path, reference_policy_path, flows
):
    """With writes given 3 s to succeed, a longer stall makes them fail: the flow exits 1
    with one line saying so, and started again it writes everything replay predicts."""
    from operators.policy.load import load_policy
    from tests.integration.test_kafka_flow import replay_prediction, without_timers

    policy_path = without_timers(reference_policy_path, tmp_path)
    policy = load_policy(policy_path.read_text())
    events = one_identifier_stream(customers=200, count=6000, seed=9)
    impatient = ("-X", "message.timeout.ms=3000", "--snapshot-interval", "1")
    with EmbeddedBroker() as broker:
        topics = Topics(broker, "fail.")
        topics.create(policy, partitions=1)
        topics.produce(events)
        first = flows(topics, *impatient, policy=policy_path).start()
        wait_for(lambda: first.metrics().get("concierge_records_in_total"), 60, "the first reads")
        assert broker._process is not None
        os.kill(broker._process.pid, signal.SIGSTOP)
        try:
            assert first.wait(60) == 1
        finally:
            os.kill(broker._process.pid, signal.SIGCONT)
        assert "concierge run: the dataflow stopped: " in first.output()
        assert "Message timed out" in first.output()
        assert "Traceback" not in first.output()
        second = flows(topics, "--stop-at-end", policy=policy_path).start()
        assert second.wait(120) == 0, second.output()
        predicted = replay_prediction(events, tmp_path, policy_path)
        assert {v for _, v, _, _ in topics.read("decisions")} == set(predicted["decisions"])
        for channel in policy.channels:
            written = {v for _, v, _, _ in topics.read(f"actions.{channel}")}
            assert written == set(predicted.get(f"actions.{channel}", [])), channel


def _key(record):
    from tests.integration.conftest import _default_key

    return _default_key(record)
