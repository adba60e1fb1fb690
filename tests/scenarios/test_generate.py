"""``concierge generate``: the demo's stream written out, as a new user tries replay on it."""

from __future__ import annotations

import gzip
import subprocess

import orjson
import pytest

from flows.commands.generator import Generator
from operators.model.timefmt import parse_ms
from tests.scenarios.conftest import CONCIERGE, concierge

DAY_MS = 86_400_000


def generate(*flags: str) -> subprocess.CompletedProcess[bytes]:
    """``concierge generate`` with its stream as bytes: broken records are not all UTF-8."""
    return subprocess.run([CONCIERGE, "generate", *flags], capture_output=True, timeout=120)


def test_the_default_stream_is_the_generators_byte_for_byte():
    done = generate()
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"".join(raw + b"\n" for raw in Generator().events(60000))
    summary = done.stderr.decode().splitlines()
    assert len(summary) == 1
    assert summary[0].startswith("wrote 60,000 events (")
    assert "broken) from 3,000 customers, 2026-11-16 06:00 to 2026-11-18 " in summary[0]
    assert summary[0].endswith("UTC (2.6 days), to standard output")


def test_a_gz_file_is_gzip_the_same_every_time_and_replay_reads_it(tmp_path, replay):
    flags = ["--customers", "300", "--events", "2000", "--broken", "0", "--seed", "3"]
    first, second = tmp_path / "week.jsonl.gz", tmp_path / "again.jsonl.gz"
    for out in (first, second):
        done = concierge("generate", *flags, "--out", str(out))
        assert done.returncode == 0, done.stderr
    assert first.read_bytes()[:2] == b"\x1f\x8b"
    assert first.read_bytes() == second.read_bytes(), "no time or name in the gzip header"
    expected = Generator(300, seed=3, bad_share=0).events(2000)
    assert gzip.decompress(first.read_bytes()) == b"".join(raw + b"\n" for raw in expected)

    result = replay(first)
    assert result.returncode == 0, result.stderr
    summary = result.summary()
    assert summary["events_in"] == summary["events_ok"] == 2000
    assert summary["dead_letters"] == 0, "--broken 0: nothing to dead-letter"
    assert sum(summary["actions"].values()) > 0


def test_the_broken_share_is_about_the_share_of_dead_letters_in_replay(tmp_path, replay):
    out = tmp_path / "broken.jsonl"
    done = concierge("generate", "--events", "3000", "--broken", "0.1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    told = int(done.stderr.split("(")[1].split(" broken")[0].replace(",", ""))
    result = replay(out)
    assert result.returncode == 0, result.stderr
    assert result.summary()["dead_letters"] == told
    assert 0.08 < told / 3000 < 0.12


def test_another_seed_is_another_stream():
    eight = generate("--events", "200", "--seed", "8").stdout
    assert eight == b"".join(raw + b"\n" for raw in Generator(seed=8).events(200))
    assert eight != b"".join(raw + b"\n" for raw in Generator(seed=7).events(200))


def test_days_and_start_set_the_span_of_event_time():
    days = 7
    start = "2026-03-01T09:00:00+01:00"
    done = concierge(
        "generate", "--events", "8000", "--days", str(days), "--start", start, "--broken", "0"
    )
    assert done.returncode == 0, done.stderr
    times = [parse_ms(orjson.loads(line)["timestamp"]) for line in done.stdout.splitlines()]
    assert min(times) == times[0] == parse_ms(start)
    assert abs((max(times) - min(times)) / DAY_MS - days) < days * 0.1
    assert f"2026-03-01 08:00 to 2026-03-0{1 + int(days)}" in done.stderr


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--broken", "1.5"], "argument --broken: 1.5 is out of range (0..1)"),
        (["--days", "0"], "argument --days: 0 is out of range"),
        (["--start", "yesterday"], "argument --start: not an RFC 3339 timestamp: 'yesterday'"),
        (["--out", "{tmp}/no/week.jsonl"], "cannot write {tmp}/no/week.jsonl: No such file"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(flags, says, tmp_path):
    done = concierge("generate", *(flag.format(tmp=tmp_path) for flag in flags))
    assert done.returncode == 2
    assert done.stdout == ""
    assert says.format(tmp=tmp_path) in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr
