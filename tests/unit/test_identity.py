from operators.action_ids import customer_of_action_id
from operators.identity import canonical_id, resolve_customer
from operators.model import Event


def event(event_type="product_view", properties=None, **identifiers):
    return Event("e-1", event_type, 0, identifiers, {}, properties or {})


def test_the_strongest_identifier_names_the_customer(policy):
    order = policy.identifier_order
    both = resolve_customer(event(anonymous_id="a-9", email="ana@example.com"), order)
    assert both == canonical_id("email", "ana@example.com")
    assert resolve_customer(event(email="ana@example.com"), order) == both
    assert resolve_customer(event(anonymous_id="a-9"), order) != both


def test_canonical_ids_are_stable():
    assert canonical_id("email", "ana@example.com") == canonical_id("email", "ana@example.com")
    assert canonical_id("email", "ana@example.com").startswith("cus_")


def test_feedback_lands_on_the_customer_its_action_was_for(policy):
    customer = canonical_id("email", "ana@example.com")
    feedback = event(
        "feedback",
        {
            "action_id": policy.action_ids.issue(customer, "product_nudge", "m", None, "e"),
            "outcome": "clicked",
        },
    )
    assert resolve_customer(feedback, policy.identifier_order) == customer
    assert customer_of_action_id("not-ours") is None


def test_a_canonical_id_given_as_customer_id_is_used_as_is(policy):
    customer = canonical_id("email", "ana@example.com")
    assert resolve_customer(event(customer_id=customer), policy.identifier_order) == customer
