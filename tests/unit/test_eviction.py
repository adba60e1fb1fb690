"""Eviction: when an idle customer may be forgotten (operators/eviction.py)."""

from operators.context.absences import watch_absences
from operators.context.moments import open_moments
from operators.context.signals import SignalFired
from operators.decisions.cooldowns import start_cooldown
from operators.eviction import evict_at
from operators.model.state import CustomerState, Spell
from operators.model.timefmt import parse_ms
from tests.conftest import make_event

DAY = 86_400_000


def idle_customer(policy):
    state = CustomerState("cus_1")
    state.last_event_at = parse_ms("2026-01-01T00:00:00Z")
    return state


def test_an_idle_customer_is_evictable_after_the_policy_time(policy):
    state = idle_customer(policy)
    assert evict_at(policy, state) == state.last_event_at + policy.evict_idle_after


def test_a_pending_timer_keeps_a_customer(policy):
    state = idle_customer(policy)
    watch_absences(state, policy.absence_signals, make_event("page_view", "2026-01-01T00:00:00Z"))
    assert evict_at(policy, state) is None


def test_a_running_cooldown_suppression_or_valuable_moment_keeps_a_customer(policy):
    base = idle_customer(policy)
    idle = base.last_event_at + policy.evict_idle_after
    far = idle + 400 * DAY

    state = idle_customer(policy)
    start_cooldown(state, policy.actions["win_back_offer"], None, far)
    assert evict_at(policy, state) == far + 30 * DAY

    state = idle_customer(policy)
    state.suppressions[("sensitive", None)] = Spell(far - DAY, far)
    assert evict_at(policy, state) == far

    state = idle_customer(policy)
    fired = SignalFired("inactive", None, far, ("e-1",))
    open_moments(state, policy, fired, "e-1")
    # win_back: 30, halving every 7d, falls below min_value 10 after log2(3) half-lives
    assert far + 11 * DAY < evict_at(policy, state) < far + 12 * DAY
