"""Absence signals: timers an awaited event cancels (operators/context/absences.py)."""

from operators.context.absences import due_absences, watch_absences
from operators.model.state import CustomerState
from operators.model.timefmt import parse_ms
from tests.conftest import make_event


def test_checkout_without_purchase_fires_after_thirty_minutes(policy):
    state = CustomerState("cus_1")
    watch_absences(
        state,
        policy.absence_signals,
        make_event("checkout_started", "2026-11-20T10:00:00Z", event_id="c-1"),
    )
    assert due_absences(state, state.pending["checkout_abandoned"].due, inclusive=False) == []
    fired = due_absences(state, state.pending["checkout_abandoned"].due, inclusive=True)
    assert [(f.signal, f.triggered_by) for f in fired] == [("checkout_abandoned", ("c-1",))]
    assert "checkout_abandoned" not in state.pending


def test_a_purchase_cancels_the_checkout_timer(policy):
    state = CustomerState("cus_1")
    watch_absences(
        state, policy.absence_signals, make_event("checkout_started", "2026-11-20T10:00:00Z")
    )
    watch_absences(state, policy.absence_signals, make_event("purchase", "2026-11-20T10:29:00Z"))
    assert "checkout_abandoned" not in state.pending
    assert "inactive" in state.pending


def test_any_event_restarts_the_inactivity_timer(policy):
    state = CustomerState("cus_1")
    watch_absences(state, policy.absence_signals, make_event("page_view", "2026-11-20T10:00:00Z"))
    first = state.pending["inactive"].due
    watch_absences(state, policy.absence_signals, make_event("page_view", "2026-11-21T10:00:00Z"))
    assert state.pending["inactive"].due == first + 86_400_000


def test_a_purchase_from_before_the_checkout_does_not_cancel_it(policy):
    """Out of order: the purchase is older than the checkout it arrives after."""
    state = CustomerState("cus_1")
    signals = policy.absence_signals
    watch_absences(state, signals, make_event("checkout_started", "2026-11-20T10:00:00Z"))
    watch_absences(state, signals, make_event("purchase", "2026-11-20T09:50:00Z"))
    assert "checkout_abandoned" in state.pending


def test_a_checkout_arriving_after_its_purchase_starts_no_timer(policy):
    state = CustomerState("cus_1")
    signals = policy.absence_signals
    watch_absences(state, signals, make_event("purchase", "2026-11-20T10:05:00Z"))
    watch_absences(state, signals, make_event("checkout_started", "2026-11-20T10:00:00Z"))
    assert "checkout_abandoned" not in state.pending


def test_an_older_event_does_not_pull_the_inactivity_timer_back(policy):
    state = CustomerState("cus_1")
    signals = policy.absence_signals
    watch_absences(state, signals, make_event("page_view", "2026-11-21T10:00:00Z"))
    due = state.pending["inactive"].due
    watch_absences(state, signals, make_event("page_view", "2026-11-20T10:00:00Z"))
    assert state.pending["inactive"].due == due


def test_due_absences_in_due_order(policy):
    state = CustomerState("cus_1")
    signals = policy.absence_signals
    watch_absences(state, signals, make_event("checkout_started", "2026-11-20T10:00:00Z"))
    fired = due_absences(state, parse_ms("2027-02-01T00:00:00Z"), inclusive=True)
    assert [f.signal for f in fired] == ["checkout_abandoned", "inactive"]
    assert [f.at for f in fired] == sorted(f.at for f in fired)
    assert state.pending == {}
