"""What a replay's records measure (flows/measure.py): decisions for the summary, customers
for the lift."""

from flows.measure import count_conversions, lift_by_action
from tests.measurement import measured_policy


def decision(customer, n, outcome):
    return {
        "customer_id": customer,
        "action": "product_nudge",
        "outcome": outcome,
        "action_id": f"{customer}.product_nudge.{n}",
    }


def conversion(customer, n, outcome, conversion_type="purchase", survivor=None):
    return {
        "customer_id": survivor or customer,
        "action": "product_nudge",
        "outcome": outcome,
        "action_id": f"{customer}.product_nudge.{n}",
        "conversion": conversion_type,
    }


def test_the_summary_counts_decisions_and_the_lift_counts_customers():
    policy = measured_policy()
    decisions = [
        decision("cus_a", 1, "sent"),
        decision("cus_a", 2, "sent"),
        decision("cus_b", 1, "sent"),
        decision("cus_c", 1, "held_out"),
        decision("cus_c", 2, "held_out"),
        decision("cus_c", 3, "cooldown"),
    ]
    conversions = [
        conversion("cus_a", 1, "sent"),  # one purchase converts both of cus_a's decisions
        conversion("cus_a", 2, "sent"),
        conversion("cus_c", 1, "held_out", survivor="cus_d"),  # after a merge
        conversion("cus_c", 1, "held_out", "loan_application", survivor="cus_d"),
    ]
    by_decision, by_customer = count_conversions(policy, decisions, conversions)
    assert by_decision["product_nudge"] == {
        "sent": 3,
        "sent_converted": 2,
        "held_out": 2,
        "held_out_converted": 1,
    }
    assert by_customer["product_nudge"] == {
        "sent": 2,
        "sent_converted": 1,
        "held_out": 1,
        "held_out_converted": 1,
    }
    assert set(by_decision) == set(policy.actions)  # purchase counts for every action
    lift = lift_by_action(by_customer)["product_nudge"]
    assert lift["customers"] == by_customer["product_nudge"]
    assert (lift["rate_sent"], lift["rate_held_out"]) == (0.5, 1.0)
