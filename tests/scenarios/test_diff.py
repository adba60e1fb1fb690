"""``concierge diff``: two replays of the same events under two policies, compared."""

from __future__ import annotations

import json
import random

from tests.conftest import write_jsonl
from tests.measurement import measured_policy_text
from tests.scenarios.conftest import concierge
from tests.scenarios.test_eligibility import NUDGE_DAYS, browsing
from tests.unit.decisions.test_fatigue import SECTION as FATIGUE


def _story():
    """Ana and Bo each view four products on November 1, 4, 8 and 11; nobody opens
    anything, and Carla only browses once (decided alike under both policies)."""
    return browsing({"ana": NUDGE_DAYS, "bo": NUDGE_DAYS, "carla": ("01",)})


def _two_replays(tmp_path, replay):
    events = write_jsonl(tmp_path / "story.jsonl", _story())
    fatigue = tmp_path / "fatigue.yaml"
    fatigue.write_text(measured_policy_text(FATIGUE))
    before = replay(events)
    after = replay(events, policy=fatigue)
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    return before.out, after.out


def test_diff_counts_by_action_outcome_and_rule_and_shows_what_changed(tmp_path, replay):
    before, after = _two_replays(tmp_path, replay)
    done = concierge("diff", str(before), str(after))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    counts = {
        tuple(line.split()[:3]): tuple(line.split()[3:])
        for line in text.splitlines()
        if line.startswith("  product_nudge")
    }
    assert counts[("product_nudge", "sent", "-")] == ("9", "7", "-2")
    assert counts[("product_nudge", "suppressed", "ignoring-marketing")] == ("0", "2", "+2")
    assert "customers: 2 of 3 decided about changed (66.7%)" in text
    assert "product_nudge for browse_intent [p-3], opened by" in text
    assert "before: sent on push at 2026-11-11T10:20:00Z" in text
    assert (
        "after:  suppressed on push by ignoring-marketing at 2026-11-11T10:20:00Z "
        "until 2026-11-15T10:20:00Z"
    ) in text


def test_diff_as_json_and_in_any_order_of_the_decisions(tmp_path, replay):
    before, after = _two_replays(tmp_path, replay)
    first = json.loads(concierge("diff", "--json", str(before), str(after)).stdout)
    assert first["customers"] == {"decided": 3, "changed": 2}
    assert first["same_events"] is True
    (change,) = first["sample"][0]["changes"]
    assert change["before"] == [
        {
            "at": "2026-11-11T10:20:00Z",
            "outcome": "sent",
            "channel": "push",
            "rule": None,
            "until": None,
        }
    ]
    assert change["after"][0]["rule"] == "ignoring-marketing"
    shuffled = after / "decisions.jsonl"
    lines = shuffled.read_bytes().splitlines(keepends=True)
    random.Random(4).shuffle(lines)
    shuffled.write_bytes(b"".join(lines))
    again = json.loads(concierge("diff", "--json", str(before), str(after)).stdout)
    assert again == first, "replay's processing order must not matter"
    same = json.loads(concierge("diff", "--json", "--sample", "0", str(before), str(before)).stdout)
    assert same["customers"]["changed"] == 0 and same["sample"] == []
    assert all(row["change"] == 0 for row in same["counts"])


def test_diff_refuses_what_is_not_a_replay_and_warns_of_other_events(tmp_path, replay):
    before, _ = _two_replays(tmp_path, replay)
    missing = concierge("diff", str(before), str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert f"no replay output at {tmp_path / 'nowhere'} (no decisions.jsonl)" in missing.stderr
    fewer = replay(write_jsonl(tmp_path / "fewer.jsonl", _story()[:10]))
    other = concierge("diff", str(before), str(fewer.out))
    assert other.returncode == 0
    assert "not the same events" in other.stdout
    help_text = concierge("diff", "--help").stdout
    assert "--sample N" in help_text and "concierge diff out-before/ out-after/" in help_text
