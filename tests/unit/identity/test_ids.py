from operators.identity.ids import canonical_id, resolve_customer
from operators.model.action_ids import customer_of_action_id
from operators.model.identifiers import UNKEYED_IDENTITY
from operators.model.records import Event


def event(event_type="product_view", properties=None, **identifiers):
    return Event(
        "e-1",
        event_type,
        0,
        UNKEYED_IDENTITY.identify_normalised(identifiers),
        {},
        properties or {},
    )


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


def test_a_customer_id_names_a_profile_as_the_graph_names_it(policy):
    given = canonical_id("email", "ana@example.com")
    named = resolve_customer(event(customer_id=given), policy.identifier_order)
    assert named == canonical_id("customer_id", given)
