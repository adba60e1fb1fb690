"""Kafka client settings from flags and environment (flows/kafka/config.py, the edge)."""

import re

import pytest

from flows.kafka.config import KafkaSettings, client_properties


def test_flags_override_environment_and_keep_every_property():
    environ = {
        "CONCIERGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CONCIERGE_KAFKA_SASL_PASSWORD": "from-env",
        "UNRELATED": "x",
    }
    properties = client_properties(["sasl.password=from-flag", "ssl.ca.location=/ca.pem"], environ)
    assert properties == {
        "security.protocol": "SASL_SSL",
        "sasl.password": "from-flag",
        "ssl.ca.location": "/ca.pem",
    }


def test_a_flag_without_a_value_is_refused():
    with pytest.raises(ValueError, match="PROPERTY=VALUE"):
        client_properties(["security.protocol"], {})


def test_every_client_gets_the_user_properties_last(policy):
    settings = KafkaSettings("k1:9092", "acme.", {"security.protocol": "SSL"})
    config = settings.config(**{"security.protocol": "PLAINTEXT", "linger.ms": 5})
    assert config.pop("logger").name == "concierge.librdkafka"
    assert config == {"bootstrap.servers": "k1:9092", "linger.ms": 5, "security.protocol": "SSL"}
    assert settings.input_topics() == ["acme.events", "acme.feedback"]
    assert settings.output_topics(policy) == [
        "acme.actions.email",
        "acme.actions.sms",
        "acme.actions.push",
        "acme.actions.in_app",
        "acme.actions.agent",
        "acme.decisions",
        "acme.dlq",
        "acme.audit",
        "acme.transfers",
        "acme.frontier",
    ]


def test_environment_names_map_underscores_and_skip_what_is_not_a_property():
    environ = {
        "CONCIERGE_KAFKA_LOG__LEVEL": "3",
        "CONCIERGE_KAFKA_SERVICE_HOST": "10.0.0.1",
        "CONCIERGE_KAFKA_SSL_CA_LOCATION": "/etc/ca.pem",
    }
    assert client_properties([], environ) == {"log_level": "3", "ssl.ca.location": "/etc/ca.pem"}


def test_each_process_creates_its_own_share_of_the_recovery_partitions(tmp_path):
    from flows.kafka.run import _prepare_recovery

    own, shared = tmp_path / "pod-1", tmp_path / "shared"
    _prepare_recovery(own, range(2, 4), 6)
    assert sorted(p.name for p in own.iterdir()) == ["part-2.sqlite3", "part-3.sqlite3"]
    for process in (2, 0, 1):
        _prepare_recovery(shared, range(process * 2, process * 2 + 2), 6)
    assert sorted(p.name for p in shared.iterdir()) == [f"part-{n}.sqlite3" for n in range(6)]
    before = (shared / "part-0.sqlite3").stat().st_mtime_ns
    _prepare_recovery(shared, range(0, 2), 6)
    assert (shared / "part-0.sqlite3").stat().st_mtime_ns == before


def test_a_recovery_directory_keeps_the_partitions_per_worker_it_was_made_with(tmp_path):
    from flows.kafka.run import RECOVERY_PARTITIONS, _prepare_recovery
    from flows.kafka.snapshots import LayoutMismatch, partitions_per_worker

    assert partitions_per_worker(tmp_path / "new", 2, RECOVERY_PARTITIONS) == RECOVERY_PARTITIONS
    made = tmp_path / "made"
    _prepare_recovery(made, range(0, 8), 8)  # one process of two workers, four each
    assert partitions_per_worker(made, 2, 16) == 4  # not the 16 asked for a new one
    with pytest.raises(LayoutMismatch, match="8 partitions, which 3 worker"):
        partitions_per_worker(made, 3, 16)


def test_a_process_does_not_make_partitions_missing_where_a_run_has_been(tmp_path):
    import sqlite3
    from contextlib import closing

    from flows.kafka.run import _prepare_recovery
    from flows.kafka.snapshots import LayoutMismatch, check_share

    volume = tmp_path / "pod-0"
    _prepare_recovery(volume, range(0, 4), 8)  # process 0 of two, on a volume of its own
    check_share(volume, range(0, 8))  # nothing has run: a shared directory fills up so
    with closing(sqlite3.connect(volume / "part-0.sqlite3")) as db, db:
        db.execute("INSERT INTO exs (ex_num, worker_count, resume_epoch) VALUES (0, 2, 1)")
    check_share(volume, range(0, 4))  # its own share is all there
    # The cluster scaled down to this one process: parts 4-7 are on the other volume.
    with pytest.raises(LayoutMismatch, match=re.escape("not part-4, part-5, part-6, ... of")):
        check_share(volume, range(0, 8))


def test_run_makes_as_many_recovery_partitions_per_worker_as_its_default_says():
    from flows.cli import parser
    from flows.kafka.run import RECOVERY_PARTITIONS, STOP_GRACE_S

    args = parser().parse_args(["run", "--policy", "p.yaml", "--brokers", "b:9092"])
    assert args.recovery_partitions == RECOVERY_PARTITIONS
    assert args.stop_grace == STOP_GRACE_S  # the flag's default is run()'s
