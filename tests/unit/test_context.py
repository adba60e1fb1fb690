"""Customer context: absences, consent, text signals, suppressions, eviction
(operators/context.py)."""

from operators.context import (
    CustomerState,
    due_absences,
    evict_at,
    has_consent,
    names_a_phrase,
    open_moments,
    record_consent,
    record_sent,
    watch_absences,
)
from operators.timefmt import parse_ms
from tests.conftest import make_event

DAY = 86_400_000


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
            policy,
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


def test_consent_for_purposes_and_channels_the_policy_does_not_name_is_not_kept(policy):
    state = CustomerState("cus_1")
    for purpose, channel in (("research", "email"), ("marketing", "fax")):
        record_consent(
            policy,
            state,
            make_event(
                "consent_changed",
                "2026-11-20T10:00:00Z",
                {"purpose": purpose, "channel": channel, "granted": True},
            ),
        )
    assert state.consent == {}


def text_signal(policy):
    return policy.text_by_type["complaint"][0]


def test_a_sensitive_phrase_fires_the_signal_with_only_the_event_id(policy):
    event = make_event(
        "complaint", "2026-11-20T10:00:00Z", {"text": "My mother PASSED  away last week"}, "c-1"
    )
    fired = names_a_phrase(text_signal(policy), event)
    assert fired is not None
    assert (fired.signal, fired.group, fired.triggered_by) == (
        "sensitive_circumstance",
        None,
        ("c-1",),
    )


def test_text_matching_is_whole_words_and_ignores_case_and_accents(policy):
    signal = text_signal(policy)

    def says(text):
        return names_a_phrase(
            signal, make_event("complaint", "2026-11-20T10:00:00Z", {"text": text})
        )

    assert says("Ella está en el HÓSPITAL")
    assert says("a Funeral.")
    assert says("passed-away")
    assert not says("a deathly dull wait")
    assert not says("the hospitality was poor")
    assert not says("passed, then went away")
    assert not says(None)
    assert not says(["hospital"])


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
    record_sent(state, policy.actions["win_back_offer"], None, far)
    assert evict_at(policy, state) == far + 30 * DAY

    state = idle_customer(policy)
    state.suppressions[("sensitive", None)] = (far - DAY, far)
    assert evict_at(policy, state) == far

    state = idle_customer(policy)
    fired = due_absences_signal("inactive", far)
    open_moments(state, policy, fired, "e-1")
    # win_back: 30, halving every 7d, falls below min_value 10 after log2(3) half-lives
    assert far + 11 * DAY < evict_at(policy, state) < far + 12 * DAY


def due_absences_signal(name, at):
    from operators.context import SignalFired

    return SignalFired(name, None, at, ("e-1",))


def test_due_absences_in_due_order(policy):
    state = CustomerState("cus_1")
    signals = policy.absence_signals
    watch_absences(state, signals, make_event("checkout_started", "2026-11-20T10:00:00Z"))
    fired = due_absences(state, parse_ms("2027-02-01T00:00:00Z"), inclusive=True)
    assert [f.signal for f in fired] == ["checkout_abandoned", "inactive"]
    assert not has_consent(state, "marketing", "email")
