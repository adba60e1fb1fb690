"""One customer's journey, event by event: context -> moments -> decisions
(operators/journey.py)."""

import dataclasses

import jsonschema
import orjson
import pytest

import schemas
from operators.journey import GATED_RETRY_MS, Journey
from operators.model.handover import Adopt
from operators.model.records import Action, Decision, Outcome
from operators.model.state import CustomerState
from operators.model.timefmt import parse_ms
from tests.conftest import make_event

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}
DAY = 86_400_000


def run(policy, events, journey=None):
    journey = journey or Journey(CustomerState("cus_ana"))
    outputs = []
    for event in events:
        outputs += journey.on_event(policy, event)
    return journey, outputs


def three_views(start_day=20, product="p-42"):
    return [
        make_event(
            "product_view",
            f"2026-11-{start_day + i}T10:00:00Z",
            {"product_id": product},
            event_id=f"v-{start_day + i}",
        )
        for i in range(3)
    ]


def decisions(outputs):
    return [o for o in outputs if isinstance(o, Decision)]


def actions(outputs):
    return [o for o in outputs if isinstance(o, Action)]


def test_repeat_interest_with_consent_sends_a_nudge_on_the_first_channel(policy):
    consent = make_event("consent_changed", "2026-11-19T09:00:00Z", GRANT)
    _, outputs = run(policy, [consent, *three_views()])
    (decision,) = decisions(outputs)
    (action,) = actions(outputs)
    assert decision.outcome is Outcome.SENT and decision.action_id == action.action_id
    assert (action.action, action.channel, action.template) == (
        "product_nudge",
        "push",
        "product-nudge",
    )
    assert action.value == 40.0 and action.group == "p-42"
    assert action.triggered_by == ("v-20", "v-21", "v-22")
    assert action.decided_at == parse_ms("2026-11-22T10:00:00Z")


def test_marketing_without_consent_is_not_sent(policy):
    _, outputs = run(policy, three_views())
    (decision,) = decisions(outputs)
    assert decision.outcome is Outcome.NO_CONSENT and actions(outputs) == []
    assert "marketing" in decision.reason and "push" in decision.reason


def test_an_opt_out_on_one_channel_moves_the_nudge_to_the_next(policy):
    grant = make_event("consent_changed", "2026-11-19T09:00:00Z", GRANT)
    revoke = make_event(
        "consent_changed",
        "2026-11-21T11:00:00Z",
        {"purpose": "marketing", "channel": "push", "granted": False},
    )
    _, outputs = run(policy, [grant, *three_views()[:2], revoke, three_views()[2]])
    (decision,) = decisions(outputs)
    assert (decision.outcome, decision.channel) == (Outcome.SENT, "email")


def test_an_opt_out_everywhere_is_honoured_for_the_next_decision(policy):
    grant = make_event("consent_changed", "2026-11-19T09:00:00Z", GRANT)
    revoke = make_event("consent_changed", "2026-11-21T11:00:00Z", {**GRANT, "granted": False})
    _, outputs = run(policy, [grant, *three_views()[:2], revoke, three_views()[2]])
    (decision,) = decisions(outputs)
    assert decision.outcome is Outcome.NO_CONSENT and decision.reason == (
        "no marketing consent on push"
    )


def test_service_actions_need_no_marketing_consent(policy):
    searches = [make_event("help_search", f"2026-11-20T10:{m:02d}:00Z") for m in (0, 20, 40)]
    _, outputs = run(policy, searches)
    (action,) = actions(outputs)
    assert (action.action, action.channel, action.category) == ("help_offer", "in_app", "service")


def test_a_fourth_view_in_the_cooldown_is_recorded_not_sent(policy):
    consent = make_event("consent_changed", "2026-11-19T09:00:00Z", GRANT)
    fourth = make_event("product_view", "2026-11-23T10:00:00Z", {"product_id": "p-42"})
    _, outputs = run(policy, [consent, *three_views(), fourth])
    assert [d.outcome for d in decisions(outputs)] == [Outcome.SENT, Outcome.COOLDOWN]
    assert "2026-11-25T10:00:00Z" in decisions(outputs)[1].reason
    assert len(actions(outputs)) == 1


