"""Policies with measurement: the reference policy plus holdouts and conversions."""

from __future__ import annotations

from operators.policy.compiled import Policy
from operators.policy.load import load_policy
from tests.conftest import REFERENCE_POLICY

PINNED = """
holdouts:
  salt: h2-2026
  global: {share: 0.05, categories: [marketing, retention]}
  actions: {product_nudge: 0.10, cart_recovery: 0.10}

conversions:
  purchase: {within: 3d}
  loan_application: {within: 14d, actions: [loan_offer]}
"""
"""The sections as ``policy-full.yaml`` pins them."""


def measured_policy_text(sections: str = PINNED) -> str:
    return REFERENCE_POLICY.read_text() + "\n" + sections


def measured_policy(sections: str = PINNED) -> Policy:
    return load_policy(measured_policy_text(sections), "measured")


def holding_out(share: str, salt: str = "h2-2026", within: str = "3d") -> Policy:
    """Everyone but a vanishing few held out of product_nudge when ``share`` is 0.9999999."""
    return measured_policy(
        f"""
holdouts:
  salt: {salt}
  actions: {{product_nudge: {share}}}
conversions:
  purchase: {{within: {within}}}
"""
    )
