"""What the emit step counts of measurement: held-out decisions, the rates' numerators and
denominators, conversions, and actions per customer per 7 days (flows/orchestrator.py)."""

from prometheus_client import REGISTRY

from flows.orchestrator import _emit
from operators.journey import Journey
from operators.model.encoding import Emitted, Order
from operators.model.records import Action, Conversion
from operators.model.state import CustomerState
from tests.conftest import make_event
from tests.measurement import holding_out

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def journey_outputs(policy, customer):
    journey = Journey(CustomerState(customer))
    events = [make_event("consent_changed", "2026-11-01T09:00:00Z", GRANT)]
    for product in ("p-1", "p-2"):
        events += [
            make_event("product_view", f"2026-11-10T10:{m:02d}:00Z", {"product_id": product})
            for m in (0, 10, 20)
        ]
    events.append(make_event("purchase", "2026-11-11T09:00:00Z", {"product_id": "p-9"}))
    outputs = []
    for event in events:
        outputs += journey.on_event(policy, event)
    return outputs


def emit(outputs):
    return list(_emit([("k", Emitted(o, Order.of_line(0), 0.0)) for o in outputs]))


def test_held_out_decisions_and_their_conversions_are_counted_by_action_and_group():
    before = {
        "held": sample("concierge_held_out_total", action="product_nudge"),
        "measured": sample(
            "concierge_measured_decisions_total", action="product_nudge", group="held_out"
        ),
        "conversions": sample(
            "concierge_conversions_total", action="product_nudge", group="held_out"
        ),
        "converted": sample(
            "concierge_converted_decisions_total", action="product_nudge", group="held_out"
        ),
    }
    outputs = journey_outputs(holding_out("0.9999999"), "cus_ana")
    assert not [o for o in outputs if isinstance(o, Action)]
    assert len([o for o in outputs if isinstance(o, Conversion)]) == 2
    records = emit(outputs)
    assert {r.stream for r in records} == {"decisions", "conversions"}
    assert sample("concierge_held_out_total", action="product_nudge") == before["held"] + 2
    assert (
        sample("concierge_measured_decisions_total", action="product_nudge", group="held_out")
        == before["measured"] + 2
    )
    assert (
        sample("concierge_conversions_total", action="product_nudge", group="held_out")
        == before["conversions"] + 2
    )
    assert (
        sample("concierge_converted_decisions_total", action="product_nudge", group="held_out")
        == before["converted"] + 2
    )


def test_each_action_sent_observes_the_customers_actions_in_the_last_7_days():
    count = sample("concierge_actions_per_customer_7d_count")
    total = sample("concierge_actions_per_customer_7d_sum")
    outputs = journey_outputs(holding_out("0.0000001"), "cus_bo")
    assert [o.recent_sends for o in outputs if isinstance(o, Action)] == [1, 2]
    emit(outputs)
    assert sample("concierge_actions_per_customer_7d_count") == count + 2
    assert sample("concierge_actions_per_customer_7d_sum") == total + 3


def test_a_measuring_policy_starts_every_action_and_group_at_zero():
    """Its actions renamed to names no other test decides on: the registry is the process's,
    and a replay another test ran in it before would have counted the usual ones."""
    from flows.metrics import declare_measurement
    from operators.policy.load import load_policy
    from tests.measurement import measured_policy_text

    renamed = {"win_back_offer": "zeroed_win_back_offer", "loan_offer": "zeroed_loan_offer"}
    text = measured_policy_text()
    for name, fresh in renamed.items():
        assert name in text
        text = text.replace(name, fresh)
    declare_measurement(load_policy(text, "measured"))
    for action in renamed.values():
        for group in ("sent", "held_out"):
            labels = {"action": action, "group": group}
            assert REGISTRY.get_sample_value("concierge_converted_decisions_total", labels) == 0
            assert REGISTRY.get_sample_value("concierge_measured_decisions_total", labels) == 0
        assert REGISTRY.get_sample_value("concierge_held_out_total", {"action": action}) == 0