def test_a_timer_decides_as_of_its_due_time(policy):
    consent = make_event("consent_changed", "2026-11-20T09:00:00Z", GRANT)
    checkout = make_event("checkout_started", "2026-11-20T10:00:00Z", event_id="c-1")
    journey, outputs = run(policy, [consent, checkout])
    assert outputs == []
    outputs = journey.fire_due(policy, parse_ms("2026-11-20T12:00:00Z"), inclusive=True)
    (action,) = actions(outputs)
    assert action.action == "cart_recovery" and action.triggered_by == ("c-1",)
    assert action.decided_at == parse_ms("2026-11-20T10:30:00Z")


def test_a_due_timer_fires_before_the_next_event_is_handled(policy):
    consent = make_event("consent_changed", "2026-11-20T09:00:00Z", GRANT)
    checkout = make_event("checkout_started", "2026-11-20T10:00:00Z")
    late_purchase = make_event("purchase", "2026-11-20T10:45:00Z")
    _, outputs = run(policy, [consent, checkout, late_purchase])
    assert [a.action for a in actions(outputs)] == ["cart_recovery"]


def test_a_purchase_in_time_means_no_cart_recovery(policy):
    consent = make_event("consent_changed", "2026-11-20T09:00:00Z", GRANT)
    checkout = make_event("checkout_started", "2026-11-20T10:00:00Z")
    purchase = make_event("purchase", "2026-11-20T10:30:00Z")
    journey, outputs = run(policy, [consent, checkout, purchase])
    outputs += journey.fire_due(policy, parse_ms("2026-11-21T00:00:00Z"), inclusive=True)
    assert actions(outputs) == []


def test_a_stale_moment_is_not_sent(policy, reference_policy_path):
    from operators.policy.load import load_policy

    text = reference_policy_path.read_text().replace(
        "min_value: 10\n    cooldown: 1d", "min_value: 60\n    cooldown: 1d"
    )
    strict = load_policy(text)
    consent = make_event("consent_changed", "2026-11-20T09:00:00Z", GRANT)
    checkout = make_event("checkout_started", "2026-11-20T10:00:00Z")
    journey, _ = run(strict, [consent, checkout])
    (decision,) = journey.fire_due(strict, parse_ms("2026-11-21T00:00:00Z"), inclusive=True)
    assert decision.outcome is Outcome.STALE and "min_value 60" in decision.reason


@pytest.mark.parametrize("name", ["action", "decision"])
def test_outputs_match_their_published_schema(policy, name):
    consent = make_event("consent_changed", "2026-11-19T09:00:00Z", GRANT)
    _, outputs = run(policy, [consent, *three_views(), *three_views(24)])
    kind = Action if name == "action" else Decision
    records = [o.as_record() for o in outputs if isinstance(o, kind)]
    assert records
    for record in records:
        jsonschema.validate(record, schemas.load(name))


def test_state_survives_a_pickle_round_trip(policy):
    import pickle

    consent = make_event("consent_changed", "2026-11-19T09:00:00Z", GRANT)
    journey, _ = run(policy, [consent, *three_views()[:2]])
    restored = pickle.loads(pickle.dumps(journey))
    _, outputs = run(policy, [three_views()[2]], restored)
    assert [a.action for a in actions(outputs)] == ["product_nudge"]


def test_a_bereavement_hands_over_to_an_agent_and_holds_marketing_back(policy):
    complaint = make_event(
        "complaint",
        "2026-11-19T12:00:00Z",
        {"text": "My husband passed away and you keep emailing him"},
        event_id="c-1",
    )
    consent = make_event("consent_changed", "2026-11-19T09:00:00Z", GRANT)
    _, outputs = run(policy, [consent, complaint, *three_views()])
    (handoff,) = actions(outputs)
    assert (handoff.action, handoff.channel, handoff.category) == (
        "empathy_handoff",
        "agent",
        "care",
    )
    assert handoff.signals == ("sensitive_circumstance",) and handoff.triggered_by == ("c-1",)
    nudge = decisions(outputs)[-1]
    assert nudge.action == "product_nudge" and nudge.outcome is Outcome.SUPPRESSED
    # the complaint's own 14 days and the sensitive circumstance's 90: the longer one names it
    assert nudge.reason == "suppressed by sensitive until 2027-02-17T12:00:00Z"


def test_the_matched_text_is_never_copied_into_a_record(policy):
    text = "Mi madre murió; she passed away in HOSPITAL, a terminal illness"
    complaint = make_event("support_contact", "2026-11-19T12:00:00Z", {"text": text})
    _, outputs = run(policy, [complaint, *three_views()])
    assert actions(outputs)
    written = b"".join(orjson.dumps(o.as_record()) for o in outputs).lower()
    for word in ("madre", "passed", "hospital", "terminal", "illness"):
        assert word.encode() not in written


