"""Invariants over random event streams (hypothesis): whatever a customer does, no cap is
exceeded, no marketing goes out without consent or inside a complaint or sensitive
suppression, and the same input gives the same output."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.journey import Journey
from operators.model import Action, Event, Origin
from operators.state import CustomerState

MINUTE = 60_000
DAY = 1440 * MINUTE
START = 1_790_000_000_000  # 2026-09-21
ZONES = ("Europe/Madrid", "Asia/Tokyo", "America/New_York")
CHANNELS = ("*", "email", "sms", "push")

step = st.one_of(
    *[st.tuples(st.just("product_view"), st.sampled_from([f"p-{n}" for n in range(6)]))] * 6,
    st.tuples(st.just("help_search"), st.none()),
    st.tuples(st.just("loan_eligibility_check"), st.none()),
    st.tuples(st.just("checkout_started"), st.none()),
    st.tuples(st.just("purchase"), st.sampled_from(["p-1", "p-2", None])),
    st.tuples(st.just("payment_failed"), st.none()),
    st.tuples(st.just("complaint"), st.sampled_from(["slow delivery", "my son died"])),
    st.tuples(st.just("support_contact"), st.sampled_from(["where is it", "in hospital"])),
    st.tuples(st.just("consent_changed"), st.tuples(st.sampled_from(CHANNELS), st.booleans())),
)
streams = st.lists(
    st.tuples(step, st.sampled_from([1, 5, 20, 60, 300, 1440, 4 * 1440]), st.sampled_from(ZONES)),
    min_size=20,
    max_size=80,
)
GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def events_of(stream):
    t = START
    events = [Event("e-grant", "consent_changed", t, {"email": "a@b.c"}, {}, GRANT, Origin())]
    for n, ((kind, detail), gap, zone) in enumerate(stream):
        t += gap * MINUTE
        properties: dict = {}
        if kind in ("product_view", "purchase") and detail is not None:
            properties["product_id"] = detail
        elif kind in ("complaint", "support_contact"):
            properties["text"] = detail
        elif kind == "consent_changed":
            channel, granted = detail
            properties = {"purpose": "marketing", "channel": channel, "granted": granted}
        events.append(
            Event(f"e-{n}", kind, t, {"email": "a@b.c"}, {"timezone": zone}, properties, Origin())
        )
    return events


def replay(policy, events):
    journey = Journey(CustomerState("cus_x"))
    outputs = []
    for event in events:
        outputs += journey.on_event(policy, event)
    outputs += journey.fire_due(policy, events[-1].time + 60 * DAY, inclusive=True)
    return outputs


def consent_at(events, channel, at):
    """The reference: the latest consent word for ``channel`` (or ``*``) before ``at``."""
    word = None
    for event in events:
        if (
            event.type == "consent_changed"
            and event.time <= at
            and event.properties["channel"] in ("*", channel)
        ):
            word = event.properties["granted"]
    return bool(word)


def complained_within(events, at, days, text_only):
    for event in events:
        if (
            event.type not in ("complaint", "support_contact")
            or not 0 <= at - event.time < days * DAY
        ):
            continue
        sensitive = event.properties["text"] in ("my son died", "in hospital")
        if sensitive or (event.type == "complaint" and not text_only):
            return True
    return False


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams)
def test_the_guardrails_hold_for_any_stream(policy, stream):
    events = events_of(stream)
    outputs = replay(policy, events)
    actions = [o for o in outputs if isinstance(o, Action)]
    for cap in policy.caps:
        counted = [a for a in actions if cap.matches(a.action, a.channel, a.category)]
        for a in counted:
            inside = {
                b.action_id
                for b in counted
                if a.decided_at - cap.window < b.decided_at <= a.decided_at
            }
            assert len(inside) <= cap.max, f"{cap.name} exceeded at {a.decided_at}"
    for a in actions:
        if a.category in ("marketing", "retention"):
            assert consent_at(events, a.channel, a.decided_at), f"{a.action} without consent"
            assert not complained_within(events, a.decided_at, 14, text_only=False)
            assert not complained_within(events, a.decided_at, 90, text_only=True)
    assert replay(policy, events) == outputs


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams)
def test_an_action_is_never_sent_twice_under_one_id(policy, stream):
    actions = [o for o in replay(policy, events_of(stream)) if isinstance(o, Action)]
    assert len({a.action_id for a in actions}) == len(actions)
