"""A merge between two journeys: the handover of the retired context
(operators/model/handover.py, journey.py)."""

from operators.context.consent import has_consent
from operators.journey import Journey
from operators.model.handover import Adopt, Retire
from operators.model.records import Action
from operators.model.state import CustomerState
from operators.model.timefmt import parse_ms
from tests.conftest import make_event

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def journey(policy, name, *events):
    j = Journey(CustomerState(name))
    for event in events:
        j.on_event(policy, event)
    return j


def view(at, event_id):
    return make_event("product_view", at, {"product_id": "p-42"}, event_id=event_id)


def test_the_survivor_holds_its_events_until_the_retired_context_arrives(policy):
    web = journey(
        policy, "cus_web", view("2026-11-20T10:00:00Z", "w1"), view("2026-11-21T10:00:00Z", "w2")
    )
    store = journey(
        policy, "cus_store", make_event("consent_changed", "2026-11-19T09:00:00Z", GRANT)
    )
    web.on_adopt(policy, Adopt("m1", "cus_store"))
    assert web.on_event(policy, view("2026-11-22T10:00:00Z", "w3")) == []
    transfer = store.on_retire(policy, Retire("m1", "cus_web"))[1]
    assert transfer is not None and store.retired
    outputs, handed = web.on_transfer(policy, transfer)
    assert handed is None
    (action,) = [o for o in outputs if isinstance(o, Action)]
    assert action.triggered_by == ("w1", "w2", "w3")
    assert has_consent(web.state, "marketing", "push")


def test_a_transfer_delivered_twice_is_folded_in_once(policy):
    web = journey(policy, "cus_web")
    store = journey(policy, "cus_store", view("2026-11-20T10:00:00Z", "s1"))
    web.on_adopt(policy, Adopt("m1", "cus_store"))
    transfer = store.on_retire(policy, Retire("m1", "cus_web"))[1]
    web.on_transfer(policy, transfer)
    before = dict(web.state.windows)
    web.on_adopt(policy, Adopt("m1", "cus_store"))
    assert not web.awaiting
    assert web.on_transfer(policy, transfer) == ([], None)
    assert web.state.windows == before


def test_timers_wait_while_a_merge_is_pending(policy):
    web = journey(
        policy,
        "cus_web",
        make_event("consent_changed", "2026-11-20T09:00:00Z", GRANT),
        make_event("checkout_started", "2026-11-20T10:00:00Z"),
    )
    web.on_adopt(policy, Adopt("m1", "cus_store"))
    next_day = parse_ms("2026-11-21T10:00:00Z")
    assert web.fire_due(policy, next_day, inclusive=True) == []
    store = journey(policy, "cus_store", make_event("purchase", "2026-11-20T10:10:00Z"))
    web.on_transfer(policy, store.on_retire(policy, Retire("m1", "cus_web"))[1])
    # The purchase on the other profile came after the checkout: no cart reminder.
    assert web.fire_due(policy, next_day, inclusive=True) == []
    assert "checkout_abandoned" not in web.state.pending


def test_a_profile_retiring_while_it_waits_hands_over_after_its_own_merge(policy):
    middle = journey(policy, "cus_mid", view("2026-11-20T10:00:00Z", "m1"))
    middle.on_adopt(policy, Adopt("first", "cus_old"))
    middle.on_event(policy, view("2026-11-21T10:00:00Z", "m2"))
    assert middle.on_retire(policy, Retire("second", "cus_final")) == ([], None)
    old = journey(policy, "cus_old", view("2026-11-19T10:00:00Z", "o1"))
    _, handed = middle.on_transfer(policy, old.on_retire(policy, Retire("first", "cus_mid"))[1])
    assert handed is not None and handed.survivor == "cus_final" and middle.retired
    events = [e for _, e in handed.state["windows"][0][2]]
    assert events == ["o1", "m1", "m2"]


def test_a_transfer_that_comes_before_its_adopt_notice_waits_for_it(policy):
    web = journey(policy, "cus_web", view("2026-11-20T10:00:00Z", "w1"))
    store = journey(
        policy, "cus_store", make_event("consent_changed", "2026-11-19T09:00:00Z", GRANT)
    )
    transfer = store.on_retire(policy, Retire("m1", "cus_web"))[1]
    assert web.on_transfer(policy, transfer) == ([], None)
    assert not has_consent(web.state, "marketing", "push")
    web.on_adopt(policy, Adopt("m1", "cus_store"))
    assert has_consent(web.state, "marketing", "push") and not web.awaiting


def test_a_profile_idle_past_eviction_is_forgotten_before_it_is_merged(policy):
    """Replay evicts lazily: a merge must see what Kafka mode's wall clock left."""
    import dataclasses

    short = dataclasses.replace(policy, evict_idle_after=30 * 86_400_000)
    old = Journey(CustomerState("cus_old"))
    grant = make_event(
        "consent_changed",
        "2024-01-01T09:00:00Z",
        {"purpose": "marketing", "channel": "*", "granted": True},
    )
    old.on_event(short, grant)
    retire = Retire("m-1", "cus_new", at=parse_ms("2025-03-02T10:00:00Z"))
    _, handed = old.on_retire(short, retire)
    assert handed is not None and handed.state["consent"] == []
    assert old.evicted == 1


def test_an_event_between_two_merges_is_handled_with_the_first_merge_only(policy):
    """However late the first context arrives, the second merge never folds in ahead of the
    events the identity step sent between them: their windows do not see its views."""
    device = journey(policy, "cus_device", view("2026-11-20T10:00:00Z", "d1"))
    anon = journey(
        policy, "cus_anon", view("2026-11-20T15:00:00Z", "a1"), view("2026-11-20T15:01:00Z", "a2")
    )
    email = journey(
        policy, "cus_email", make_event("consent_changed", "2026-11-20T09:00:00Z", GRANT)
    )
    email.on_adopt(policy, Adopt("m1", "cus_device", at=parse_ms("2026-11-20T10:00:30Z")))
    email.on_event(policy, view("2026-11-20T10:01:00Z", "e1"))
    email.on_event(policy, view("2026-11-20T10:02:00Z", "e2"))
    email.on_adopt(policy, Adopt("m2", "cus_anon", at=parse_ms("2026-11-20T15:02:00Z")))
    second = anon.on_retire(policy, Retire("m2", "cus_email"))[1]
    assert email.on_transfer(policy, second) == ([], None), "the second merge went first"
    first = device.on_retire(policy, Retire("m1", "cus_email"))[1]
    outputs, handed = email.on_transfer(policy, first)
    assert handed is None and not email.queue and email.adopted == {"m1", "m2"}
    (action,) = [o for o in outputs if isinstance(o, Action)]
    # The third view (e2) completes d1, e1, e2 at 10:02, before the anonymous views.
    assert action.triggered_by == ("d1", "e1", "e2")
    assert action.decided_at == parse_ms("2026-11-20T10:02:00Z")
