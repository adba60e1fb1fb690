"""Learning through ``concierge replay``, day by day: the plant of tests/learning.py answers
each day's actions with feedback, and the next day's replay reads it (the whole story
again: replay is deterministic, so every day before decides as it did). Each test replays
several times, so all run with ``make test-scale`` (``.ci/run`` runs it after ``make test``);
tests/unit/learning/ holds the core's."""

import json
import math

import orjson
import pytest

from operators.model.timefmt import parse_ms
from tests.conftest import write_jsonl
from tests.learning import (
    BEST,
    DAY,
    LEARNING,
    POLICY,
    START,
    actions_of,
    closed_loop,
    customer_of,
    feedback_for,
    view_record,
)
from tests.scenarios.conftest import concierge


@pytest.fixture(autouse=True)
def fixed_keys(monkeypatch):
    """The same action ids (and so the same draws, the plant's too) in every run."""
    monkeypatch.setenv("CONCIERGE_ACTION_KEY", "learning-test-action-key")
    monkeypatch.setenv("CONCIERGE_IDENTITY_KEY", "learning-test-identity-key")


def policy_file(tmp_path, learning=LEARNING):
    path = tmp_path / ("learning.yaml" if learning else "static.yaml")
    path.write_text(POLICY + learning)
    return path


def week_rate(result, clicked, week, control):
    """The click rate of the sends of ``week`` (0 or 1) to the learning customers or the
    control share, and its standard error."""
    sent = [
        d
        for d in result.lines("decisions.jsonl")
        if d["outcome"] == "sent"
        and (parse_ms(d["at"]) - START) // (7 * DAY) == week
        and d["learning"]["control"] is control
    ]
    rate = sum(d["action_id"] in clicked for d in sent) / len(sent)
    return rate, math.sqrt(rate * (1 - rate) / len(sent))


def clicked_in(events):
    """The actions the events say were clicked."""
    return {
        e["properties"]["action_id"]
        for e in map(orjson.loads, events.read_bytes().splitlines())
        if e["type"] == "feedback"
    }


def clicked_of(result):
    """The actions of a replay the plant clicks (the last day's too, whose answers no replay
    has read)."""
    return {a["action_id"] for a in actions_of(result) if feedback_for(a) is not None}


@pytest.mark.scale  # replays day by day: the suite keeps under 10 minutes
def test_evaluate_estimates_a_candidate_from_the_logs_and_says_when_it_cannot(tmp_path, replay):
    result, events, policy = closed_loop(tmp_path, replay, customers=40, days=1)

    def evaluate(*extra, learning=policy):
        replayed = ("--policy", str(learning), "--events", str(events))
        return concierge("evaluate", str(result.out), *replayed, *extra)

    asked = evaluate("--json")
    assert asked.returncode == 0, asked.stderr
    estimate = json.loads(asked.stdout)
    assert estimate["candidate"] == "static" and estimate["decisions"] == 40
    low, high = estimate["interval"]
    assert low <= estimate["estimate"] <= high and estimate["matched"] > 0
    logged = sum(d["action_id"] in clicked_in(events) for d in actions_of(result)) / 40
    assert estimate["logged"] == pytest.approx(logged)
    text = evaluate()
    assert "static:" in text.stdout and "effective sample size" in text.stdout
    unknown = evaluate("--candidate", "bandit")
    assert unknown.returncode == 2 and "unknown candidate 'bandit'" in unknown.stderr
    static = evaluate(learning=policy_file(tmp_path, ""))
    assert static.returncode == 2 and "has no learning section" in static.stderr
    rare = evaluate("--candidate", "prefer:push")
    assert rare.returncode == 0 and "warning:" in rare.stdout + rare.stderr


