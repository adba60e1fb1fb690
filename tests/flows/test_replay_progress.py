"""Replay's progress on stderr: how far each phase has got, in one format, with an ETA."""

from __future__ import annotations

import gzip
import re

from flows import replay as replay_module
from flows.commands.generator import Generator
from flows.replay import progress_text, replay
from operators.policy.load import load_policy
from tests.conftest import REFERENCE_POLICY


def test_progress_says_the_share_done_and_the_time_left_in_one_format():
    assert progress_text(0, 100, 3.0) == "0%"
    assert progress_text(25, 100, 3.0) == "25%, about 9 s left"
    assert progress_text(50, 100, 90.0) == "50%, about 1 min 30 s left"
    assert progress_text(10, 100, 900.0) == "10%, about 2 h 15 min left"
    assert progress_text(100, 100, 5.0) == "100%", "all done: no time left to estimate"
    assert progress_text(999, 1000, 5.0) == "99%, about 1 s left", "never 100% before the end"
    assert progress_text(5, 0, 1.0) == "100%"


def test_a_replay_reports_reading_then_deciding_with_percentages(tmp_path, monkeypatch):
    monkeypatch.setattr(replay_module, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(replay_module, "READ_BATCH", 500)
    lines = b"\n".join(Generator(customers=200, seed=2).events(4000)) + b"\n"
    policy = load_policy(REFERENCE_POLICY.read_text())
    for name, data in (("events.jsonl", lines), ("events.jsonl.gz", gzip.compress(lines))):
        events = tmp_path / name
        events.write_bytes(data)
        said: list[str] = []
        replay(policy, events, tmp_path / f"out-{name}", progress=said.append)
        reading = [m for m in said if m.startswith("replay: reading")]
        deciding = [m for m in said if m.startswith("replay: deciding")]
        assert reading and deciding, said
        shares = [int(re.search(r"(\d+)%", m).group(1)) for m in reading]
        assert shares == sorted(shares) and 0 < shares[0] < 100, reading
        assert "about" in reading[0] and "left" in reading[0]
        assert re.search(r"deciding \d+%, about .* left \([\d,]+ of [\d,]+ events", deciding[0])
