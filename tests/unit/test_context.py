from operators.context import (
    CustomerState,
    count,
    due_absences,
    has_consent,
    record_consent,
    watch_absences,
)
from tests.conftest import make_event

VIEW = {"product_id": "p-42"}


def repeat_signal(policy):
    return policy.counting_by_type["product_view"][0]


def views(policy, state, *times, product="p-42"):
    signal = repeat_signal(policy)
    return [
        count(state, signal, make_event("product_view", t, {"product_id": product})) for t in times
    ]


def test_third_view_within_the_window_fires(policy):
    state = CustomerState("cus_1")
    first, second, third = views(
        policy, state, "2026-11-20T10:00:00Z", "2026-11-21T10:00:00Z", "2026-11-22T10:00:00Z"
    )
    assert first is None and second is None
    assert third is not None and third.group == "p-42" and len(third.triggered_by) == 3


def test_exactly_at_the_window_boundary_counts(policy):
    state = CustomerState("cus_1")
    *_, third = views(
        policy, state, "2026-11-20T10:00:00Z", "2026-11-23T10:00:00Z", "2026-11-27T10:00:00Z"
    )
    assert third is not None


def test_one_millisecond_past_the_window_does_not(policy):
    state = CustomerState("cus_1")
    *_, third = views(
        policy, state, "2026-11-20T10:00:00Z", "2026-11-23T10:00:00Z", "2026-11-27T10:00:00.001Z"
    )
    assert third is None


def test_groups_count_apart(policy):
    state = CustomerState("cus_1")
    fired = views(policy, state, "2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z", product="p-1")
    fired += views(policy, state, "2026-11-20T12:00:00Z", product="p-2")
    assert fired == [None, None, None]


def test_a_view_without_a_product_is_not_counted(policy):
    state = CustomerState("cus_1")
    signal = repeat_signal(policy)
    for t in ("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z", "2026-11-20T12:00:00Z"):
        assert count(state, signal, make_event("product_view", t, {})) is None
    assert state.windows == {}


def test_a_late_event_inside_the_window_still_completes_it(policy):
    state = CustomerState("cus_1")
    *_, late = views(
        policy, state, "2026-11-20T10:00:00Z", "2026-11-22T10:00:00Z", "2026-11-21T10:00:00Z"
    )
    assert late is not None


def test_windows_keep_only_what_the_signal_needs(policy):
    state = CustomerState("cus_1")
    views(policy, state, *(f"2026-11-2{d}T10:00:00Z" for d in range(10)))
    assert len(state.windows[("repeat_product_interest", "p-42")]) == 3


def absence(policy, name):
    return next(a for a in policy.absence_signals if a.name == name)


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


def test_consent_is_opt_in_and_the_latest_word_wins(policy):
    state = CustomerState("cus_1")
    assert not has_consent(state, "marketing", "email")

    def consent(channel, granted):
        state.seq += 1
        record_consent(
            state,
            make_event(
                "consent_changed",
                "2026-11-20T10:00:00Z",
                {"purpose": "marketing", "channel": channel, "granted": granted},
            ),
        )

    consent("*", True)
    assert has_consent(state, "marketing", "email") and has_consent(state, "marketing", "sms")
    consent("sms", False)
    assert has_consent(state, "marketing", "email") and not has_consent(state, "marketing", "sms")
    consent("*", False)
    assert not has_consent(state, "marketing", "email")
    consent("email", True)
    assert has_consent(state, "marketing", "email") and not has_consent(state, "marketing", "push")
