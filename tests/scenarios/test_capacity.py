"""Capacity in replay: a pace no interval goes over, a backlog that drains in order of value,
and a budget whose decisions fall through to the next best channel, or are over budget."""

from __future__ import annotations

import re
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
    agent_day: {channel: agent, limit: 6, per: day, timezone: UTC, reserve: {care: 0.5}}
"""
AGENT_FIRST = ("    channels: [in_app, agent]\n", "    channels: [agent, in_app]\n")
"""The help offer tries an agent first (the reference policy tries the app first)."""


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
    text = REFERENCE_POLICY.read_text()
    assert text.count(AGENT_FIRST[0]) == 1
    policy.write_text(text.replace(*AGENT_FIRST) + CAPACITY)
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
    nudges = [d for d in over if d["action"] == "product_nudge"]
    assert nudges and {d["rule"] for d in nudges} == {"nudges_day"}
    assert all(d["channel"] == "push" for d in nudges)
    assert all("over budget on email" in d["reason"] for d in nudges)
    assert result.summary()["decisions"]["over_budget"] == len(over)


def test_when_the_agents_budget_is_spent_customers_get_the_app_and_care_keeps_its_share(
    replays,
):
    result = replays[1]
    day = 24 * 60 * MINUTE
    agent = [a for a in sends(result) if a["channel"] == "agent"]
    per_day = Counter(leaves(a) // day for a in agent)
    assert max(per_day.values()) == 6
    # help offers (service) may use half the agents' day; the rest is kept for care
    service = Counter(leaves(a) // day for a in agent if a["action"] == "help_offer")
    assert service and max(service.values()) <= 3
    decisions = result.lines("decisions.jsonl")
    helped = [
        d
        for d in decisions
        if d["action"] == "help_offer"
        and d["outcome"] == "sent"
        and "over budget on agent: agent_day is spent" in d["reason"]
    ]
    assert helped and {d["channel"] for d in helped} == {"in_app"}
    handoffs = [d for d in decisions if d["action"] == "empathy_handoff"]
    assert any(d["outcome"] == "sent" for d in handoffs)


def test_the_same_events_give_the_same_records(replays):
    _, first, second = replays
    for name in ("decisions.jsonl", "actions.push.jsonl", "actions.email.jsonl"):
        assert (first.out / name).read_bytes() == (second.out / name).read_bytes(), name


def test_the_report_charts_sends_against_each_pace_and_explain_shows_when_one_leaves(
    replays, tmp_path
):
    unpaced, paced, _ = replays
    page = tmp_path / "report.html"
    done = concierge("report", str(paced.out), "--compare", str(unpaced.out), "--out", str(page))
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert "Capacity: sends against each pace and budget" in text
    assert 'aria-label="Sends per interval against each pace, ' in text
    section = text[text.index("Capacity: sends against") :]
    rows = {
        cells[0]: cells[1:]
        for cells in (
            [c.strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", section[: section.index("</table>")])
        )
    }
    # --compare's run first, as before and after
    unpaced_busiest, paced_busiest, _ = rows["push: busiest interval"]
    assert int(paced_busiest) == 3 and int(unpaced_busiest) > 3
    assert rows["push: intervals over 3"][1] == "0"

    later = next(a for a in sends(paced) if "send_at" in a)
    done = concierge("explain", "--replay", str(paced.out), later["customer_id"])
    assert done.returncode == 0, done.stderr
    assert f"leaves at {later['send_at']} (paced)" in done.stdout
    assert "paced: leaves at " + later["send_at"] in done.stdout


def test_diff_shows_what_capacity_paced_and_refused(replays):
    unpaced, paced, _ = replays
    done = concierge("diff", str(unpaced.out), str(paced.out), "--sample", "200")
    assert done.returncode == 0, done.stderr
    counts = re.findall(
        r"^\s+(\w+)\s+(over_budget|paced_out)\s+(\w+)\s+0\s+(\d+)", done.stdout, re.M
    )
    assert ("product_nudge", "over_budget", "nudges_day") in {c[:3] for c in counts}
    assert "sent on push at " in done.stdout and ", paced: leaves at " in done.stdout
    assert re.search(r"before: sent on email .*\n\s+after:  sent on push ", done.stdout)