@pytest.mark.scale
def test_over_fourteen_days_learning_finds_what_each_customer_answers(tmp_path, replay):
    customers = 300
    result, events, policy = closed_loop(tmp_path, replay, customers, days=14)
    clicked = clicked_of(result)
    assert clicked_in(events) == clicked
    learning, error = week_rate(result, clicked, 1, control=False)
    control, control_error = week_rate(result, clicked, 1, control=True)
    static_events = write_jsonl(
        tmp_path / "views.jsonl", [view_record(n, d) for d in range(14) for n in range(customers)]
    )
    static = replay(static_events, policy=policy_file(tmp_path, ""))
    fixed = [feedback_for(a) is not None for a in actions_of(static)]
    second_week = [
        feedback_for(a) is not None
        for a in actions_of(static)
        if (parse_ms(a["decided_at"]) - START) // (7 * DAY) == 1
    ]
    fixed_rate = sum(second_week) / len(second_week)
    fixed_error = math.sqrt(fixed_rate * (1 - fixed_rate) / len(second_week))
    print(
        f"second week: learning {learning:.3f}, control {control:.3f}, static {fixed_rate:.3f}, "
        f"best {BEST}"
    )
    assert learning >= 0.8 * BEST
    assert (learning - fixed_rate) / math.hypot(error, fixed_error) > 3
    assert learning - control - 1.96 * math.hypot(error, control_error) > 0
    asked = concierge(
        "evaluate", str(result.out), "--policy", str(policy), "--events", str(events), "--json"
    )
    low, high = json.loads(asked.stdout)["interval"]
    assert low <= sum(fixed) / len(fixed) <= high
    assert {customer_of(a) for a in actions_of(result)} == set(range(customers))


@pytest.mark.scale  # replays day by day: the suite keeps under 10 minutes
def test_a_replay_writes_each_trial_scored_and_learnings_lift(tmp_path, replay):
    result, _, _ = closed_loop(tmp_path, replay, customers=20, days=4)
    trials = result.lines("trials.jsonl")
    sent = {a["action_id"]: a for a in actions_of(result)}
    until = START + 4 * DAY  # the last replay's --until: windows (2d) that closed by then
    closed = {i for i, a in sent.items() if parse_ms(a["decided_at"]) + 2 * DAY < until}
    assert {t["action_id"] for t in trials} == closed and len(closed) == 40
    for trial in trials:
        action = sent[trial["action_id"]]
        assert (trial["channel"], trial["template"]) == (action["channel"], action["template"])
        assert trial["reward"] == (1.0 if feedback_for(action) else 0.0)
    assert result.summary()["pending_at_end"]["trials"] == {"nudge": 40}  # the last two days'
    learned = result.summary()["learning"]
    assert learned["trials"]["learning"]["trials"] + learned["trials"]["control"]["trials"] == 40
    told = concierge("lift", str(result.out))
    assert told.returncode == 0, told.stderr
    assert "learning customers" in told.stdout and "too few to say anything" in told.stdout
    shown = json.loads(concierge("lift", str(result.out), "--json").stdout)
    assert shown["actions"] == {} and shown["learning"] == learned["lift"]
    page = result.out / "report.html"
    assert concierge("report", str(result.out)).returncode == 0
    text = page.read_text()
    assert "<h2>Learning</h2>" in text and 'aria-label="Learning, ' in text
    assert "channel push" in text and "control (static policy)" in text


@pytest.mark.scale  # replays day by day: the suite keeps under 10 minutes
def test_explain_says_what_learning_chose_and_why(tmp_path, replay):
    result, events, _ = closed_loop(tmp_path, replay, customers=4, days=4)
    told = concierge(
        "explain", "--replay", str(result.out), "--events", str(events), "email:c2@example.com"
    )
    assert told.returncode == 0, told.stderr
    lines = [line for line in told.stdout.splitlines() if "nudge on " in line]
    assert len(lines) == 4
    assert (
        "email over push: 0.50 per send (the prior alone) against 0.50 (the prior alone)"
        in lines[0]
    )
    assert "trials of theirs" in lines[3] and "chosen with probability" in lines[3]
