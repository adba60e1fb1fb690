"""``concierge diff``: two replays of the same events under two policies, compared."""

from __future__ import annotations

import json
import random
import subprocess

import orjson

from flows.commands.generator import Generator
from tests.conftest import REFERENCE_POLICY, write_jsonl
from tests.measurement import measured_policy_text
from tests.scenarios.conftest import CONCIERGE, concierge
from tests.scenarios.test_decisions import consent, views
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


def test_diff_into_a_reader_that_has_gone_ends_quietly(tmp_path, replay):
    """``concierge diff before after | head``: the reader closing early is no failure."""
    before, after = _two_replays(tmp_path, replay)
    process = subprocess.Popen(
        [CONCIERGE, "diff", str(before), str(after)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.close()  # gone before the first line is written
    _, errors = process.communicate(timeout=120)
    assert (process.returncode, errors) == (0, "")


def test_diff_as_json_and_in_time_order_whatever_the_order_of_the_lines(tmp_path, replay):
    before, after = _two_replays(tmp_path, replay)
    first = json.loads(concierge("diff", "--json", str(before), str(after)).stdout)
    assert first["customers"] == {"decided": 3, "changed": 2}
    assert first["same_events"] is True
    assert first["before"]["input"] == first["after"]["input"]
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
    assert other.stdout.startswith("warning: the two replays read different inputs: ")
    help_text = concierge("diff", "--help").stdout
    assert "--sample N" in help_text and "concierge diff out-before/ out-after/" in help_text


def _generated(tmp_path, seed):
    """60 customers' 400 generated records: the same count, whatever the seed."""
    path = tmp_path / f"seed-{seed}.jsonl"
    path.write_bytes(b"\n".join(Generator(customers=60, seed=seed).events(400)) + b"\n")
    return path


def test_diff_says_first_whether_the_replays_read_the_same_file_or_cannot_tell(tmp_path, replay):
    seven, eight = replay(_generated(tmp_path, 7)), replay(_generated(tmp_path, 8))
    assert seven.summary()["input"]["records"] == eight.summary()["input"]["records"] == 400
    text = concierge("diff", str(seven.out), str(eight.out))
    assert text.returncode == 0
    warning = "warning: the two replays read different inputs: before 400 records ("
    assert text.stdout.startswith(warning), text.stdout[:300]
    assert "the differences below are not only the policy's" in text.stdout.splitlines()[0]
    assert text.stderr.startswith(f"concierge diff: {warning}")
    data = json.loads(concierge("diff", "--json", str(seven.out), str(eight.out)).stdout)
    assert data["same_events"] is False, "as many records is not the same events"
    assert data["before"]["input"]["sha256"] != data["after"]["input"]["sha256"]
    again = replay(_generated(tmp_path, 7), "--quiet")
    same = concierge("diff", str(seven.out), str(again.out))
    assert same.stderr == "" and not same.stdout.startswith(("warning", "note"))
    assert json.loads(concierge("diff", "--json", str(seven.out), str(again.out)).stdout)[
        "same_events"
    ]
    summary = orjson.loads((again.out / "summary.json").read_bytes())
    del summary["input"]  # as replays before 0.6 wrote it
    (again.out / "summary.json").write_bytes(orjson.dumps(summary))
    unknown = concierge("diff", str(seven.out), str(again.out))
    assert unknown.stdout.startswith(
        f"note: cannot tell whether the two replays read the same events: {again.out} was "
        "replayed by a version that did not record its input"
    )
    data = json.loads(concierge("diff", "--json", str(seven.out), str(again.out)).stdout)
    assert data["same_events"] is None and data["after"]["input"] is None


def _decision(at, action, outcome, triggered_by, **more):
    return {
        "customer_id": "cus_81c634c6fc3ad8b238b9",
        "at": at,
        "action": action,
        "outcome": outcome,
        "reason": more.pop("reason", outcome),
        "moment": {"product_nudge": "browse_intent"}.get(action, "cart_abandoned"),
        "value": 40.0,
        "signals": [],
        "triggered_by": [triggered_by],
        "policy_version": "1",
        **more,
    }


def test_diff_shows_one_instants_decisions_in_the_order_decisions_jsonl_has_them(tmp_path):
    """At one instant a nudge went out, then the cart reminder it outranked was decided
    again (as replay writes it: the generated stream of seed 7 has 36 such instants)."""
    at = "2026-11-16T13:25:08.989Z"
    before = [
        _decision(at, "product_nudge", "sent", "ev-1", channel="push"),
        _decision(at, "cart_recovery", "outranked", "ev-2"),
        _decision(at, "cart_recovery", "sent", "ev-2", channel="email"),
    ]
    after = [
        _decision(at, "product_nudge", "held_out", "ev-1", channel="push"),
        _decision(at, "cart_recovery", "outranked", "ev-2"),
        _decision(at, "cart_recovery", "held_out", "ev-2", channel="email"),
    ]
    dirs = []
    for name, decisions in (("before", before), ("after", after)):
        out = tmp_path / name
        out.mkdir()
        write_jsonl(out / "decisions.jsonl", decisions)
        dirs.append(str(out))
    (customer,) = json.loads(concierge("diff", "--json", *dirs).stdout)["sample"]
    shown = [(c["action"], [t["outcome"] for t in c["after"]]) for c in customer["changes"]]
    assert shown == [("product_nudge", ["held_out"]), ("cart_recovery", ["outranked", "held_out"])]


def test_diff_shows_no_until_for_a_capped_decision_that_will_be_dropped(tmp_path, replay):
    """Five products browsed in four days: three nudges fit the weekly cap; without it all
    five go, with it the last two are capped, worth too little when a slot frees."""
    events = [consent()]
    for day, product in zip((16, 17, 17, 18, 19), "abcde", strict=True):
        events += views(product, *(f"2026-11-{day}T1{h}:00:00Z" for h in (0, 1, 2)))
    story = write_jsonl(tmp_path / "busy.jsonl", events)
    roomy = tmp_path / "roomy.yaml"
    cap = "match: {category: marketing}, max: 3, window: 7d}"
    roomy.write_text(REFERENCE_POLICY.read_text().replace(cap, cap.replace("3", "5")))
    before, after = replay(story, policy=roomy), replay(story)
    capped = [d for d in after.lines("decisions.jsonl") if d["outcome"] == "capped"]
    assert capped and all("until" in d and "before a slot frees" in d["reason"] for d in capped)
    text = concierge("diff", str(before.out), str(after.out)).stdout
    assert "after:  capped on push by marketing-weekly at 2026-11-18T12:00:00Z\n" in text
    assert " until " not in text
