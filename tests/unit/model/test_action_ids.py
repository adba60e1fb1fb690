"""Action ids: deterministic idempotency keys that only their key can issue."""

from __future__ import annotations

from operators.model.action_ids import UNKEYED, customer_of_action_id, keyed

ISSUED = keyed(b"a deployment's secret")


def test_an_id_is_a_function_of_customer_action_moment_group_and_opening_event():
    one = ISSUED.issue("cus_1", "product_nudge", "browse_intent", "p-42", "v-22")
    assert one == ISSUED.issue("cus_1", "product_nudge", "browse_intent", "p-42", "v-22")
    assert one.startswith("cus_1.product_nudge.")
    assert one != ISSUED.issue("cus_1", "product_nudge", "browse_intent", "p-43", "v-22")
    assert one != ISSUED.issue("cus_2", "product_nudge", "browse_intent", "p-42", "v-22")
    assert one != ISSUED.issue("cus_1", "product_nudge", "browse_intent", "p-42", "v-23")


def test_only_the_key_that_issued_an_id_verifies_it():
    customer = "cus_" + "0a" * 10
    genuine = ISSUED.issue(customer, "loan_offer", "loan_intent", None, "e-7")
    assert ISSUED.verify(genuine) == (customer, "loan_offer")
    assert keyed(b"a deployment's secret").verify(genuine) == (customer, "loan_offer")
    assert keyed(b"another deployment").verify(genuine) is None
    assert UNKEYED.verify(genuine) is None


def test_changing_any_part_of_an_id_breaks_it():
    customer, other = "cus_" + "0a" * 10, "cus_" + "0b" * 10
    genuine = ISSUED.issue(customer, "loan_offer", "loan_intent", None, "e-7")
    tampered = [
        genuine.replace(customer, other),
        genuine.replace("loan_offer", "product_nudge"),
        genuine[:-1] + ("0" if genuine[-1] != "0" else "1"),
        genuine[:-20] + ("0" if genuine[-20] != "0" else "1") + genuine[-19:],
        genuine[:-16],
    ]
    assert all(ISSUED.verify(t) is None for t in tampered)


def test_the_key_is_not_shown():
    assert "secret" not in repr(ISSUED)


def test_routing_reads_the_customer_from_the_form_alone():
    customer = "cus_" + "0a" * 10
    assert customer_of_action_id(ISSUED.issue(customer, "a", "m", None, "e")) == customer
    assert customer_of_action_id("not-ours") is None
