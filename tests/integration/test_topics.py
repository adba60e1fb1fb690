"""The topics ``run`` relies on, checked before it reads them: made beforehand with another
layout, or deleted and created again between two runs, they are refused with one line."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import event_dict
from tests.integration.conftest import QUIET

pytestmark = pytest.mark.integration


def admin(topics) -> AdminClient:
    return AdminClient({"bootstrap.servers": topics.broker.bootstrap, **QUIET})


def create(topics, name: str, partitions: int, **config: str) -> None:
    client = admin(topics)  # kept while its futures are waited for
    for future in client.create_topics([NewTopic(name, partitions, -1, config=config)]).values():
        future.result(30)


def delete(topics, name: str) -> None:
    client = admin(topics)
    for future in client.delete_topics([name]).values():
        future.result(30)


def refusal(flow, topics) -> str:
    """The one line a refused start ends with (exit 2)."""
    code = flow.wait(60)
    lines = flow.output().strip().splitlines()
    assert code == 2, flow.output()
    assert f"reading {topics.prefix}events" not in flow.output(), "refused before it reads"
    return lines[-1]


def views(prefix: str, count: int) -> list[dict]:
    return [
        event_dict(
            "page_view", f"2026-11-20T10:{n // 60:02d}:{n % 60:02d}Z", anonymous_id=f"{prefix}{n}"
        )
        for n in range(count)
    ]


def test_a_frontier_topic_made_beforehand_with_three_partitions_is_refused(topics, flows):
    create(topics, topics.prefix + "frontier", 3, **{"cleanup.policy": "compact"})
    line = refusal(flows(topics, "--stop-at-end").start(), topics)
    assert f"topic {topics.prefix}frontier has 3 partitions; it needs 1" in line


def test_a_compacted_output_topic_is_refused(topics, flows):
    create(topics, topics.prefix + "decisions", 3, **{"cleanup.policy": "compact"})
    line = refusal(flows(topics, "--stop-at-end").start(), topics)
    assert f"topic {topics.prefix}decisions is compacted" in line
    assert "cleanup.policy=delete" in line


def test_an_input_topic_made_again_between_two_runs_is_refused(topics, flows, policy):
    """Deleted and created again with as many partitions, and more records than before: the
    old offsets would have read part of it, silently."""
    topics.create(policy)
    topics.produce(views("first", 30))
    first = flows(topics, "--stop-at-end").start()
    assert first.wait(60) == 0, first.output()
    delete(topics, topics.prefix + "events")
    create(topics, topics.prefix + "events", 3)
    topics.produce(views("second", 90))
    line = refusal(flows(topics, "--stop-at-end").start(), topics)
    assert f"input topic {topics.prefix}events was deleted and created again" in line
    assert "move --recovery-dir and --state-dir aside" in line


def test_an_input_topic_deleted_while_run_was_down_is_not_made_again(topics, flows, policy):
    """After a crash (here kill -9), the topic deleted: resuming would create an empty one
    under old offsets, so the start is refused and the topic stays gone."""
    topics.create(policy)
    topics.produce(views("first", 30))
    flow = flows(topics, "--snapshot-interval", "1").start()
    flow.wait_for_records_in(30)
    flow.terminate()
    delete(topics, topics.prefix + "events")
    line = refusal(flows(topics).start(), topics)
    assert f"input topic {topics.prefix}events is gone" in line
    assert topics.prefix + "events" not in admin(topics).list_topics(timeout=10).topics
