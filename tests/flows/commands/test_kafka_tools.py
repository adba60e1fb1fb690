"""What ``produce`` and ``tail`` decide without a broker: topic names, keys, how a value is
printed, and the flags they refuse."""

from __future__ import annotations

import base64

import orjson
import pytest

from flows.commands.generator import producer_key
from flows.commands.tail import shown
from flows.kafka.config import KafkaSettings
from tests.scenarios.conftest import concierge


@pytest.mark.parametrize(
    ("prefix", "name", "topic"),
    [
        ("concierge.", "events", "concierge.events"),
        ("concierge.", "actions.email", "concierge.actions.email"),
        ("concierge.", "concierge.feedback", "concierge.feedback"),
        ("", "feedback", "feedback"),
    ],
)
def test_a_topic_is_named_under_the_prefix_unless_it_has_it(prefix, name, topic):
    assert KafkaSettings("b:9092", prefix, {}).topic(name) == topic


FEEDBACK = orjson.dumps(
    {
        "type": "feedback",
        "properties": {
            "action_id": "cus_0123456789abcdef0123.help_offer.0123456789abcdef0123456789abcdef",
            "channel": "email",
            "outcome": "clicked",
        },
    }
)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        (b'{"identifiers": {"email": "ana@example.com", "anonymous_id": "a1"}}', b"a1"),
        (b'{"identifiers": {"phone": "+34611", "loyalty_id": "L1"}}', b"L1"),
        (b'{"identifiers": {"crm_id": "C9"}}', b"C9"),
        (FEEDBACK, b"cus_0123456789abcdef0123"),
        (FEEDBACK.replace(b"cus_", b"bad_"), None),
        (b'{"identifiers": {"email": ""}}', None),
        (b'{"identifiers": "ana"}', None),
        (b"[1, 2]", None),
        (b'{"event_id": "ev-broken", "type": ', None),
    ],
)
def test_a_record_is_keyed_by_the_first_identifier_a_producer_knows(line, key):
    assert producer_key(line) == key


def test_tail_prints_json_as_it_is_and_anything_else_safely():
    assert shown(b'{"a": 1}') == '{"a": 1}'
    assert shown(b'{\n  "a": 1\n}\n') == '{"a":1}'
    assert shown(b"null") == "null"
    assert shown(None) == "null"
    assert orjson.loads(shown(b"not json")) == {"not_json": "not json"}
    assert orjson.loads(shown(b"se\xf1or")) == {
        "not_json_base64": base64.b64encode(b"se\xf1or").decode()
    }


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["produce", "--brokers", "127.0.0.1:9", "no-such.jsonl"], "no events file at no-such"),
        (["tail", "decisions"], "no brokers: pass --brokers or set KAFKA_BOOTSTRAP_SERVERS"),
    ],
)
def test_a_command_without_what_it_needs_is_one_line_and_exit_2(args, says, monkeypatch):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    done = concierge(*args)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"concierge {args[0]}: ")
    assert says in done.stderr
