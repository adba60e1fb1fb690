"""Two profiles found to be one person: their contexts combine (operators/identity/merging.py)."""

from operators.context.consent import has_consent
from operators.identity.merging import merge_states
from operators.journey import Journey
from operators.model.records import Action
from operators.model.state import (
    AttributeWord,
    CustomerState,
    Evidence,
    MomentKey,
    Trial,
    Watch,
)
from tests.conftest import make_event


def customer(policy, *events, name="cus_x"):
    journey = Journey(CustomerState(name))
    for event in events:
        journey.on_event(policy, event)
    return journey.state


def consent(at, channel, granted):
    return make_event(
        "consent_changed", at, {"purpose": "marketing", "channel": channel, "granted": granted}
    )


def view(at, event_id, product="p-42"):
    return make_event("product_view", at, {"product_id": product}, event_id=event_id)


def test_windows_merge_in_time_order_so_the_next_view_completes_the_signal(policy):
    web = customer(
        policy,
        consent("2026-11-19T09:00:00Z", "*", True),
        view("2026-11-20T10:00:00Z", "w1"),
        name="cus_web",
    )
    app = customer(policy, view("2026-11-21T10:00:00Z", "a1"), name="cus_app")
    merge_states(policy, web, app)
    outputs = Journey(web).on_event(policy, view("2026-11-22T10:00:00Z", "w2"))
    (action,) = [o for o in outputs if isinstance(o, Action)]
    assert action.triggered_by == ("w1", "a1", "w2")


def test_an_event_seen_by_both_profiles_counts_once(policy):
    one = customer(policy, view("2026-11-20T10:00:00Z", "same"))
    two = customer(policy, view("2026-11-20T10:00:00Z", "same"), view("2026-11-20T11:00:00Z", "b"))
    merge_states(policy, one, two)
    assert [e for _, e in one.windows[("repeat_product_interest", "p-42")]] == ["same", "b"]


def test_a_revocation_on_either_profile_survives_the_merge(policy):
    granted = customer(policy, consent("2026-11-20T09:00:00Z", "*", True))
    revoked_sms = customer(policy, consent("2026-11-01T09:00:00Z", "sms", False))
    merge_states(policy, granted, revoked_sms)
    assert not has_consent(granted, "marketing", "sms")
    assert has_consent(granted, "marketing", "email")


def test_consent_is_not_invented_by_a_merge(policy):
    silent = customer(policy, view("2026-11-20T10:00:00Z", "v"))
    also_silent = customer(policy, view("2026-11-20T11:00:00Z", "w"))
    merge_states(policy, silent, also_silent)
    assert not has_consent(silent, "marketing", "email")


def test_cooldowns_keep_the_latest_send_and_timers_the_latest_activity(policy):
    one = customer(policy, make_event("page_view", "2026-11-20T10:00:00Z"))
    two = customer(policy, make_event("page_view", "2026-11-25T10:00:00Z"))
    one.cooldowns[("product_nudge", "p-42")] = 1
    two.cooldowns[("product_nudge", "p-42")] = 5
    merge_states(policy, one, two)
    assert one.cooldowns[("product_nudge", "p-42")] == 5
    assert one.pending["inactive"].due == two.pending["inactive"].due


def test_a_state_survives_its_json_record_unchanged(policy):
    import orjson

    from operators.model.state_records import state_from_record, state_to_record

    state = customer(
        policy,
        consent("2026-11-19T09:00:00Z", "sms", False),
        view("2026-11-20T10:00:00Z", "a"),
        view("2026-11-21T10:00:00Z", "b"),
        view("2026-11-22T10:00:00Z", "c"),
        make_event("checkout_started", "2026-11-22T11:00:00Z"),
        make_event("complaint", "2026-11-22T12:00:00Z", {"text": "dad is in hospital"}),
        make_event("purchase", "2026-11-22T13:00:00Z", {"product_id": "p-1"}),
    )
    state.cooldowns[("help_offer", None)] = 5
    state.deferred[MomentKey("browse_intent", "p-9")] = 7
    state.timezone = ("Asia/Tokyo", 6)
    state.watches = (Watch(9, "purchase", "cus_x.product_nudge.0", "product_nudge", True, 8),)
    state.attributes = (AttributeWord("region", "ES", 4),)
    state.identifier_kinds = ("device_id", "email")
    state.bounced = (("email", 3),)
    state.trials = (Trial(12, "cus_x.product_nudge.1", "product_nudge", "push", "t", 1.0),)
    state.evidence = (Evidence("channel", "", "push", 2.5, 1.0, 10),)
    state.sends = [state.sends[0]._replace(bounced=True), *state.sends[1:]] if state.sends else []
    empty = [name for name in CustomerState.__slots__ if not getattr(state, name)]
    assert empty == [], "the record round trip should cover every part of the state"
    record = orjson.loads(orjson.dumps(state_to_record(state)))
    restored = state_from_record(record)
    assert state_to_record(restored) == state_to_record(state)
    later = view("2026-11-23T10:00:00Z", "d")
    assert Journey(restored).on_event(policy, later) == Journey(state).on_event(policy, later)


def test_an_awaited_event_on_either_profile_cancels_the_other_profiles_timer(policy):
    checkout = customer(policy, make_event("checkout_started", "2026-11-20T10:00:00Z"))
    bought_elsewhere = customer(policy, make_event("purchase", "2026-11-20T10:05:00Z"))
    merge_states(policy, checkout, bought_elsewhere)
    assert "checkout_abandoned" not in checkout.pending

    checkout = customer(policy, make_event("checkout_started", "2026-11-20T10:00:00Z"))
    bought_before = customer(policy, make_event("purchase", "2026-11-20T09:00:00Z"))
    merge_states(policy, checkout, bought_before)
    assert "checkout_abandoned" in checkout.pending


def nudged_twice(policy, name, products, day):
    events = [consent("2026-11-01T09:00:00Z", "*", True)]
    for n, product in enumerate(products):
        events += [
            view(f"2026-11-{day}T1{h}:0{n}:00Z", f"{name}-{product}-{h}", product)
            for h in (0, 1, 2)
        ]
    return customer(policy, *events, name=name)


def test_caps_count_the_sends_of_both_profiles_after_a_merge(policy):
    phone = nudged_twice(policy, "cus_phone", ("a", "b"), 16)
    laptop = nudged_twice(policy, "cus_laptop", ("c",), 17)
    assert len(phone.sends) == 2 and len(laptop.sends) == 1
    merge_states(policy, phone, laptop)
    assert len(phone.sends) == 3
    outputs = []
    for h in (0, 1, 2):
        outputs += Journey(phone).on_event(policy, view(f"2026-11-18T1{h}:00:00Z", f"d-{h}", "d"))
    (decision,) = [o for o in outputs if not isinstance(o, Action)]
    assert decision.outcome.value == "capped" and decision.rule == "marketing-weekly"


def test_a_deferred_decision_survives_a_merge(policy):
    night = customer(
        policy,
        consent("2026-11-01T09:00:00Z", "*", True),
        *[view(f"2026-11-20T2{m}:00:00Z", f"n-{m}") for m in (0, 1, 2)],
    )
    assert night.deferred
    other = customer(policy, make_event("page_view", "2026-11-20T22:30:00Z"), name="cus_y")
    merge_states(policy, other, night)
    assert other.deferred == night.deferred
