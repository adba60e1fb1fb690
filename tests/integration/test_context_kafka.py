"""Customer context in Kafka mode: idle customers leave on the wall clock, late events are
counted, and both show in the metrics an SRE watches."""

from __future__ import annotations

from datetime import timedelta

from operators.policy.load import load_policy
from tests.conftest import event_dict
from tests.integration.conftest import stamp, wait_for

SHORT_MEMORY = """
channels: [in_app]
categories: {service: 100}
ingest: {allowed_lateness: 1h}
customers: {evict_idle_after: 2s}
signals:
  help_search_friction: {on: help_search, at_least: 3, within: 1h}
moments:
  stuck: {from: help_search_friction, value: 80, half_life: 30m}
actions:
  help_offer: {moment: stuck, channels: [in_app], category: service, template: proactive-help,
               min_value: 20}
"""


def test_idle_customers_are_evicted_on_the_wall_clock_and_late_events_counted(
    topics, flows, tmp_path
):
    path = tmp_path / "short-memory.yaml"
    path.write_text(SHORT_MEMORY)
    policy = load_policy(SHORT_MEMORY)
    topics.create(policy, partitions=1)
    flow = flows(topics, policy=path).start()

    views = [
        event_dict("page_view", stamp(timedelta(seconds=-30)), anonymous_id=f"visitor-{n}")
        for n in range(3)
    ]
    late = event_dict("help_search", stamp(timedelta(hours=-3)), anonymous_id="visitor-9")
    topics.produce([*views, late])
    flow.wait_for_records_in(4)
    metrics = wait_for(
        lambda: (m := flow.metrics()).get("concierge_customers_evicted_total", 0) >= 4 and m,
        30,
        "four idle customers to be evicted",
    )
    assert metrics["concierge_customers_evicted_total"] == 4
    assert metrics["concierge_customers_in_state"] == 0
    assert metrics["concierge_late_events_total"] == 1

    # a customer who comes back starts afresh and is decided as usual
    searches = [
        event_dict("help_search", stamp(timedelta(seconds=-20 + n)), anonymous_id="visitor-1")
        for n in range(3)
    ]
    topics.produce(searches)
    wait_for(lambda: len(topics.read("actions.in_app")) == 1, 30, "the help offer")
    assert flow.terminate()[0] == 0
