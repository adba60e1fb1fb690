"""One customer's state stays under the bound the README states, whatever they do."""

import pickle

import orjson

from operators.context.moments import MAX_TRIGGERS
from operators.context.windows import MAX_UNSETTLED
from operators.journey import Journey
from operators.model.bounded import MAX_GROUPS
from operators.model.state import CustomerState
from operators.model.state_records import state_to_record
from tests.conftest import make_event

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def flood(policy):
    """Everything at once, within minutes: as many products as a customer keeps, each
    viewed 25 times; bursts of help searches, eligibility checks and failed payments;
    100 purchases of different products; complaints; consent on every channel and purpose."""
    journey = Journey(CustomerState("cus_flood"))
    n = 0

    def feed(event_type, properties=None):
        nonlocal n
        n += 1
        minute, second = divmod(n % 3600, 60)
        at = f"2026-11-20T10:{minute:02d}:{second:02d}Z"
        event = make_event(event_type, at, properties, event_id=f"flood-event-{n:08d}")
        journey.on_event(policy, event)

    for channel in (*policy.channels, "*", "fax"):
        for purpose in ("marketing", "research"):
            feed("consent_changed", {"purpose": purpose, "channel": channel, "granted": True})
    for round_ in range(25):
        for product in range(MAX_GROUPS):
            feed("product_view", {"product_id": f"p-{product}"})
        for _ in range(3):
            feed("help_search", {"query": "where is my order"})
            feed("loan_eligibility_check")
            feed("payment_failed")
        feed("checkout_started")
        feed("complaint", {"text": f"round {round_}: my father is in hospital"})
    for product in range(100):
        feed("purchase", {"product_id": f"bought-{product}"})
    return journey


def test_a_flooded_customer_stays_within_the_stated_bound(policy):
    journey = flood(policy)
    state = journey.state
    for (signal, _), window in state.windows.items():
        assert len(window) <= policy.counting[signal].at_least + MAX_UNSETTLED
    for name in policy.counting:
        assert sum(1 for s, _ in state.windows if s == name) <= MAX_GROUPS
    for name in policy.moments:
        assert sum(1 for m, _ in state.moments if m == name) <= MAX_GROUPS
    assert all(len(m.triggered_by) <= MAX_TRIGGERS for m in state.moments.values())
    for name in policy.actions:
        assert sum(1 for a, _ in state.cooldowns if a == name) <= MAX_GROUPS
    for name in policy.suppressions:
        assert sum(1 for s, _ in state.suppressions if s == name) <= MAX_GROUPS
    assert len(state.consent) <= len(policy.consent_purposes) * (len(policy.channels) + 1)
    # the README's figures for the reference policy with 20-character event ids
    entries = sum(len(w) for w in state.windows.values())
    assert entries == 663  # the flood fills every window: 32 x 19 + 19 + 19 + 17
    assert len(orjson.dumps(state_to_record(state))) < 64_000
    assert len(pickle.dumps(journey, pickle.HIGHEST_PROTOCOL)) < 48_000
