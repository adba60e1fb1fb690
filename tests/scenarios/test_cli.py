"""The command line's contract: exit codes and messages a CX designer can act on."""

from __future__ import annotations

import pytest

from tests.conftest import event_dict, write_jsonl
from tests.scenarios.conftest import concierge


def test_validate_accepts_the_reference_policy(reference_policy_path):
    done = concierge("validate", str(reference_policy_path))
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout


def test_validate_names_each_bad_field_and_its_line(tmp_path, reference_policy_path):
    text = reference_policy_path.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        text.replace("half_life: 2d", "half_life: two days").replace(
            "category: service", "category: servce"
        )
    )
    done = concierge("validate", str(bad))
    assert done.returncode == 2
    assert "moments.browse_intent.half_life (line " in done.stderr
    assert "actions.help_offer.category (line " in done.stderr
    assert "servce" in done.stderr


def test_replay_refuses_an_invalid_policy(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("channels: []\n")
    events = write_jsonl(tmp_path / "e.jsonl", [event_dict("a", "2026-11-20T10:00:00Z")])
    done = concierge(
        "replay", "--policy", str(bad), "--events", str(events), "--out", str(tmp_path / "out")
    )
    assert done.returncode == 2
    assert "channels" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_policy_or_events_file_is_a_clear_error(tmp_path, reference_policy_path):
    done = concierge("validate", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2 and "nope.yaml" in done.stderr
    done = concierge(
        "replay",
        "--policy",
        str(reference_policy_path),
        "--events",
        str(tmp_path / "none.jsonl"),
        "--out",
        str(tmp_path / "out"),
    )
    assert done.returncode == 2 and "none.jsonl" in done.stderr


def test_run_without_brokers_says_how_to_give_them(reference_policy_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("concierge")),
            "run",
            "--policy",
            str(reference_policy_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2 and "KAFKA_BOOTSTRAP_SERVERS" in done.stderr


def test_run_against_an_unreachable_broker_fails_with_a_message(reference_policy_path):
    from flows.broker import free_port

    done = concierge(
        "run",
        "--policy",
        str(reference_policy_path),
        "--brokers",
        f"127.0.0.1:{free_port()}",
        "--metrics-port",
        "0",
        "-X",
        "socket.connection.setup.timeout.ms=1000",
        "-X",
        "log_level=0",
        timeout=90,
    )
    assert done.returncode == 1
    assert "cannot list topics" in done.stderr


def test_a_bad_client_property_or_out_path_is_a_message_not_a_traceback(
    tmp_path, reference_policy_path
):
    done = concierge(
        "run",
        "--policy",
        str(reference_policy_path),
        "--brokers",
        "127.0.0.1:1",
        "-X",
        "no.such.prop=1",
    )
    assert done.returncode == 2 and "no.such.prop" in done.stderr
    assert "Traceback" not in done.stderr
    events = write_jsonl(tmp_path / "e.jsonl", [event_dict("a", "2026-11-20T10:00:00Z")])
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    done = concierge(
        "replay",
        "--policy",
        str(reference_policy_path),
        "--events",
        str(events),
        "--out",
        str(not_a_dir),
    )
    assert done.returncode == 2 and "not a directory" in done.stderr


@pytest.mark.parametrize("until", ["tomorrow", "2026-11-20 10:30:00+00:00"])
def test_until_takes_the_same_timestamps_events_do(tmp_path, reference_policy_path, until):
    events = write_jsonl(tmp_path / "e.jsonl", [event_dict("a", "2026-11-20T10:00:00Z")])
    done = concierge(
        "replay",
        "--policy",
        str(reference_policy_path),
        "--events",
        str(events),
        "--out",
        str(tmp_path / "out"),
        "--until",
        until,
    )
    assert done.returncode == 2 and "RFC 3339" in done.stderr
