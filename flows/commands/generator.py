"""A realistic, seeded event stream for the demo and the benchmark.

Thousands of customers across web, app, point of sale and the contact
centre: browsing with repeat interest, logins that link identifiers,
checkouts (some abandoned), help searches, failed payments, loan checks,
test drives, consent changes, complaints and a few sensitive contact texts,
plus a small share of broken records that must end up as dead letters.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from operators.model.action_ids import customer_of_action_id
from operators.model.timefmt import format_ms, parse_ms

START = "2026-11-16T06:00:00Z"
TIMEZONES = ("Europe/Madrid", "Europe/London", "Europe/Berlin", "America/New_York", "Asia/Tokyo")
CATALOGUE = 400
SENSITIVE = (
    "My father passed away last week and I need to close his account",
    "I am calling from the hospital, please postpone the delivery",
    "There was a death in the family, can you pause the reminders",
    "Family emergency, I cannot pay this month",
)
ORDINARY = (
    "Where is my parcel? It said two days",
    "I was charged twice for the same order",
    "How do I change the delivery address",
    "The app keeps logging me out",
)
MINUTE = 60_000
DAY = 24 * 60 * MINUTE
BAD_SHARE = 0.004
"""The share of broken records unless told otherwise."""
MINUTES_BETWEEN_SESSIONS = 0.25
"""The generator's pace unless told otherwise: a session starts every 15 s on average."""
EVENTS_PER_SESSION = 3.95
"""Records a session writes on average (measured over 200,000 generated records, broken
ones included): what turns a span of days into a pace, :func:`minutes_between_sessions`."""
PRODUCER_KEYS = (
    "anonymous_id",
    "device_id",
    "loyalty_id",
    "phone",
    "email",
    "customer_id",
    "crm_id",
)
"""The identifier each producer knows and keys its events by: the web its cookie, the app
the device, the till the loyalty card, the contact centre the phone, a login the email
(then the back office's ids); the first of them an event carries is its key."""


def producer_key(raw: bytes) -> bytes | None:
    """The key a producer would give this record: one person's events are spread over
    partitions, as in production. Feedback, which carries no identifiers, is keyed by the
    customer its ``action_id`` names (the key of the action it is about). None for a record
    that is not a JSON object or names nobody: it is still written, and the flow
    dead-letters it."""
    try:
        record = orjson.loads(raw)
        identifiers = record.get("identifiers") or {}
        known = next((identifiers[k] for k in PRODUCER_KEYS if identifiers.get(k)), None)
        if known is None:
            known = customer_of_action_id(record["properties"]["action_id"])
        return None if known is None else str(known).encode()
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return None


@dataclass(slots=True)
class _Customer:
    number: int
    anonymous_id: str
    device_id: str | None
    email: str | None
    phone: str | None
    loyalty_id: str | None
    timezone: str
    favourite: int
    consented: bool = False


def _customer(rng: random.Random, number: int) -> _Customer:
    return _Customer(
        number=number,
        anonymous_id=f"anon-{number:06d}",
        device_id=f"dev-{number:06d}" if rng.random() < 0.5 else None,
        email=f"customer{number}@example.com" if rng.random() < 0.7 else None,
        phone=f"+3461{number:07d}" if rng.random() < 0.3 else None,
        loyalty_id=f"L{number:08d}" if rng.random() < 0.25 else None,
        timezone=rng.choice(TIMEZONES),
        favourite=rng.randrange(CATALOGUE),
    )


def minutes_between_sessions(days: float, records: int) -> float:
    """The pace at which ``records`` records cover about ``days`` days of event time."""
    return days * DAY / MINUTE / (records / EVENTS_PER_SESSION)


