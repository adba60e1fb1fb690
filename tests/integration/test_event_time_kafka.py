"""What bounds event time in Kafka mode: a record's broker timestamp (never later than when
it was read) plus ``ingest.max_future_skew``. Records stamped months ahead on every
partition move no one's clock, and none survives into the next run's."""

from __future__ import annotations

from datetime import timedelta

import pytest

from operators.identity.ids import canonical_id
from tests.conftest import event_dict
from tests.integration.conftest import afternoon_zone, stamp

pytestmark = pytest.mark.integration

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def shoppers(first: int, count: int) -> list[dict]:
    """Customers who consent, then look at one product three times in the last hours, in a
    time zone where it is afternoon: a product nudge each."""
    events = []
    for n in range(first, first + count):
        email = f"c{n}@example.com"
        steps = [("consent_changed", -6.0, GRANT)]
        steps += [("product_view", -5 + k / 4, {"product_id": f"p-{n}"}) for k in range(3)]
        for event_type, hours, properties in steps:
            event = event_dict(event_type, stamp(timedelta(hours=hours)), properties, email=email)
            event["context"] = {"timezone": afternoon_zone()}
            events.append(event)
    return events


def ahead(n: int) -> dict:
    """Stamped half a year ahead: inside the year the default skew once allowed."""
    return event_dict(
        "page_view", stamp(timedelta(days=180)), event_id=f"ahead-{n}", anonymous_id=f"s{n}"
    )


def test_records_stamped_months_ahead_on_every_partition_make_no_one_late(topics, flows, policy):
    topics.create(policy)
    strangers = [ahead(n) for n in range(12)]
    topics.produce(strangers, keys=[f"ahead-{n}".encode() for n in range(12)])
    partitions = {p for _, _, p, _ in topics.read("events")}
    assert partitions == {0, 1, 2}, "one ahead on each partition, before everyone else"
    topics.produce(shoppers(0, 30))
    flow = flows(topics, "--stop-at-end").start()
    assert flow.wait(120) == 0, flow.output()
    nudged = {a["customer_id"] for a in topics.values("actions.push")}
    assert nudged == {canonical_id("email", f"c{n}@example.com") for n in range(30)}
    dead = topics.values("dlq")
    assert sorted(d["event_id"] for d in dead) == sorted(f"ahead-{n}" for n in range(12))
    assert {d["reason"] for d in dead} == {"future_timestamp"}
    assert "past the record's arrival" in dead[0]["detail"]
    # The next run resumes the clocks its snapshots kept: none is half a year ahead.
    topics.produce(shoppers(30, 30))
    again = flows(topics, "--stop-at-end").start()
    assert again.wait(120) == 0, again.output()
    assert len({a["customer_id"] for a in topics.values("actions.push")}) == 60
