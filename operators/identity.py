"""Canonical customer ids, and the ids action ids and events name.

The identity graph (``operators.identity_graph``) decides which profile an
event lands on; these are the names it uses, and the key a producer should
give an event: its strongest identifier (the policy's ``identity.identifiers``
order), hashed into a canonical customer id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from operators.action_ids import customer_of_action_id
from operators.model import Event

CUSTOMER_ID_PREFIX = "cus_"
CUSTOMER_ID = re.compile(r"cus_[0-9a-f]{20}")


def canonical_id(kind: str, value: str) -> str:
    """The canonical customer id of a profile first seen with identifier ``kind:value``."""
    digest = hashlib.blake2b(f"{kind}:{value}".encode(), digest_size=10).hexdigest()
    return CUSTOMER_ID_PREFIX + digest


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
        value = identifiers.get(kind)
        if value:
            if kind == "customer_id" and is_canonical_id(value):
                return value
            return canonical_id(kind, value)
    for kind in sorted(identifiers):
        return canonical_id(kind, identifiers[kind])
    return canonical_id("event_id", event.event_id)
