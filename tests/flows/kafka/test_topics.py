"""The topics run relies on (flows/kafka/topics.py): their layout, and the input topics'
identity kept beside the snapshots."""

import pytest

from flows.kafka.config import KafkaSettings
from flows.kafka.topics import (
    REMEMBERED,
    Topic,
    TopicProblem,
    check_identity,
    check_layout,
    check_present,
)

SETTINGS = KafkaSettings("localhost:9092", "c_", {})
INPUTS = ["c_events", "c_feedback"]


def test_the_frontier_needs_one_compacted_partition_and_nothing_else_may_be_compacted():
    check_layout(SETTINGS, {"c_frontier": Topic("f", 1, True), "c_events": Topic("e", 3, False)})
    with pytest.raises(TopicProblem, match="c_frontier has 3 partitions; it needs 1"):
        check_layout(SETTINGS, {"c_frontier": Topic("f", 3, True)})
    with pytest.raises(TopicProblem, match="c_frontier is not compacted"):
        check_layout(SETTINGS, {"c_frontier": Topic("f", 1, False)})
    with pytest.raises(TopicProblem, match="c_transfers is compacted"):
        check_layout(SETTINGS, {"c_transfers": Topic("t", 3, True)})


def facts(events_id="e1", partitions=3):
    return {"c_events": Topic(events_id, partitions, False), "c_feedback": Topic("f1", 3, False)}


def test_a_fresh_start_remembers_its_input_topics_and_a_resume_checks_them(tmp_path):
    check_identity(tmp_path, INPUTS, facts(), resuming=False)
    assert (tmp_path / REMEMBERED).is_file()
    check_identity(tmp_path, INPUTS, facts(), resuming=True)
    with pytest.raises(TopicProblem, match="c_events was deleted and created again"):
        check_identity(tmp_path, INPUTS, facts(events_id="e2"), resuming=True)
    with pytest.raises(TopicProblem, match="c_events went from 3 partitions to 6"):
        check_identity(tmp_path, INPUTS, facts(partitions=6), resuming=True)
    check_identity(tmp_path, INPUTS, facts(events_id="e2"), resuming=False)  # a fresh start
    check_identity(tmp_path, INPUTS, facts(events_id="e2"), resuming=True)


def test_a_resume_whose_input_topic_is_gone_is_refused(tmp_path):
    check_identity(tmp_path, INPUTS, facts(), resuming=False)
    check_present(tmp_path, INPUTS, set(INPUTS))
    with pytest.raises(TopicProblem, match="c_events is gone"):
        check_present(tmp_path, INPUTS, {"c_feedback"})


def test_snapshots_from_before_topics_were_remembered_resume_and_are_remembered(tmp_path):
    check_present(tmp_path, INPUTS, {"c_feedback"})  # nothing remembered: nothing to say
    check_identity(tmp_path, INPUTS, facts(), resuming=True)
    with pytest.raises(TopicProblem, match="deleted and created again"):
        check_identity(tmp_path, INPUTS, facts(events_id="e9"), resuming=True)
