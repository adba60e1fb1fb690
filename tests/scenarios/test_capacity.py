"""Capacity in replay: a pace no interval goes over, a backlog that drains in order of value,
and a budget whose decisions fall through to the next best channel, or are over budget."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest

from operators.model.timefmt import parse_ms
from tests.conftest import REFERENCE_POLICY
from tests.scenarios.conftest import concierge, replayer

MINUTE = 60_000
CAPACITY = """
capacity:
  paces:
    push: {limit: 3, per: 1m}
  budgets:
    email_day: {channel: email, limit: 15, per: day, timezone: UTC}
    nudges_day: {action: product_nudge, limit: 60, per: day, timezone: UTC}
"""


@pytest.fixture(scope="module")
def week(tmp_path_factory) -> Path:
    """The demo's stream, smaller: 1,000 customers over three days."""
    out = tmp_path_factory.mktemp("capacity") / "events.jsonl"
    done = concierge(
        "generate", "--customers", "1000", "--events", "20000", "--days", "3", "--seed", "3",
        "--start", "2026-11-16T06:00:00Z", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def replays(tmp_path_factory, week):
    """The stream replayed without capacity, and twice with it."""
    tmp = tmp_path_factory.mktemp("replays")
    policy = tmp / "paced.yaml"
    policy.write_text(REFERENCE_POLICY.read_text() + CAPACITY)
    replay = replayer(tmp, REFERENCE_POLICY)
    done = replay(week), replay(week, policy=policy), replay(week, policy=policy)
    assert all(r.returncode == 0 for r in done), [r.stderr for r in done]
    return done


def sends(result) -> list[dict]:
    paths = sorted(result.out.glob("actions.*.jsonl"))
    return [action for path in paths for action in result.lines(path.name)]


def leaves(action: dict) -> int:
    return parse_ms(action.get("send_at", action["decided_at"]))


def test_no_minute_sends_more_push_than_its_pace_and_a_backlog_drains_by_value(replays):
    unpaced, result, _ = replays

    def per_minute(actions):
        return Counter(leaves(a) // MINUTE for a in actions if a["channel"] == "push")

    before, after = per_minute(sends(unpaced)), per_minute(sends(result))
    assert max(before.values()) > 3, "the stream never needs the pace: the test proves nothing"
    assert max(after.values()) <= 3
    later = [a for a in sends(result) if "send_at" in a]
    assert later, "no send was paced"
    assert all(a["channel"] == "push" and a["send_at"] > a["decided_at"] for a in later)

    # a backlog decided at one instant leaves highest value first
    by_instant = defaultdict(list)
    for action in sends(result):
        if action["channel"] == "push":
            by_instant[action["decided_at"]].append(action)
    drained = [group for group in by_instant.values() if len({leaves(a) for a in group}) > 1]
    assert drained, "no instant had more push sends than one interval takes"
    for group in drained:
        ordered = sorted(group, key=lambda a: (-a["value"], leaves(a)))
        assert [leaves(a) for a in ordered] == sorted(leaves(a) for a in ordered)

    decided = {d["action_id"]: d for d in result.lines("decisions.jsonl") if d["outcome"] == "sent"}
    for action in later:
        assert "paced: leaves at " + action["send_at"] in decided[action["action_id"]]["reason"]


def test_a_spent_budget_falls_through_to_the_next_channel_and_counts_the_rest_over_budget(
    replays,
):
    result = replays[1]
    day = 24 * 60 * MINUTE
    email = Counter(leaves(a) // day for a in sends(result) if a["channel"] == "email")
    assert max(email.values()) == 15, "no day spent the budget, or one went over it"
    nudges = Counter(leaves(a) // day for a in sends(result) if a["action"] == "product_nudge")
    assert max(nudges.values()) == 60

    decisions = result.lines("decisions.jsonl")
    fell = [
        d
        for d in decisions
        if d["outcome"] == "sent" and "over budget on email: email_day is spent" in d["reason"]
    ]
    # cart reminders go by push, loan offers by SMS, once the day's email is spent
    assert {d["channel"] for d in fell} >= {"push"}
    assert all(d["channel"] != "email" for d in fell)
    # product nudges count in their own budget on every channel: once it is spent, nothing
    # is left to fall through to
    over = [d for d in decisions if d["outcome"] == "over_budget"]
    assert {(d["action"], d["rule"]) for d in over} == {("product_nudge", "nudges_day")}
    assert all(d["channel"] == "push" for d in over)
    assert all("over budget on email" in d["reason"] for d in over)
    assert result.summary()["decisions"]["over_budget"] == len(over)


def test_the_same_events_give_the_same_records(replays):
    _, first, second = replays
    for name in ("decisions.jsonl", "actions.push.jsonl", "actions.email.jsonl"):
        assert (first.out / name).read_bytes() == (second.out / name).read_bytes(), name
