"""A closed loop for learning: customers with planted responsiveness, and outcomes drawn
from the plant for each sent action, deterministically from its action id.

Two segments: ``north`` clicks push four times as often as email, ``south`` the reverse;
the discount template converts one and a half times as often in the north and three
quarters as often in the south. Each customer views a product every morning (one
decision a day); a click comes an hour after a send, when the action id's draw says so.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from operators.journey import Journey
from operators.model.records import Action, Decision, Outcome
from operators.model.state import CustomerState
from operators.model.timefmt import format_ms, parse_ms
from operators.policy.compiled import Policy
from operators.policy.load import load_policy
from tests.conftest import event_dict, make_event, write_jsonl

POLICY = """
version: "1"
defaults: {timezone: UTC}
channels: [email, push]
categories: {marketing: 1}
signals:
  browsing: {on: product_view, at_least: 1, within: 1h}
moments:
  interest: {from: browsing, value: 10, half_life: 1d}
actions:
  nudge:
    moment: interest
    channels: [email, push]
    category: marketing
    template: nudge-plain
    variants: [nudge-discount]
    min_value: 1
"""
LEARNING = """
learning:
  rewards: {clicked: 1}
  window: 2d
  half_life: 30d
  explore: 0.05
  prior: {reward: 0.5, trials: 2}
  control: 0.2
  salt: loop-2026
"""
BASE = {"north": {"push": 0.4, "email": 0.1}, "south": {"push": 0.1, "email": 0.4}}
DISCOUNT = {"north": 1.5, "south": 0.75}
BEST = 0.5
"""The plant's best possible click rate, on average over the two segments (north: push with
the discount, 0.6; south: email, plain, 0.4)."""
START = parse_ms("2026-11-02T00:00:00Z")
DAY = 86_400_000


def learning_policy(learning: str = LEARNING) -> Policy:
    return load_policy(POLICY + learning, "loop")


def segment(n: int) -> str:
    """Customer ``n``'s segment: even ones are in the north."""
    return "north" if n % 2 == 0 else "south"


def click_rate(n: int, channel: str, template: str) -> float:
    region = segment(n)
    lift = DISCOUNT[region] if template == "nudge-discount" else 1.0
    return BASE[region][channel] * lift


