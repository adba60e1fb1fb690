"""A customer whose decision asks for capacity waits for the answer: what comes meanwhile is
held, timers wait, and the answer decides as of the request's time (operators/journey.py,
operators/decisions/decide.py)."""

import dataclasses
import pickle

import pytest

from operators.decisions.capacity import Answer, Refusal, Refused
from operators.journey import Journey
from operators.model.handover import Retire
from operators.model.records import Action, Decision, Outcome
from operators.model.state import CustomerState
from operators.model.timefmt import format_ms, parse_ms
from operators.policy.load import load_policy
from tests.conftest import REFERENCE_POLICY, make_event
from tests.unit.test_journey import three_views

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}
PACED = "capacity:\n  paces: {push: {limit: 1, per: 1m}}\n"
NUDGE_AT = parse_ms("2026-11-22T10:00:00Z")


@pytest.fixture
def paced():
    return load_policy(REFERENCE_POLICY.read_text() + PACED, "paced")


def asked(policy):
    """A customer whose third view of a product makes a push nudge the pace counts."""
    journey = Journey(CustomerState("cus_ana"))
    outputs = []
    for event in [make_event("consent_changed", "2026-11-19T09:00:00Z", GRANT), *three_views()]:
        outputs += journey.on_event(policy, event)
    return journey, outputs


def test_a_paced_decision_asks_and_decides_nothing_until_the_answer(paced):
    journey, outputs = asked(paced)
    assert journey.asking is not None and outputs == []
    request = journey.asking.request
    assert (request.at, request.customer, request.key) == (
        NUDGE_AT,
        "cus_ana",
        "browse_intent|p-42",
    )
    assert [(c.action, c.channel, c.paces) for c in request.candidates] == [
        ("product_nudge", "push", ("push",)),
        ("product_nudge", "email", ()),
    ]
    # what comes meanwhile waits, and so do timers
    later = make_event("product_view", "2026-11-22T11:00:00Z", {"product_id": "p-7"})
    assert journey.on_event(paced, later) == [] and journey.queue == (later,)
    assert journey.fire_due(paced, NUDGE_AT + 10 * 86_400_000, True) == []

    leaves = NUDGE_AT + 120_000
    outputs, handed = journey.on_answer(paced, Answer(request, 0, leaves, ()))
    assert handed is None and journey.asking is None and journey.queue == ()
    (decision,) = [o for o in outputs if isinstance(o, Decision)]
    (action,) = [o for o in outputs if isinstance(o, Action)]
    assert decision.outcome is Outcome.SENT and decision.at == NUDGE_AT
    assert decision.reason == f"eligible; paced: leaves at {format_ms(leaves)}"
    assert (action.channel, action.decided_at, action.send_at) == ("push", NUDGE_AT, leaves)
    assert action.as_record()["send_at"] == format_ms(leaves)
    # the cooldown counts from the decision, not from when it leaves
    assert journey.state.cooldowns


def test_a_refused_decision_falls_through_to_email_or_is_paced_out(paced):
    journey, _ = asked(paced)
    request = journey.asking.request
    refused = Refused(0, Refusal.PACED_OUT, "push")
    outputs, _ = journey.on_answer(paced, Answer(request, 1, NUDGE_AT, (refused,)))
    (action,) = [o for o in outputs if isinstance(o, Action)]
    assert action.channel == "email" and action.send_at is None
    (decision,) = [o for o in outputs if isinstance(o, Decision)]
    assert "paced out on push: push has no room" in decision.reason

    journey, _ = asked(paced)
    both = (refused, Refused(1, Refusal.OVER_BUDGET, "email_day"))
    outputs, _ = journey.on_answer(paced, Answer(journey.asking.request, None, None, both))
    (decision,) = outputs
    assert (decision.outcome, decision.rule, decision.channel) == (
        Outcome.PACED_OUT,
        "push",
        "push",
    )
    assert "over budget on email: email_day is spent" in decision.reason
    assert decision.action_id is None
    assert journey.state.moments, "a moment nothing was sent for stays open"


def test_an_answer_to_anything_else_changes_nothing(paced):
    journey, _ = asked(paced)
    request = journey.asking.request
    other = dataclasses.replace(request, at=request.at - 1)
    assert journey.on_answer(paced, Answer(other, 0, other.at, ())) == ([], None)
    assert journey.asking is not None
    outputs, _ = journey.on_answer(paced, Answer(request, 0, request.at, ()))
    assert outputs
    assert journey.on_answer(paced, Answer(request, 0, request.at, ())) == ([], None)


def test_a_merge_waits_for_the_answer_and_hands_over_what_it_decided(paced):
    journey, _ = asked(paced)
    retire = Retire("m-1", "cus_bob", parse_ms("2026-11-22T10:30:00Z"), 9)
    assert journey.on_retire(paced, retire) == ([], None) and not journey.retired
    outputs, handed = journey.on_answer(paced, Answer(journey.asking.request, 0, NUDGE_AT, ()))
    assert [o.outcome for o in outputs if isinstance(o, Decision)] == [Outcome.SENT]
    assert journey.retired and handed is not None and handed.survivor == "cus_bob"


def test_a_customer_waiting_for_an_answer_survives_a_snapshot(paced):
    journey, _ = asked(paced)
    resumed = pickle.loads(pickle.dumps(journey))
    assert resumed.asking == journey.asking and resumed.floor == NUDGE_AT + 1
    outputs, _ = resumed.on_answer(paced, Answer(resumed.asking.request, 0, NUDGE_AT, ()))
    assert [o.action for o in outputs if isinstance(o, Action)] == ["product_nudge"]


def test_a_customer_asks_once_per_instant(paced):
    journey, _ = asked(paced)
    # another product's nudge opens at the same instant, held behind the request: it is
    # decided once the first is answered, a millisecond later, with its own request
    for event in three_views(20, "p-9"):
        journey.on_event(paced, dataclasses.replace(event, event_id=event.event_id + "b"))
    assert len(journey.queue) == 3
    outputs, _ = journey.on_answer(paced, Answer(journey.asking.request, 0, NUDGE_AT, ()))
    assert [a.group for a in outputs if isinstance(a, Action)] == ["p-42"]
    assert journey.asking is not None and journey.asking.request.at == NUDGE_AT + 1
    assert journey.asking.request.key == "browse_intent|p-9"
