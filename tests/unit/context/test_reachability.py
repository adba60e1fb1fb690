"""Reachability from identity: a channel is tried only while the profile holds an identifier
of its types, and not after a bounce until a new one comes (operators/context/reachability.py)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.identity.graph import DictStore, IdentityGraph
from operators.identity.merging import merge_states
from operators.journey import Journey
from operators.model.identifiers import UNKEYED_IDENTITY, IdentifierRules
from operators.model.records import Action, Decision, Outcome
from operators.model.state import CustomerState
from operators.model.timefmt import format_ms
from operators.policy.load import PolicyError
from tests.conftest import make_event
from tests.measurement import measured_policy
from tests.unit.test_invariants import events_of, streams

ids = UNKEYED_IDENTITY.identify_normalised

SECTION = """
reachability:
  email: [email]
  sms: [phone]
  push: [device_id]
"""
"""As ``policy-full.yaml`` pins it."""
POLICY = measured_policy(SECTION)
GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def told(event, kinds, gained=()):
    """``event`` as the identity step hands it on: with its profile's identifier types."""
    return event.with_profile(tuple(kinds), tuple(gained))


def views(day, product, kinds=("email",), gained=()):
    at = f"2026-11-{day:02d}T10:{{:02d}}:00Z"
    return [
        told(make_event("product_view", at.format(m), {"product_id": product}), kinds, gained)
        for m in (0, 10, 20)
    ]


def feedback(at, action_id, outcome, channel=None):
    properties = {"action_id": action_id, "outcome": outcome}
    if channel is not None:
        properties["channel"] = channel
    return make_event("feedback", at, properties)


def run(events, journey=None, grant=GRANT):
    journey = journey or Journey(CustomerState("cus_ana"))
    outputs = []
    first = [make_event("consent_changed", "2026-11-01T09:00:00Z", grant)] if grant else []
    for event in [*first, *events]:
        outputs += journey.on_event(POLICY, event)
    return journey, outputs


def decided(outputs, action="product_nudge"):
    return [
        (d.outcome, d.channel) for d in outputs if isinstance(d, Decision) and d.action == action
    ]


def sends(outputs):
    return [a for a in outputs if isinstance(a, Action)]


def test_a_profile_without_an_identifier_of_any_channel_type_is_unreachable():
    journey, outputs = run(views(10, "p-1", kinds=("anonymous_id",)))
    (decision,) = [d for d in outputs if isinstance(d, Decision)]
    assert (decision.outcome, decision.channel, decision.action_id) == (
        Outcome.UNREACHABLE,
        None,
        None,
    )
    assert decision.reason == "unreachable: no device_id for push; no email for email"
    assert not sends(outputs)
    assert ("browse_intent", "p-1") in journey.state.moments, "the moment stays open"


def test_an_unreachable_channel_is_skipped_for_the_next_in_the_action_order():
    _, outputs = run(views(10, "p-1", kinds=("email",)))
    assert decided(outputs) == [(Outcome.SENT, "email")], "push comes first but has no device"
    _, both = run(views(10, "p-1", kinds=("device_id", "email")))
    assert decided(both) == [(Outcome.SENT, "push")]


def test_channels_the_policy_does_not_list_are_always_reachable():
    help_searches = [
        told(make_event("help_search", f"2026-11-10T10:0{m}:00Z"), ("anonymous_id",))
        for m in range(3)
    ]
    _, outputs = run(help_searches)
    assert decided(outputs, "help_offer") == [(Outcome.SENT, "in_app")]


def test_consent_is_asked_only_of_reachable_channels():
    push_only = {"purpose": "marketing", "channel": "push", "granted": True}
    _, outputs = run(views(10, "p-1", kinds=("email",)), grant=push_only)
    (decision,) = [d for d in outputs if isinstance(d, Decision)]
    assert (decision.outcome, decision.channel) == (Outcome.NO_CONSENT, "email")


def test_a_bounce_makes_the_channel_unreachable_until_a_new_email_appears():
    journey, first = run(views(10, "p-1"))
    (sent,) = sends(first)
    assert sent.channel == "email"
    _, bounced = run(
        [feedback("2026-11-10T12:00:00Z", sent.action_id, "bounced"), *views(11, "p-2")],
        journey,
        grant=None,
    )
    (decision,) = [d for d in bounced if isinstance(d, Decision)]
    assert (decision.outcome, decision.reason) == (
        Outcome.UNREACHABLE,
        "unreachable: no device_id for push; email bounced",
    )
    same_email = views(12, "p-3")  # the profile still holds only the bounced address
    _, still = run(same_email, journey, grant=None)
    assert decided(still) == [(Outcome.UNREACHABLE, None)]
    new_email = told(make_event("page_view", "2026-11-13T09:00:00Z"), ("email",), ("email",))
    _, again = run([new_email, *views(13, "p-4")], journey, grant=None)
    assert decided(again) == [(Outcome.SENT, "email")]


