"""Send-time learning: an action that could be sent now waits for the customer's likeliest
local hour.

A customer's trials also count as evidence of the local hour they were sent in (24 arms).
An hour's estimate is its faded reward per trial shrunk toward the customer's own, over
every hour (itself shrunk toward the policy's prior): an hour never tried is as good as the
customer's average, so a customer of whom nothing is known is never kept waiting.

When an action of a category that may wait could be sent now, its expected value now (the
moment's decayed value times the hour's estimate) is set against that at the start of
each later local hour before ``wait_up_to`` has passed since the moment opened: waiting
costs value, as the moment decays. If a later hour's is higher, the action is deferred to
its start (rule ``learning.timing``), as quiet hours defer one, and decided again then
(the guardrails asked again). An hour is passed over where quiet hours would hold the
action back, and the search stops where the moment's decayed value would fall below the
action's ``min_value``. It does not explore: a customer's hours are learned from when their
moments happen to open.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo

from operators.learning.choice import shrunk
from operators.learning.evidence import HOUR as HOUR_KIND
from operators.learning.evidence import evidence_of, fade
from operators.model.state import CustomerState
from operators.policy.compiled import Learning

HOUR_MS = 3_600_000
TIMING = "learning.timing"
"""The rule a decision deferred for a likelier hour names."""


def local_hour(at: int, tz: tzinfo) -> int:
    """The local hour of day (0-23) at ``at``."""
    return datetime.fromtimestamp(at / 1000, tz).hour


def hour_arm(hour: int) -> str:
    return f"{hour:02d}"


def likeliest_hour(
    learning: Learning,
    state: CustomerState,
    tz: tzinfo,
    now: int,
    latest: int,
    value_at: Callable[[int], float],
    min_value: float,
    quiet: Callable[[int], bool],
) -> tuple[int, float, float] | None:
    """When to send instead of now: the start of the later local hour, up to ``latest``,
    whose expected value is highest and above now's (the earliest of equals), with its
    expected value and now's; None to send now. ``value_at(t)``: the moment's value at
    ``t`` (the search stops where it falls below ``min_value``); ``quiet(t)``: quiet hours
    would hold the action back at ``t`` (that hour is passed over)."""
    average = _average(learning, state, now)
    current = value_at(now) * _estimate(learning, state, average, local_hour(now, tz), now)
    local = datetime.fromtimestamp(now / 1000, tz)
    start = now - (local.minute * 60 + local.second) * 1000 - local.microsecond // 1000
    best: tuple[int, float] | None = None
    at = start + HOUR_MS
    while at <= latest and (value := value_at(at)) >= min_value:
        if not quiet(at):
            expected = value * _estimate(learning, state, average, local_hour(at, tz), now)
            if expected > (best[1] if best is not None else current):
                best = (at, expected)
        at += HOUR_MS
    return None if best is None else (best[0], best[1], current)


def _average(learning: Learning, state: CustomerState, now: int) -> float:
    """The customer's reward per trial over every hour, faded and shrunk toward the prior."""
    trials = reward = 0.0
    for known in state.evidence:
        if known.kind == HOUR_KIND:
            weight = fade(learning, known.at, now)
            trials += known.trials * weight
            reward += known.reward * weight
    return shrunk(learning, trials, reward, learning.prior_reward)


def _estimate(
    learning: Learning, state: CustomerState, average: float, hour: int, now: int
) -> float:
    """What the customer's sends at local ``hour`` earned, shrunk toward their average."""
    trials, reward = evidence_of(learning, state, HOUR_KIND, "", hour_arm(hour), now)
    return shrunk(learning, trials, reward, average)
