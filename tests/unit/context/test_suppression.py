"""Suppressions: spells that hold actions back (operators/context/suppression.py)."""

from operators.context.suppression import start_suppressions, suppressed_by
from operators.model.bounded import MAX_GROUPS
from operators.model.state import CustomerState
from tests.conftest import make_event

DAY = 86_400_000


def test_a_suppression_holds_until_exactly_its_end(policy):
    state = CustomerState("cus_1")
    complaint = make_event("complaint", "2026-11-20T10:00:00Z")
    start_suppressions(state, policy.suppressions_by_event["complaint"], complaint.time, complaint)
    nudge = policy.actions["product_nudge"]
    end = complaint.time + 14 * DAY
    assert suppressed_by(policy, state, nudge, "push", "p-1", end - 1) == ("after-complaint", end)
    assert suppressed_by(policy, state, nudge, "push", "p-1", end) is None
    assert (
        suppressed_by(policy, state, policy.actions["help_offer"], "in_app", None, end - 1) is None
    )


def test_a_purchase_suppresses_nudges_for_the_same_product_only(policy):
    state = CustomerState("cus_1")
    purchase = make_event("purchase", "2026-11-20T10:00:00Z", {"product_id": "p-42"})
    start_suppressions(state, policy.suppressions_by_event["purchase"], purchase.time, purchase)
    nudge = policy.actions["product_nudge"]
    later = purchase.time + DAY
    assert suppressed_by(policy, state, nudge, "push", "p-42", later) is not None
    assert suppressed_by(policy, state, nudge, "push", "p-7", later) is None
    assert suppressed_by(policy, state, policy.actions["cart_recovery"], "email", None, later)


def test_a_purchase_without_a_product_suppresses_every_product(policy):
    state = CustomerState("cus_1")
    purchase = make_event("purchase", "2026-11-20T10:00:00Z", {})
    start_suppressions(state, policy.suppressions_by_event["purchase"], purchase.time, purchase)
    nudge = policy.actions["product_nudge"]
    assert suppressed_by(policy, state, nudge, "push", "p-7", purchase.time + DAY) is not None


def test_suppressed_groups_are_bounded(policy):
    state = CustomerState("cus_1")
    for n in range(MAX_GROUPS + 10):
        purchase = make_event("purchase", "2026-11-20T10:00:00Z", {"product_id": f"p-{n}"})
        start_suppressions(
            state, policy.suppressions_by_event["purchase"], purchase.time + n, purchase
        )
    assert len(state.suppressions) == MAX_GROUPS


def test_a_suppression_started_again_while_it_holds_runs_on_from_its_first_start(policy):
    state = CustomerState("cus_1")
    first = make_event("complaint", "2026-11-20T10:00:00Z")
    second = make_event("complaint", "2026-11-25T10:00:00Z")
    for complaint in (second, first):  # in either order
        start_suppressions(
            state, policy.suppressions_by_event["complaint"], complaint.time, complaint
        )
    assert state.suppressions[("after-complaint", None)] == (first.time, second.time + 14 * DAY)
    nudge = policy.actions["product_nudge"]
    assert suppressed_by(policy, state, nudge, "push", None, second.time + 13 * DAY) is not None


def test_a_new_spell_after_one_that_ended_holds_from_the_first_start_in_either_order(policy):
    """Only a decision behind the clock falls between two spells: it is held back, and the
    spells join alike whichever came first (so merges join them alike however grouped)."""
    first = make_event("complaint", "2026-10-01T10:00:00Z")
    second = make_event("complaint", "2026-11-25T10:00:00Z")
    nudge = policy.actions["product_nudge"]
    for order in ((first, second), (second, first)):
        state = CustomerState("cus_1")
        for complaint in order:
            start_suppressions(
                state, policy.suppressions_by_event["complaint"], complaint.time, complaint
            )
        assert state.suppressions[("after-complaint", None)] == (
            first.time,
            second.time + 14 * DAY,
        )
        behind = second.time - DAY
        assert suppressed_by(policy, state, nudge, "push", None, behind) is not None
        assert suppressed_by(policy, state, nudge, "push", None, second.time + 15 * DAY) is None