def test_a_bounced_send_no_longer_counts_against_the_caps():
    kinds = ("device_id", "email")
    journey, outputs = run([*views(10, "p-1", kinds), *views(11, "p-2", kinds)])
    journey, third = run(views(12, "p-3", kinds), journey, grant=None)
    pushed = sends(outputs + third)
    assert [a.channel for a in pushed] == ["push"] * 3
    _, capped = run(views(13, "p-4", kinds), Journey(_copy(journey.state)), grant=None)
    assert decided(capped) == [(Outcome.CAPPED, "push")], "marketing-weekly: 3 in 7 days"
    bounce = feedback("2026-11-12T12:00:00Z", pushed[-1].action_id, "bounced")
    _, after = run([bounce, *views(13, "p-4", kinds)], journey, grant=None)
    assert decided(after) == [(Outcome.SENT, "email")], "push bounced; the bounce is not counted"


def test_a_merge_holds_both_profiles_identifier_types_and_keeps_a_bounce():
    phone = Journey(CustomerState("cus_phone"))
    run(views(10, "p-1", kinds=("device_id",)), phone)
    laptop = Journey(CustomerState("cus_laptop"))
    _, out = run(views(10, "p-2", kinds=("email",)), laptop)
    (sent,) = sends(out)
    run([feedback("2026-11-10T12:00:00Z", sent.action_id, "bounced")], laptop, grant=None)
    merge_states(POLICY, phone.state, laptop.state)
    assert phone.state.identifier_kinds == ("device_id", "email")
    assert phone.state.bounced == (("email", sent.decided_at + 2 * 3_600_000 - 20 * 60_000),)


def test_the_identity_graph_says_which_types_a_profile_holds_and_which_it_gained():
    graph = IdentityGraph(DictStore(), IdentifierRules(limits={"email": 3}))
    first = graph.resolve(ids({"email": "ana@example.com"}), 1, "e1")
    assert (first.kinds, first.gained) == (("email",), ("email",))
    again = graph.resolve(ids({"email": "ana@example.com"}), 2, "e2")
    assert (again.kinds, again.gained) == (("email",), ())
    device = graph.resolve(ids({"email": "ana@example.com", "device_id": "d-1"}), 3, "e3")
    assert set(device.kinds) == {"email", "device_id"} and device.gained == ("device_id",)
    new_email = graph.resolve(ids({"device_id": "d-1", "email": "ana@work.example"}), 4, "e4")
    assert new_email.gained == ("email",)
    other = graph.resolve(ids({"email": "bo@example.com", "phone": "+34600000001"}), 5, "e5")
    merged = graph.resolve(ids({"device_id": "d-1", "phone": "+34600000001"}), 6, "e6")
    assert merged.merges and merged.customer_id == first.customer_id != other.customer_id
    assert set(merged.gained) == {"email", "phone"}, "the merge brought a new email and a phone"


def test_reachability_for_a_channel_the_policy_lacks_is_refused():
    with pytest.raises(PolicyError, match=r"reachability\.fax"):
        measured_policy("reachability: {fax: [phone]}")
    with pytest.raises(PolicyError, match="reachability"):
        measured_policy("reachability: {email: [postcode]}")


def _copy(state):
    from operators.model.state_records import state_from_record, state_to_record

    return state_from_record(state_to_record(state))


KINDS = ("email", "device_id", "phone")
profiles = st.lists(
    st.tuples(
        st.frozensets(st.sampled_from(KINDS)),
        st.frozensets(st.sampled_from(KINDS)),
        st.booleans(),
    ),
    min_size=40,
    max_size=40,
)
"""Per event: the profile's identifier types, those of which it gains a new value, and
whether the last send bounces right after the event."""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams, profiles)
def test_no_action_goes_to_a_channel_that_cannot_reach_the_customer(stream, told_profiles):
    """The reference: a listed channel reaches while the latest told types hold one of its
    types and it has not bounced since the profile last gained a new identifier of them."""
    journey = Journey(CustomerState("cus_x"))
    kinds: frozenset[str] = frozenset()
    bounced: set[str] = set()
    last_send = None
    timed = events_of(stream)
    for n, ((event, _), (held, gained, bounces)) in enumerate(
        zip(timed, [*told_profiles] * 2, strict=False)
    ):
        gained = held & gained
        fired = journey.fire_due(POLICY, event.time, inclusive=False)
        last_send = _check_reachable(fired, kinds, bounced) or last_send
        kinds, bounced = held, {c for c in bounced if gained.isdisjoint(POLICY.reachability[c])}
        decided = journey.on_event(POLICY, told(event, sorted(held), sorted(gained)))
        last_send = _check_reachable(decided, kinds, bounced) or last_send
        if bounces and last_send is not None:
            report = make_event(
                "feedback",
                _iso(event.time + 1),
                {"action_id": last_send.action_id, "outcome": "bounced"},
                f"bounce-{n}",
            )
            _check_reachable(journey.on_event(POLICY, report), kinds, bounced)
            if last_send.channel in POLICY.reachability:
                bounced.add(last_send.channel)


def _check_reachable(outputs, kinds, bounced):
    """Every action of ``outputs`` on a channel that reaches; the last of them."""
    last = None
    for action in (o for o in outputs if isinstance(o, Action)):
        assert action.channel not in bounced, f"{action.action} to bounced {action.channel}"
        types = POLICY.reachability.get(action.channel)
        assert types is None or not types.isdisjoint(kinds), f"nobody on {action.channel}"
        last = action
    return last


def _iso(ms):
    return format_ms(ms)