def plant_clicks(action_id: str, n: int, channel: str, template: str) -> bool:
    """Whether the plant has customer ``n`` click an action: a draw from its action id."""
    digest = hashlib.sha256(f"plant|{action_id}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    return draw < click_rate(n, channel, template)


def clicks(action: Action) -> bool:
    """Whether the plant has the customer click ``action`` (customer ids are ``cus_<n>``)."""
    n = int(action.customer_id.rsplit("_", 1)[1])
    return plant_clicks(action.action_id, n, action.channel, action.template)


@dataclass
class Loop:
    """Customers living ``days`` days of the plant under ``policy``."""

    policy: Policy
    customers: int
    journeys: dict[str, Journey] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    clicked: set[str] = field(default_factory=set)

    def run(self, days: int) -> Loop:
        for day in range(days):
            self.day(day)
        return self

    def day(self, day: int) -> None:
        for n in range(self.customers):
            customer = f"cus_{n:05d}"
            journey = self.journeys.setdefault(customer, Journey(CustomerState(customer)))
            at = START + day * DAY + 10 * 3_600_000 + n * 1_000
            view = make_event(
                "product_view", format_ms(at), {"product_id": "p-1"}, f"view-{n}-{day}"
            )
            for output in journey.on_event(self.policy, view):
                if isinstance(output, Decision):
                    self.decisions.append(output)
                elif isinstance(output, Action):
                    self.actions.append(output)
                    if clicks(output):
                        self.clicked.add(output.action_id)
                        feedback = make_event(
                            "feedback",
                            format_ms(output.decided_at + 3_600_000),
                            {"action_id": output.action_id, "outcome": "clicked"},
                            f"click-{n}-{day}",
                        )
                        journey.on_event(self.policy, feedback)

    def sends(self, first_day: int, last_day: int, control: bool | None = None) -> list[Action]:
        """The sends decided on days [first_day, last_day), to the learning customers
        (control False), to the control share (True) or to everyone (None)."""
        sent = [a for a in self.actions if first_day <= (a.decided_at - START) // DAY < last_day]
        if control is not None:
            learned = {d.action_id: d.learning for d in self.decisions if d.outcome is Outcome.SENT}
            sent = [a for a in sent if (learned[a.action_id].control is control)]
        return sent

    def rate(self, first_day: int, last_day: int, control: bool | None = None) -> float:
        """The click rate of :meth:`sends`."""
        sent = self.sends(first_day, last_day, control)
        return sum(a.action_id in self.clicked for a in sent) / len(sent)

    def rate_and_error(self, first_day: int, last_day: int, control: bool | None = None):
        """The click rate of :meth:`sends`, and its standard error."""
        rate = self.rate(first_day, last_day, control)
        return rate, math.sqrt(rate * (1 - rate) / len(self.sends(first_day, last_day, control)))


def view_record(n: int, day: int, start: int = START, hour: int = 10) -> dict[str, Any]:
    """Customer ``n``'s view on ``day`` after ``start`` (in the morning, or at ``hour``), as a
    producer writes it."""
    at = format_ms(start + day * DAY + hour * 3_600_000 + n * 1_000)
    return event_dict(
        "product_view", at, {"product_id": "p-1"}, f"view-{n}-{day}", email=f"c{n}@example.com"
    )


def feedback_for(action: dict[str, Any]) -> dict[str, Any] | None:
    """The plant's answer to an action record of a replay (its customer is the ``n`` of the
    view that triggered it): a click an hour after it, or None."""
    n = int(action["triggered_by"][0].split("-")[1])
    if not plant_clicks(action["action_id"], n, action["channel"], action["template"]):
        return None
    at = format_ms(parse_ms(action["decided_at"]) + 3_600_000)
    record = event_dict(
        "feedback", at, {"action_id": action["action_id"], "outcome": "clicked"}, f"click-{n}-{at}"
    )
    record.pop("identifiers")
    return record


def customer_of(record: dict[str, Any]) -> int:
    """The plant's number of the customer a decision or action record is about."""
    return int(record["triggered_by"][0].split("-")[1])


def actions_of(result: Any) -> list[dict[str, Any]]:
    """The action records of a replay (tests.scenarios.conftest.ReplayResult)."""
    return [*result.lines("actions.email.jsonl"), *result.lines("actions.push.jsonl")]


def closed_loop(
    tmp_path: Path,
    replay: Any,
    customers: int,
    days: int,
    start: int = START,
    learning: str = LEARNING,
    hour_of: Any = None,
) -> tuple[Any, Path, Path]:
    """Replay ``days`` days from ``start``, a day at a time, each with the plant's answers to
    the days before (customer ``n`` views at ``hour_of(n, day)``, by default 10:00); the
    last replay, the events it read with the answers to its last day, and the policy."""
    policy = tmp_path / "learning.yaml"
    policy.write_text(POLICY + learning)
    views: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    for day in range(days):
        views += [
            view_record(n, day, start, hour_of(n, day) if hour_of else 10) for n in range(customers)
        ]
        story = sorted([*views, *answers], key=lambda e: e["timestamp"])
        events = write_jsonl(tmp_path / f"day-{day}.jsonl", story)
        result = replay(events, "--until", format_ms(start + (day + 1) * DAY), policy=policy)
        assert result.returncode == 0, result.stderr
        today = [a for a in actions_of(result) if (parse_ms(a["decided_at"]) - start) // DAY == day]
        assert len(today) == customers
        answers += [f for f in map(feedback_for, today) if f is not None]
    story = sorted([*views, *answers], key=lambda e: e["timestamp"])
    return result, write_jsonl(tmp_path / "answered.jsonl", story), policy
