"""Holdout assignment: stable, close to its share, apart per action
(operators/measurement/holdouts.py)."""

import hashlib
import math

import pytest

from operators.measurement.holdouts import GLOBAL, holdout_of, place
from tests.measurement import measured_policy

IDS = [f"cus_{n:020x}" for n in range(100_000)]


def within_four_sigma(count: int, n: int, share: float) -> bool:
    return abs(count - n * share) < 4 * math.sqrt(n * share * (1 - share))


def test_a_place_is_the_documented_hash_so_an_analyst_can_recompute_it():
    digest = hashlib.sha256(b"h2-2026|cus_ana").digest()
    assert place("h2-2026", "cus_ana") == int.from_bytes(digest[:8], "big") / 2**64
    digest = hashlib.sha256(b"h2-2026|cus_ana|product_nudge").digest()
    assert place("h2-2026", "cus_ana", "product_nudge") == int.from_bytes(digest[:8], "big") / 2**64


def test_the_global_group_is_close_to_its_share_over_100000_customers():
    policy = measured_policy()
    nudge = policy.actions["product_nudge"]
    groups = [holdout_of(policy.holdouts, c, nudge) for c in IDS]
    in_global = groups.count(GLOBAL)
    assert within_four_sigma(in_global, len(IDS), 0.05)
    # of the others, 10% are held out of the nudge
    assert within_four_sigma(groups.count("product_nudge"), len(IDS) - in_global, 0.10)


def test_the_global_group_gets_no_marketing_but_still_gets_service_and_care():
    policy = measured_policy()
    in_global = [c for c in IDS[:5000] if place("h2-2026", c) < 0.05]
    assert in_global
    for customer in in_global:
        for name in ("product_nudge", "loan_offer", "win_back_offer"):
            assert holdout_of(policy.holdouts, customer, policy.actions[name]) == GLOBAL
        for name in ("help_offer", "empathy_handoff"):
            assert holdout_of(policy.holdouts, customer, policy.actions[name]) is None


def test_assignment_is_stable_and_a_new_salt_reshuffles_it():
    policy = measured_policy()
    nudge = policy.actions["product_nudge"]
    first = [holdout_of(policy.holdouts, c, nudge) for c in IDS[:20000]]
    assert first == [holdout_of(policy.holdouts, c, nudge) for c in IDS[:20000]]
    held = {c for c in IDS if place("h2-2026", c) < 0.05}
    reshuffled = {c for c in IDS if place("h3-2026", c) < 0.05}
    # independent draws overlap by about share squared
    assert within_four_sigma(len(held & reshuffled), len(IDS), 0.05 * 0.05)


def test_per_action_holdouts_are_drawn_apart_for_each_action():
    nudge = {c for c in IDS if place("h2-2026", c, "product_nudge") < 0.10}
    cart = {c for c in IDS if place("h2-2026", c, "cart_recovery") < 0.10}
    assert within_four_sigma(len(nudge & cart), len(IDS), 0.01)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ("holdouts: {salt: s, global: {share: 1.0}}", "1.0 is greater than or equal to"),
        ("holdouts: {salt: s, actions: {nudge: 0.1}}", "names no action: 'nudge'"),
        ("holdouts: {salt: s, global: {share: 0.1, categories: [promo]}}", "names no category"),
        ("holdouts: {global: {share: 0.1}}", "'salt' is a required property"),
        ("conversions: {purchase: {within: 0d}}", "must be longer than 0"),
        ("conversions: {purchase: {within: 3d, actions: [x]}}", "names no action: 'x'"),
        ("conversions: {purchase: {}}", "'within' is a required property"),
    ],
)
def test_a_bad_measurement_section_is_refused_naming_the_field(sections, message):
    from operators.policy.load import PolicyError

    with pytest.raises(PolicyError) as refused:
        measured_policy(sections)
    assert message in str(refused.value)
