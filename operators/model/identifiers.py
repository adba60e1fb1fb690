"""Identifiers as the engine compares them: normalised, or rejected with a reason.

Emails are trimmed and case-folded; phones become E.164 (the region comes
from the event's ``context.region``, else the policy's ``defaults.phone_region``);
empty values, values the policy blocks (``noreply@*``) and phones that cannot
be a number are rejected, so they never name or link a customer.

Once normalised, a value is only carried as an :class:`Identifier`: its keyed digest
(what the identity graph stores and compares), its masked form (for audit records and
tools) and the canonical id a profile it starts would take. The value itself goes no
further than ingest, so no snapshot, graph or output holds it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import string
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

import phonenumbers

from operators.model.durations import parse_duration_ms

KNOWN_IDENTIFIERS = (
    "customer_id",
    "crm_id",
    "loyalty_id",
    "email",
    "phone",
    "device_id",
    "anonymous_id",
)
PERSON_IDENTIFIERS = frozenset({"customer_id", "crm_id", "loyalty_id", "email", "phone"})
"""Identifiers that name a person, not a browser or a device."""
DEFAULT_LIMITS: Mapping[str, int] = MappingProxyType(
    {
        "customer_id": 10,
        "crm_id": 10,
        "loyalty_id": 10,
        "email": 10,
        "phone": 10,
        "device_id": 100,
        "anonymous_id": 100,
    }
)
"""How many values of each identifier type one profile may hold where the policy's
``identity.limits`` does not say: every type has a limit, so what one profile costs the
graph is bounded. A person gathers a few emails and phones over the years, and of the
business's own ids a few (duplicate records, a replaced card): 10 is several times that. A
browser gets a new anonymous id whenever its cookie goes (cleared, or kept only 7 days, as
Safari keeps one a script sets) and a device a new id when its app is installed again: 100
is two years of a new cookie every week, each linked by a login. Past that, what sends one
new anonymous id after another is a bot, a scraper or a broken tag, not a person."""


CUSTOMER_ID_PREFIX = "cus_"
DIGEST_BYTES = 16
"""HMAC-SHA256 truncated to 128 bits: the graph's keys stay short, and finding two values
with one digest stays out of reach."""
PUBLIC_IDENTITY_KEY = b"concierge: no identity key was given"
"""The key of :data:`UNKEYED_IDENTITY`: for tests and tools, never a deployment (the edges
that run the flow always give the deployment's key)."""


def canonical_id(kind: str, value: str) -> str:
    """The canonical customer id of a profile first seen with identifier ``kind:value``."""
    digest = hashlib.blake2b(f"{kind}:{value}".encode(), digest_size=10).hexdigest()
    return CUSTOMER_ID_PREFIX + digest


class Identifier(NamedTuple):
    """A normalised identifier as the engine carries it: never the value itself."""

    digest: str
    """HMAC-SHA256 of ``kind:value`` under the deployment's identity key (hex, 128 bits)."""
    masked: str
    """Enough to recognise, not to contact (:func:`mask`)."""
    name: str
    """The canonical customer id a profile this identifier starts is given."""


@dataclass(frozen=True, slots=True)
class IdentityKey:
    """Digests identifiers under the deployment's identity key."""

    key: bytes = field(repr=False)

    def identify(self, kind: str, normal: str) -> Identifier:
        """The :class:`Identifier` of a normalised value."""
        return Identifier(self.digest(kind, normal), mask(kind, normal), canonical_id(kind, normal))

    def digest(self, kind: str, value: str) -> str:
        """The keyed digest of ``kind:value`` (hex)."""
        mac = hmac.digest(self.key, f"{kind}:{value}".encode(), "sha256")
        return mac[:DIGEST_BYTES].hex()

    def identify_normalised(self, normalised: Mapping[str, str]) -> dict[str, Identifier]:
        """:meth:`identify` each of an event's normalised identifiers."""
        return {kind: self.identify(kind, value) for kind, value in normalised.items()}

    @property
    def check(self) -> str:
        """A digest that tells this key from another, kept with what it digested: a graph
        opened under another key would find none of its customers."""
        return self.digest("key-check", "concierge")


UNKEYED_IDENTITY = IdentityKey(PUBLIC_IDENTITY_KEY)


class Rejection(StrEnum):
    """Why an identifier value was not used."""

    EMPTY = "empty"
    BLOCKED = "blocked"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class IdentifierRules:
    """The policy's ``identity`` block, compiled."""

    order: tuple[str, ...] = KNOWN_IDENTIFIERS
    limits: Mapping[str, int] = field(default_factory=lambda: DEFAULT_LIMITS)
    """Per identifier type, the most values one profile holds: the limits given, and
    :data:`DEFAULT_LIMITS` for the types they leave out."""
    blocked: Mapping[str, tuple[re.Pattern[str], ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    phone_region: str | None = None
    tells_kinds: bool = False
    """Whether the identity step tells each event's customer which identifier types its
    profile holds (a policy with ``reachability`` needs it)."""
    retention: int | None = None
    """``identity.retention`` in ms: a profile with no event for this long leaves the graph
    (None: profiles stay)."""

    def __post_init__(self) -> None:  # a type the limits given leave out has its default
        if not DEFAULT_LIMITS.keys() <= self.limits.keys():
            object.__setattr__(self, "limits", MappingProxyType({**DEFAULT_LIMITS, **self.limits}))

    def rank(self, kind: str) -> int:
        """Strength of an identifier kind: 0 is the strongest."""
        try:
            return self.order.index(kind)
        except ValueError:
            return len(self.order)


def compile_rules(
    identity: Mapping[str, Any], phone_region: str | None, tells_kinds: bool = False
) -> IdentifierRules:
    """Compile the policy's ``identity`` block; blocked patterns use ``*`` and ``?``."""
    blocked = {
        kind: tuple(
            re.compile(fnmatch.translate(_pattern(kind, pattern)), re.IGNORECASE | re.ASCII)
            for pattern in patterns
        )
        for kind, patterns in identity.get("blocked", {}).items()
    }
    return IdentifierRules(
        order=tuple(identity.get("identifiers", KNOWN_IDENTIFIERS)),
        limits=MappingProxyType(dict(identity.get("limits", {}))),
        blocked=MappingProxyType(blocked),
        phone_region=phone_region,
        tells_kinds=tells_kinds,
        retention=parse_duration_ms(identity["retention"]) if "retention" in identity else None,
    )


def _comparable(kind: str, value: str) -> str:
    value = value.strip()
    return _email(value) if kind == "email" else value


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _email(value: str) -> str:
    """An address as compared: composed (NFC), its ASCII letters in lower case, nothing
    else folded. Folding more would make two mailboxes one, and an erasure of one erase
    both: ``casefold`` makes ``ſ`` an ``s`` and ``ß`` an ``ss``, ``lower`` makes the Kelvin
    sign a ``k``, and NFC itself makes it a ``K``, so where composing would put an ASCII
    character in place of another, the address is kept as written."""
    value = value.translate(_ASCII_LOWER)  # first: a lower-case letter may compose where
    composed = unicodedata.normalize("NFC", value)  # its capital does not (w and a ring)
    return composed if composed == value or _keeps_ascii(value, composed) else value


def _keeps_ascii(original: str, composed: str) -> bool:
    """Whether every ASCII character of ``composed`` was one of ``original``, in order
    (composing may merge an ASCII letter and its accent into a non-ASCII one, never the
    reverse)."""
    written = iter(ch for ch in original if ch < "\x80")
    return all(any(ch == was for was in written) for ch in composed if ch < "\x80")


def _pattern(kind: str, pattern: str) -> str:
    """A blocked pattern in the form values are compared in (a phone's without separators)."""
    pattern = _comparable(kind, pattern)
    return _SEPARATORS.sub("", pattern) if kind == "phone" else pattern


_SEPARATORS = re.compile(r"[\s().\-/]")


def normalise(
    kind: str, value: str, rules: IdentifierRules, region: str | None = None
) -> str | Rejection:
    """The normal form of one identifier, or why it cannot be used.

    A phone is blocked when a pattern matches it as written, its digits, its E.164 form
    (with or without the ``+``) or its national number, so ``+1 123 456 7890`` is
    blocked by ``1234567890``.
    """
    value = _comparable(kind, value)
    if not value:
        return Rejection.EMPTY
    patterns = rules.blocked.get(kind, ())
    if kind == "phone":
        if any(p.match(value) or p.match(_digits(value)) for p in patterns):
            return Rejection.BLOCKED
        number = _phone(value, region or rules.phone_region)
        if number is None:
            return Rejection.INVALID
        phone = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        national = phonenumbers.national_significant_number(number)
        if any(p.match(phone) or p.match(phone[1:]) or p.match(national) for p in patterns):
            return Rejection.BLOCKED
        return phone
    if any(p.match(value) for p in patterns):
        return Rejection.BLOCKED
    return value


def identify_all(
    identifiers: Mapping[str, str] | None,
    rules: IdentifierRules,
    key: IdentityKey,
    region: str | None = None,
    cache: NormalCache | None = None,
) -> tuple[dict[str, Identifier], list[tuple[str, Rejection]]]:
    """The usable identifiers of an event as :class:`Identifier`, and the kinds rejected
    with their reasons.

    ``cache`` remembers what it found for the latest values (a phone takes tens of
    microseconds to parse, and a customer sends the same identifiers again and again).
    """
    usable: dict[str, Identifier] = {}
    rejected: list[tuple[str, Rejection]] = []
    for kind, value in (identifiers or {}).items():
        found = cache.get((kind, value, region)) if cache is not None else None
        if found is None:
            normal = normalise(kind, value, rules, region)
            found = normal if isinstance(normal, Rejection) else key.identify(kind, normal)
            if cache is not None:
                cache.put((kind, value, region), found)
        if isinstance(found, Rejection):
            rejected.append((kind, found))
        else:
            usable[kind] = found
    return usable, rejected


Found = Identifier | Rejection


class NormalCache:
    """What :func:`identify_all` found for the latest values seen, at most ``size`` of them:
    when full, it starts again empty (cheaper than keeping an order, and nothing found ever
    changes). It lives in memory only."""

    __slots__ = ("_forms", "_size")

    def __init__(self, size: int = 16384) -> None:
        self._forms: dict[tuple[str, str, str | None], Found] = {}
        self._size = size

    def get(self, key: tuple[str, str, str | None]) -> Found | None:
        return self._forms.get(key)

    def put(self, key: tuple[str, str, str | None], found: Found) -> None:
        if len(self._forms) >= self._size:
            self._forms.clear()
        self._forms[key] = found


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def _phone(value: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(value, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return number


def mask(kind: str, value: str) -> str:
    """A value safe for logs and audit records: enough to recognise, not to contact."""
    if kind == "email" and "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if kind == "phone":
        return f"{value[:3]}******{value[-2:]}" if len(value) > 5 else "***"
    if len(value) <= 4:
        return "***"
    return f"{value[:2]}***{value[-2:]}"
