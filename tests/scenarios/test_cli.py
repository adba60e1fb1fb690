"""The command line's contract: exit codes and messages a CX designer can act on."""

from __future__ import annotations

import json
import re

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


def test_an_unreachable_broker_is_retried_then_one_clear_line(reference_policy_path, tmp_path):
    from flows.kafka.broker import free_port

    done = concierge(
        "run",
        "--policy",
        str(reference_policy_path),
        "--state-dir",
        str(tmp_path / "state"),
        "--recovery-dir",
        str(tmp_path / "recovery"),
        "--brokers",
        f"127.0.0.1:{free_port()}",
        "--metrics-port",
        "0",
        "--connect-timeout",
        "3",
        timeout=90,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    *logged, last = done.stderr.strip().splitlines()
    assert last.startswith("concierge run: cannot reach the brokers at 127.0.0.1:")
    assert " attempts: " in last
    tried = float(re.search(r" after ([0-9.]+) s and ", last)[1])
    assert 2.9 <= tried < 4, last  # the time it tried: all of --connect-timeout, not 2 s
    attempts = [line for line in logged if "action key" not in line]
    assert 1 <= len(attempts) <= 5, done.stderr  # one line per attempt, none from librdkafka
    assert all("cannot reach" in line and "next try in" in line for line in attempts), logged


@pytest.mark.parametrize(
    ("flag", "named"),
    [
        ("no.such.prop=1", "-X no.such.prop: not a librdkafka property"),
        ("security.protocol=bogus", "-X security.protocol: "),
        ("sasl.mechanism", "-X takes PROPERTY=VALUE"),
    ],
)
def test_a_bad_client_property_is_one_line_naming_it(reference_policy_path, flag, named):
    done = concierge(
        "run", "--policy", str(reference_policy_path), "--brokers", "127.0.0.1:1", "-X", flag
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"concierge run: {named}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(
    ("out", "says"),
    [
        (lambda tmp: tmp / "file", "is a file, not a directory"),
        (lambda tmp: tmp / "file" / "sub", "Not a directory"),
        (lambda tmp: "/proc/concierge-out", "cannot write to --out /proc/concierge-out"),
    ],
)
def test_an_out_path_replay_cannot_write_is_one_line(tmp_path, reference_policy_path, out, says):
    events = write_jsonl(tmp_path / "e.jsonl", [event_dict("a", "2026-11-20T10:00:00Z")])
    (tmp_path / "file").write_text("")
    done = concierge(
        "replay",
        "--policy",
        str(reference_policy_path),
        "--events",
        str(events),
        "--out",
        str(out(tmp_path)),
    )
    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_version_and_every_flag_have_help():
    done = concierge("--version")
    assert done.returncode == 0 and done.stdout.startswith("concierge 0.")
    for command in (
        "validate",
        "replay",
        "run",
        "identity",
        "lift",
        "diff",
        "explain",
        "report",
        "broker",
        "demo",
    ):
        shown = concierge(command, "--help")
        assert shown.returncode == 0
        assert "example:" in shown.stdout
        flags = [line for line in shown.stdout.splitlines() if line.startswith("  -")]
        assert flags, command
        for line in flags:
            lines = shown.stdout.splitlines()
            after = lines[lines.index(line) + 1] if lines.index(line) + 1 < len(lines) else ""
            assert len(line.split("  ")) > 2 or after.startswith(" " * 10), (command, line)


@pytest.mark.parametrize(
    "zone", ["Europe", "America", "Etc", "A" * 300], ids=["Europe", "America", "Etc", "long"]
)
@pytest.mark.parametrize("command", ["validate", "replay", "run"])
def test_a_time_zone_naming_a_folder_is_exit_2_naming_the_field(
    tmp_path, reference_policy_path, zone, command
):
    bad = tmp_path / "tz.yaml"
    bad.write_text(reference_policy_path.read_text().replace("Europe/Madrid", zone))
    events = write_jsonl(tmp_path / "e.jsonl", [event_dict("a", "2026-11-20T10:00:00Z")])
    args = {
        "validate": [str(bad)],
        "replay": ["--policy", str(bad), "--events", str(events), "--out", str(tmp_path / "o")],
        "run": ["--policy", str(bad), "--brokers", "127.0.0.1:1"],
    }[command]
    done = concierge(command, *args)
    assert done.returncode == 2
    assert "defaults.timezone (line " in done.stderr and "Traceback" not in done.stderr


def test_a_billion_laughs_policy_is_refused_quickly(tmp_path):
    from tests.unit.policy.test_limits import billion_laughs

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    done = concierge("validate", str(bomb), timeout=20)
    assert done.returncode == 2 and "aliases" in done.stderr


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


@pytest.mark.parametrize(
    "flags",
    [
        ["--metrics-port", "99999"],
        ["-w", "0"],
        ["--snapshot-interval", "0"],
        ["--partitions", "-1"],
        ["--connect-timeout", "nan"],
        ["-i", "2", "-a", "127.0.0.1:1;127.0.0.1:2"],
    ],
    ids=["port", "workers", "snapshots", "partitions", "timeout", "process-id"],
)
def test_run_refuses_numbers_out_of_range_naming_the_flag(reference_policy_path, flags):
    done = concierge(
        "run", "--policy", str(reference_policy_path), "--brokers", "127.0.0.1:1", *flags
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert flags[0] in done.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["replay", "--policy", "p"], "concierge replay: the following arguments are required"),
        (["diff", "--sample", "x", "a", "b"], "concierge diff: argument --sample: not a number"),
        (["bogus"], "concierge: argument COMMAND: invalid choice: 'bogus'"),
    ],
    ids=["missing", "bad-value", "no-such-command"],
)
def test_a_usage_error_is_one_line_naming_the_command_and_its_help(args, said):
    done = concierge(*args)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()  # no usage: block before it
    assert line.startswith(said), line
    command = "concierge" if args[0] == "bogus" else f"concierge {args[0]}"
    assert line.endswith(f"(see {command} --help)"), line


def test_run_with_json_logs_tells_a_policy_typo_as_a_log_record(tmp_path, reference_policy_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text(
        reference_policy_path.read_text().replace("consent: marketing", "consent: marketting", 1)
    )
    done = concierge(
        "run",
        "--policy",
        str(typo),
        "--brokers",
        "127.0.0.1:1",
        "--connect-timeout",
        "0",
        "--metrics-port",
        "0",
        "--state-dir",
        str(tmp_path / "state"),
        "--recovery-dir",
        str(tmp_path / "recovery"),
        "--log-format",
        "json",
    )
    assert done.returncode == 1, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]  # every line a record
    (warning,) = [r for r in records if r["logger"] == "concierge.policy"]
    assert warning["level"] == "warning" and "did you mean 'marketing'?" in warning["message"]
    assert warning["field"] == "actions.product_nudge.consent" and warning["line"] == 79
