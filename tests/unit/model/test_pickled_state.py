"""A customer's state survives pickling whole: what recovery snapshots and packed customers
hold (operators.journey.Journey.__reduce__ and those of the state's parts)."""

import dataclasses
import pickle
from pathlib import Path

from operators.journey import Journey
from operators.model.handover import Adopt
from operators.model.state import (
    PICKLED_FIELDS,
    AttributeWord,
    CustomerState,
    Evidence,
    MomentKey,
    OpenMoment,
    PendingAbsence,
    Trial,
    Watch,
    restored_state,
)
from tests.conftest import make_event


def full_journey():
    state = CustomerState("cus_ana")
    for n, name in enumerate(CustomerState.__slots__):
        if name not in (
            "customer_id",
            "seq",
            "last_event_at",
            "timezone",
            "sends",
            "watches",
            "attributes",
            "identifier_kinds",
            "bounced",
            "trials",
            "evidence",
        ):
            getattr(state, name)[f"k{n}"] = n  # every part holds something
    state.moments[MomentKey("browse_intent", "p-1")] = OpenMoment(40.0, 5, "e1", ("s",), ("e1",))
    state.pending["inactive"] = PendingAbsence(9, "e2", 3)
    state.watches = (Watch(9, "purchase", "cus_ana.product_nudge.0", "product_nudge", True, 8),)
    state.attributes = (AttributeWord("region", "ES", 4),)
    state.identifier_kinds, state.bounced = ("email",), (("email", 6),)
    state.trials = (Trial(12, "cus_ana.product_nudge.1", "product_nudge", "push", "t", 1.0),)
    state.evidence = (Evidence("channel", "", "push", 2.5, 1.0, 10),)
    state.seq, state.last_event_at, state.timezone = 7, 11, ("Europe/Madrid", 11)
    event = make_event("page_view", "2026-11-20T10:00:00Z")
    return Journey(
        state, (Adopt("m1", "cus_bo", 4, 2), event), frozenset({"m0"}), {}, False, 2, (1,)
    )


def test_a_journey_comes_back_equal_part_by_part():
    journey = full_journey()
    back = pickle.loads(pickle.dumps(journey, protocol=pickle.HIGHEST_PROTOCOL))
    assert [getattr(back, f.name) for f in dataclasses.fields(Journey) if f.name != "state"] == [
        getattr(journey, f.name) for f in dataclasses.fields(Journey) if f.name != "state"
    ]
    assert back.state.__getstate__() == journey.state.__getstate__()


def test_every_field_is_pickled():
    """A field added to one of these classes and not to its __reduce__ fails here."""
    journey = full_journey()
    for value, cls in (
        (journey, Journey),
        (journey.state.moments[MomentKey("browse_intent", "p-1")], OpenMoment),
        (journey.state.pending["inactive"], PendingAbsence),
    ):
        _, args = value.__reduce__()
        assert len(args) == len(dataclasses.fields(cls))
    _, (values,) = journey.state.__reduce__()
    assert len(values) == len(CustomerState.__slots__)
    assert sorted(PICKLED_FIELDS) == sorted(CustomerState.__slots__)


def test_snapshots_of_0_4_0_and_0_5_0_without_the_later_fields_still_read():
    state = full_journey().state
    _, (values,) = state.__reduce__()
    later = ("watches", "attributes", "identifier_kinds", "bounced", "trials", "evidence")
    assert PICKLED_FIELDS[-6:] == later
    of_0_4_0 = restored_state(values[:-6])
    assert tuple(getattr(of_0_4_0, name) for name in later) == ((),) * 6
    assert of_0_4_0.__getstate__()[:-6] == values[:-6]
    of_0_5_0 = restored_state(values[:-5])
    assert of_0_5_0.watches == state.watches and of_0_5_0.attributes == ()
    assert of_0_5_0.identifier_kinds == () and of_0_5_0.bounced == ()
    of_0_8_0 = restored_state(values[:-2])  # before learning
    assert of_0_8_0.bounced == state.bounced and (of_0_8_0.trials, of_0_8_0.evidence) == ((), ())


def test_a_journey_pickled_by_0_4_0_goes_on_as_one_built_now():
    """``snapshots/journey-0.4.0.pickle``: what 0.4.0 (42ddede) snapshotted after Ana granted
    consent, viewed p-42 three times (a nudge was sent: a 6-field Send) and started a
    checkout, under the reference policy."""
    from operators.policy.load import load_policy
    from tests.conftest import REFERENCE_POLICY

    policy = load_policy(REFERENCE_POLICY.read_text())
    old = pickle.loads((Path(__file__).parent / "snapshots" / "journey-0.4.0.pickle").read_bytes())
    grant = {"purpose": "marketing", "channel": "*", "granted": True}
    now = Journey(CustomerState("cus_ana"))
    events = [make_event("consent_changed", "2026-11-01T09:00:00Z", grant, event_id="g")]
    events += [
        make_event("product_view", f"2026-11-10T10:{m:02d}:00Z", {"product_id": "p-42"}, f"v{m}")
        for m in (0, 10, 20)
    ]
    events.append(make_event("checkout_started", "2026-11-10T11:00:00Z", event_id="c"))
    for event in events:
        now.on_event(policy, event)
    assert old.state.watches == () and old.state.sends[0].held_out is False
    assert old.state.__getstate__() == now.state.__getstate__()
    later = make_event("product_view", "2026-11-10T12:00:00Z", {"product_id": "p-7"}, "v99")
    went_on = old.on_event(policy, later)
    assert went_on == now.on_event(policy, later)
    assert "cart_recovery" in {o.action for o in went_on}  # the checkout's timer fired


def test_a_journey_pickled_under_the_module_names_before_the_grouping_comes_back_equal():
    """``snapshots/journey-1060206.pickle``: :func:`full_journey` as main at 1060206 pickled
    it, before operators/ was grouped by stage: its classes under ``operators.state``,
    ``operators.handover``, ``operators.model`` and ``operators.identifiers``."""
    recorded = (Path(__file__).parent / "snapshots" / "journey-1060206.pickle").read_bytes()
    assert b"operators.handover" in recorded and b"operators.model.state" not in recorded
    old, now = pickle.loads(recorded), full_journey()
    (_, event), (_, event_now) = old.queue, now.queue
    assert type(event.identifiers["email"]) is type(event_now.identifiers["email"])
    # its digest is keyed by the machine's key, which each test session makes anew, and its
    # id counts the events the session made
    old.queue, now.queue = old.queue[:1], now.queue[:1]
    assert dataclasses.replace(event, identifiers={}, event_id="") == dataclasses.replace(
        event_now, identifiers={}, event_id=""
    )
    assert [getattr(old, f.name) for f in dataclasses.fields(Journey) if f.name != "state"] == [
        getattr(now, f.name) for f in dataclasses.fields(Journey) if f.name != "state"
    ]
    assert (old.state.trials, old.state.evidence) == ((), ())  # learning came later
    now.state.trials, now.state.evidence = (), ()
    assert old.state.__getstate__() == now.state.__getstate__()
