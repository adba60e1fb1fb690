"""Canonical customer ids, and the ids action ids and events name.

The identity graph (``operators.identity.graph``) decides which profile an
event lands on; these are the names it uses, and the key a producer should
give an event: its strongest identifier (the policy's ``identity.identifiers``
order), hashed into a canonical customer id.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from operators.model.action_ids import customer_of_action_id
from operators.model.identifiers import CUSTOMER_ID_PREFIX, canonical_id
from operators.model.records import Event

__all__ = [
    "CUSTOMER_ID",
    "CUSTOMER_ID_PREFIX",
    "canonical_id",
    "is_canonical_id",
    "resolve_customer",
]

CUSTOMER_ID = re.compile(r"cus_[0-9a-f]{20}")


def is_canonical_id(value: str) -> bool:
    """Whether ``value`` has the form of a canonical customer id."""
    return CUSTOMER_ID.fullmatch(value) is not None


def resolve_customer(event: Event, order: Sequence[str]) -> str:
    """The canonical id of an event's strongest identifier (for feedback, of the customer
    its action was for): the key a producer gives the event, and the id a profile
    created by it gets. Merges are the graph's business, not this function's.
    """
    if event.type == "feedback":
        action_id = event.properties.get("action_id")
        if isinstance(action_id, str):
            customer = customer_of_action_id(action_id)
            if customer is not None:
                return customer
    identifiers = event.identifiers
    for kind in order:
        identifier = identifiers.get(kind)
        if identifier is not None:
            return identifier.name
    for kind in sorted(identifiers):
        return identifiers[kind].name
    return canonical_id("event_id", event.event_id)
