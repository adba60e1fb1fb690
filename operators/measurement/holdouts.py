"""Holdouts: customers deliberately not sent, so that what sending adds can be measured.

A customer's place is a stable number in [0, 1) made from the policy's salt and their
canonical customer id (and the action's name, for a per-action holdout): the first eight
bytes of ``sha256("<salt>|<customer id>")`` (``"<salt>|<customer id>|<action>"``) read as
a big-endian integer over 2**64. Under the share means held out. It depends on nothing
else, so a customer is in the same group in replay and in Kafka mode, across restarts
and however the flow is scaled, and an analyst can recompute it from the records.
"""

from __future__ import annotations

import hashlib

from operators.policy.compiled import ActionSpec, Holdouts

GLOBAL = "global"
"""The global control group's name, as a held-out decision's ``rule`` gives it."""
_SCALE = float(2**64)


def place(salt: str, customer_id: str, action: str | None = None) -> float:
    """The customer's stable place in [0, 1) for the global group, or for ``action``."""
    text = f"{salt}|{customer_id}" if action is None else f"{salt}|{customer_id}|{action}"
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def holdout_of(holdouts: Holdouts | None, customer_id: str, action: ActionSpec) -> str | None:
    """The holdout that keeps ``action`` from this customer: :data:`GLOBAL`, the action's
    own name, or None when it may be sent.

    The global group gets none of its categories' actions; of the customers it does not
    hold out of ``action``, the action's share is held out of that action alone.
    """
    if holdouts is None:
        return None
    categories = holdouts.global_categories
    if (
        holdouts.global_share > 0
        and (categories is None or action.category in categories)
        and place(holdouts.salt, customer_id) < holdouts.global_share
    ):
        return GLOBAL
    share = holdouts.action_shares.get(action.name)
    if share and place(holdouts.salt, customer_id, action.name) < share:
        return action.name
    return None