def test_no_phrase_no_handoff(policy):
    complaint = make_event("complaint", "2026-11-19T12:00:00Z", {"text": "deathly slow delivery"})
    _, outputs = run(policy, [complaint])
    assert outputs == []


def test_a_purchase_stops_nudges_for_that_product_but_not_for_another(policy):
    consent = make_event("consent_changed", "2026-11-19T09:00:00Z", GRANT)
    bought = make_event("purchase", "2026-11-19T10:00:00Z", {"product_id": "p-42"})
    _, outputs = run(
        policy, [consent, bought, *three_views(product="p-42"), *three_views(24, product="p-7")]
    )
    assert [(d.group, d.outcome) for d in decisions(outputs)] == [
        ("p-42", Outcome.SUPPRESSED),
        ("p-7", Outcome.SENT),
    ]
    assert decisions(outputs)[0].reason.startswith("suppressed by after-purchase until")


def test_a_late_event_counts_in_no_window(policy):
    consent = make_event("consent_changed", "2026-11-19T09:00:00Z", GRANT)
    first, second, third = three_views()
    late_third = dataclasses.replace(third, late=True)
    _, outputs = run(policy, [consent, first, second, late_third])
    assert outputs == []


def test_a_customer_idle_past_the_eviction_time_starts_afresh(policy):
    short = dataclasses.replace(policy, evict_idle_after=parse_ms("1970-01-31T00:00:00Z"))
    consent = make_event("consent_changed", "2026-01-01T09:00:00Z", GRANT)
    journey = Journey(CustomerState("cus_ana"))
    journey.on_event(short, consent)
    # the inactivity timer (45 days) must fire before anything can be forgotten
    assert journey.next_eviction(short) is None
    outputs = journey.on_event(short, make_event("page_view", "2026-07-01T09:00:00Z"))
    assert [d.action for d in decisions(outputs)] == ["win_back_offer"]  # fired on the way
    assert journey.evicted == 1
    outputs = []
    for day in (10, 11, 12):
        view = make_event("product_view", f"2026-07-{day}T10:00:00Z", {"product_id": "p-42"})
        outputs += journey.on_event(short, view)
    (decision,) = decisions(outputs)
    assert decision.outcome is Outcome.NO_CONSENT  # forgotten with everything else


def test_eviction_waits_for_cooldowns_and_valuable_moments(policy):
    journey = Journey(CustomerState("cus_ana"))
    for event in [make_event("consent_changed", "2026-11-19T09:00:00Z", GRANT), *three_views()]:
        journey.on_event(policy, event)
    journey.state.pending.clear()  # as if the inactivity timer had fired
    sent = parse_ms("2026-11-22T10:00:00Z")
    assert journey.next_eviction(policy) == max(
        sent + 3 * DAY,  # the nudge's cooldown
        parse_ms("2026-11-22T10:00:00Z") + 7 * DAY,  # the window still counting
        journey.state.last_event_at + policy.evict_idle_after,
    )
    assert not journey.evictable(policy, journey.state.last_event_at + policy.evict_idle_after - 1)
    assert journey.evictable(policy, journey.state.last_event_at + policy.evict_idle_after)


def test_the_wall_clock_wakes_a_customer_at_their_next_timer(policy):
    journey, _ = run(policy, [make_event("checkout_started", "2026-11-20T10:00:00Z")])
    due = parse_ms("2026-11-20T10:30:00Z")
    assert journey.wake_at(policy, now=due - 1, fire_until=due - 1) == due


def test_a_due_timer_held_back_by_unread_input_is_looked_at_again_shortly(policy):
    journey, _ = run(policy, [make_event("checkout_started", "2026-11-20T10:00:00Z")])
    due = parse_ms("2026-11-20T10:30:00Z")
    now = due + 60_000
    assert journey.wake_at(policy, now=now, fire_until=due - 1) == now + GATED_RETRY_MS
    assert journey.wake_at(policy, now=now, fire_until=now) == due


def test_a_customer_waiting_for_a_merge_is_not_woken(policy):
    journey, _ = run(policy, [make_event("checkout_started", "2026-11-20T10:00:00Z")])
    journey.on_adopt(policy, Adopt("m1", "cus_other", parse_ms("2026-11-20T10:01:00Z")))
    assert journey.wake_at(policy, now=parse_ms("2026-11-21T00:00:00Z"), fire_until=0) is None
