"""``concierge evaluate``: what a candidate policy would have earned, estimated from a
replay's logged decisions (:mod:`operators.learning.evaluation`).

The reward of each sent decision is what ``learning.rewards`` says its outcomes were worth
within ``learning.window``: the feedback in the events the replay read (by ``action_id``)
and the replay's conversions, each outcome once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from flows.replay import open_events
from operators.learning.evaluation import (
    Candidate,
    Estimate,
    Logged,
    evaluate,
    greedy,
    logged_of,
    preferring,
    static,
)
from operators.model.timefmt import parse_ms
from operators.policy.compiled import Learning

CANDIDATES = "static, greedy or prefer:CHANNEL[,CHANNEL...]"


class EvaluateError(Exception):
    """Input ``evaluate`` cannot use: said in one line."""


def candidate_named(name: str) -> Candidate:
    """The candidate policy ``name`` stands for (see :data:`CANDIDATES`)."""
    if name == "static":
        return static
    if name == "greedy":
        return greedy
    if name.startswith("prefer:") and name[len("prefer:") :].strip(","):
        return preferring(tuple(c for c in name[len("prefer:") :].split(",") if c))
    raise EvaluateError(f"unknown candidate {name!r}: use {CANDIDATES}")


Outcomes = dict[str, list[tuple[int, str]]]
"""Action id -> (when, outcome) of each outcome heard about it."""


def outcomes_of(events: Path, replay: Path, learning: Learning) -> Outcomes:
    """The rewarded outcomes of every action: feedback in ``events``, conversions in the
    replay's ``conversions.jsonl``."""
    heard: Outcomes = defaultdict(list)
    for record in _records(events, open_events):
        props = record.get("properties")
        if record.get("type") != "feedback" or not isinstance(props, dict):
            continue
        action_id, outcome = props.get("action_id"), props.get("outcome")
        at = _time(record.get("timestamp"))
        if isinstance(action_id, str) and outcome in learning.rewards and at is not None:
            heard[action_id].append((at, str(outcome)))
    conversions = replay / "conversions.jsonl"
    if conversions.is_file():
        for record in _records(conversions, Path.open):
            at = _time(record.get("at"))
            kind = record.get("conversion")
            if kind in learning.rewards and at is not None:
                heard[str(record.get("action_id"))].append((at, str(kind)))
    return heard


def logs_of(replay: Path, outcomes: Outcomes, learning: Learning) -> list[Logged]:
    """The sent decisions of the replay that learning logged, with what each earned."""
    decisions = replay / "decisions.jsonl"
    if not decisions.is_file():
        raise EvaluateError(f"no replay output at {replay} (no decisions.jsonl)")
    logs: list[Logged] = []
    for record in _records(decisions, Path.open):
        if record.get("outcome") != "sent":
            continue
        at = _time(record.get("at"))
        action_id = record.get("action_id")
        if at is None or not isinstance(action_id, str):
            continue
        seen = {
            outcome
            for when, outcome in outcomes.get(action_id, ())
            if at <= when <= at + learning.window
        }
        logged = logged_of(record, sum(learning.rewards[outcome] for outcome in seen))
        if logged is not None:
            logs.append(logged)
    if not logs:
        raise EvaluateError(
            f"{decisions} has no sent decision learning logged: replay with a policy that has "
            "a learning section"
        )
    return logs


def as_record(name: str, estimate: Estimate) -> dict[str, Any]:
    return {
        "candidate": name,
        "estimate": estimate.value,
        "interval": [estimate.low, estimate.high] if estimate.value is not None else None,
        "effective_sample_size": round(estimate.effective, 1),
        "matched": estimate.matched,
        "decisions": estimate.decisions,
        "logged": estimate.logged_value,
        "warning": estimate.warning,
    }


def render(name: str, estimate: Estimate) -> str:
    lines = [f"{estimate.decisions:,} sent decisions logged"]
    if estimate.logged_value is not None:
        lines.append(f"  earned, as logged:  {estimate.logged_value:.4f} per decision")
    if estimate.value is None:
        lines.append(f"  {name}: no estimate")
    else:
        assert estimate.low is not None and estimate.high is not None
        lines.append(
            f"  {name}: {estimate.value:.4f} per decision "
            f"(95% interval {estimate.low:.4f} to {estimate.high:.4f})"
        )
        lines.append(
            f"  from {estimate.matched:,} decisions it would have taken alike; "
            f"effective sample size {estimate.effective:,.1f}"
        )
    if estimate.warning is not None:
        lines.append(f"  warning: {estimate.warning}")
    return "\n".join(lines)


def estimate(replay: Path, events: Path, learning: Learning, name: str) -> Estimate:
    candidate = candidate_named(name)
    if not (replay / "decisions.jsonl").is_file():
        raise EvaluateError(f"no replay output at {replay} (no decisions.jsonl)")
    logs = logs_of(replay, outcomes_of(events, replay, learning), learning)
    return evaluate(logs, candidate, learning.explore, learning.control)


def _records(path: Path, opener: Any) -> Iterator[dict[str, Any]]:
    try:
        with opener(path) as lines:
            for line in lines:
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    yield record
    except OSError as err:
        raise EvaluateError(f"cannot read {path}: {err.strerror}") from None


def _time(text: object) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_ms(text)
    except ValueError:
        return None