class Generator:
    """Events in non-decreasing time order, as JSON bytes, with a share of broken records
    among them; the same arguments give the same stream."""

    def __init__(
        self,
        customers: int = 3000,
        seed: int = 7,
        start: str = START,
        bad_share: float = BAD_SHARE,
        minutes_between_sessions: float = MINUTES_BETWEEN_SESSIONS,
    ) -> None:
        self._rng = random.Random(seed)
        self._customers = [_customer(self._rng, n) for n in range(customers)]
        self._clock = parse_ms(start)
        self._bad_share = bad_share
        self._gap = minutes_between_sessions * MINUTE
        self._pending: list[tuple[int, int, dict[str, Any]]] = []
        self._seq = 0
        self._ids = 0
        self.broken = 0
        """Broken records written so far."""
        self.first_at: int | None = None
        """The event time of the first well-formed event written (ms), once there is one."""
        self.last_at: int | None = None
        """The event time of the latest well-formed event written (ms)."""

    def events(self, count: int) -> Iterator[bytes]:
        """The next ``count`` records of the stream."""
        rng = self._rng
        for _ in range(count):
            while not self._pending or self._pending[0][0] > self._clock:
                self._session(rng.choice(self._customers))
                self._clock += int(rng.expovariate(1 / self._gap))
            if rng.random() < self._bad_share:
                self.broken += 1
                yield self._broken(rng)
                continue
            at, _, event = heapq.heappop(self._pending)
            if self.first_at is None:
                self.first_at = at
            self.last_at = at
            yield orjson.dumps(event)

    def _emit(
        self,
        customer: _Customer,
        at: int,
        event_type: str,
        channel: str,
        properties: dict[str, Any] | None = None,
        with_email: bool = False,
    ) -> None:
        self._ids += 1
        identifiers: dict[str, str] = {"anonymous_id": customer.anonymous_id}
        if channel == "app" and customer.device_id:
            identifiers = {"device_id": customer.device_id}
        if channel == "pos" and customer.loyalty_id:
            identifiers = {"loyalty_id": customer.loyalty_id}
        if channel == "contact_centre":
            identifiers = {"phone": customer.phone} if customer.phone else {}
        if (with_email or not identifiers) and customer.email:
            identifiers["email"] = customer.email
        if not identifiers:
            identifiers = {"anonymous_id": customer.anonymous_id}
        event: dict[str, Any] = {
            "event_id": f"ev-{self._ids:09d}",
            "type": event_type,
            "timestamp": format_ms(at),
            "identifiers": identifiers,
            "context": {"timezone": customer.timezone, "channel": channel},
        }
        if properties:
            event["properties"] = properties
        self._seq += 1
        heapq.heappush(self._pending, (at, self._seq, event))

    def _session(self, customer: _Customer) -> None:
        rng = self._rng
        at = self._clock
        channel = rng.choices(("web", "app", "pos", "contact_centre"), (50, 30, 12, 8))[0]
        logged_in = customer.email is not None and rng.random() < 0.5
        if logged_in:
            self._emit(customer, at, "identify", channel, with_email=True)
        if not customer.consented and customer.email and rng.random() < 0.3:
            customer.consented = True
            self._emit(
                customer,
                at,
                "consent_changed",
                channel,
                {"purpose": "marketing", "channel": "*", "granted": True},
                with_email=True,
            )
        elif customer.consented and rng.random() < 0.02:
            customer.consented = False
            self._emit(
                customer,
                at,
                "consent_changed",
                channel,
                {
                    "purpose": "marketing",
                    "channel": rng.choice(("*", "sms", "email")),
                    "granted": False,
                },
                with_email=True,
            )
        if channel == "contact_centre":
            text = rng.choice(SENSITIVE) if rng.random() < 0.05 else rng.choice(ORDINARY)
            kind = "complaint" if rng.random() < 0.25 else "support_contact"
            self._emit(customer, at + MINUTE, kind, channel, {"text": text})
            return
        if channel == "pos":
            product = f"p-{customer.favourite}"
            self._emit(customer, at, "purchase", channel, {"product_id": product, "amount": 49.9})
            return
        views = rng.randint(1, 6)
        for i in range(views):
            viewed = customer.favourite if rng.random() < 0.6 else rng.randrange(CATALOGUE)
            self._emit(
                customer,
                at + i * MINUTE,
                "product_view",
                channel,
                {"product_id": f"p-{viewed}"},
                with_email=logged_in,
            )
        at += views * MINUTE
        roll = rng.random()
        if roll < 0.15:
            self._emit(
                customer, at, "checkout_started", channel, {"cart_value": 120}, with_email=logged_in
            )
            if rng.random() < 0.5:
                self._emit(
                    customer,
                    at + rng.randint(2, 50) * MINUTE,
                    "purchase",
                    channel,
                    {"product_id": f"p-{customer.favourite}"},
                    with_email=logged_in,
                )
        elif roll < 0.25:
            for i in range(rng.randint(1, 4)):
                self._emit(
                    customer,
                    at + i * 5 * MINUTE,
                    "help_search",
                    channel,
                    {"query": "delivery times"},
                    with_email=logged_in,
                )
        elif roll < 0.30:
            self._emit(
                customer,
                at,
                "payment_failed",
                channel,
                {"reason": "card_declined"},
                with_email=logged_in,
            )
        elif roll < 0.35:
            self._emit(
                customer,
                at,
                "loan_eligibility_check",
                channel,
                {"amount": 15000},
                with_email=logged_in,
            )
        elif roll < 0.37:
            self._emit(
                customer,
                at,
                "test_drive_completed",
                channel,
                {"model": "e-200"},
                with_email=logged_in,
            )

    def _broken(self, rng: random.Random) -> bytes:
        self._ids += 1
        stamp = format_ms(self._clock)
        kind = rng.randrange(5)
        if kind == 0:
            return b'{"event_id": "ev-broken", "type": "product_view", "timestamp": '
        if kind == 1:
            return orjson.dumps(
                {"event_id": f"ev-{self._ids:09d}", "type": "product_view", "timestamp": stamp}
            )
        if kind == 2:
            return orjson.dumps(
                {
                    "event_id": f"ev-{self._ids:09d}",
                    "type": "product_view",
                    "timestamp": "2099-01-01T00:00:00Z",
                    "identifiers": {"anonymous_id": "anon-x"},
                }
            )
        if kind == 3:
            return b'{"event_id": "ev-latin1", "type": "support_contact", "text": "se\xf1or"}'
        return orjson.dumps(
            {
                "event_id": f"ev-{self._ids:09d}",
                "type": "product_view",
                "timestamp": "yesterday",
                "identifiers": {"email": "x@example.com"},
            }
        )
