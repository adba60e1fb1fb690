"""Action ids: each action's idempotency key, signed so that feedback can only name an action
Concierge issued.

An action id is ``<customer>.<action>.<digest><tag>``. The 16 hex digits of ``digest`` are
a digest of the customer, action, moment, group and the event that opened the moment, so a
deferral and its later send, and a replay after a crash, carry the same id. The 16 hex
digits of ``tag`` are a keyed BLAKE2b MAC of everything before them under the deployment's
action key. Feedback is accepted only when its tag verifies: the check needs no memory of
what was sent, so it holds however old the action is, and nobody who lacks the key can make
an id up from a customer's email.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field

DIGEST_BYTES = 8
TAG_BYTES = 8
ACTION_ID = re.compile(r"(cus_[0-9a-f]{20})\.([A-Za-z0-9_-]+)\.([0-9a-f]{16})([0-9a-f]{16})")
PUBLIC_KEY = b"concierge: no deployment key was given"
"""The key of :data:`UNKEYED`: for tests and tools, never a deployment (the edges that run
the flow always give the deployment's key)."""


@dataclass(frozen=True, slots=True)
class ActionIds:
    """Issues and checks action ids under one key."""

    key: bytes = field(repr=False)

    def issue(
        self, customer_id: str, action: str, moment: str, group: str | None, opening_event: str
    ) -> str:
        """The id of ``action`` for this customer's moment (kind and group) opened by
        ``opening_event``: the same inputs and key always give the same id."""
        material = f"{customer_id}|{action}|{moment}|{group or ''}|{opening_event}"
        digest = hashlib.blake2b(material.encode(), digest_size=DIGEST_BYTES).hexdigest()
        unsigned = f"{customer_id}.{action}.{digest}"
        return unsigned + self._tag(unsigned)

    def verify(self, action_id: str) -> tuple[str, str] | None:
        """(customer id, action) of an id issued under this key, else None."""
        match = ACTION_ID.fullmatch(action_id)
        if match is None:
            return None
        customer, action, digest, tag = match.groups()
        if not hmac.compare_digest(tag, self._tag(f"{customer}.{action}.{digest}")):
            return None
        return customer, action

    def _tag(self, unsigned: str) -> str:
        return hashlib.blake2b(
            unsigned.encode(), key=self.key, digest_size=TAG_BYTES, person=b"action-id"
        ).hexdigest()


def keyed(secret: bytes) -> ActionIds:
    """Action ids under a deployment's secret (any length; it is hashed into a 32-byte key)."""
    return ActionIds(hashlib.sha256(b"concierge action key\0" + secret).digest())


UNKEYED = keyed(PUBLIC_KEY)


def customer_of_action_id(action_id: str) -> str | None:
    """The canonical customer id an action id names, judged by its form alone (routing an
    event whose id ingest has already verified)."""
    match = ACTION_ID.fullmatch(action_id)
    return match.group(1) if match else None


def action_of_action_id(action_id: str) -> str | None:
    """The action an action id names, judged by its form alone (feedback ingest has
    already verified)."""
    match = ACTION_ID.fullmatch(action_id)
    return match.group(2) if match else None
