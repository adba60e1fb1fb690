"""Identifiers as the engine compares them: normalised, or rejected with a reason.

Emails are trimmed and case-folded; phones become E.164 (the region comes
from the event's ``context.region``, else the policy's ``defaults.phone_region``);
empty values, values the policy blocks (``noreply@*``) and phones that cannot
be a number are rejected, so they never name or link a customer.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import phonenumbers

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


class Rejection(StrEnum):
    """Why an identifier value was not used."""

    EMPTY = "empty"
    BLOCKED = "blocked"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class IdentifierRules:
    """The policy's ``identity`` block, compiled."""

    order: tuple[str, ...] = KNOWN_IDENTIFIERS
    limits: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    blocked: Mapping[str, tuple[re.Pattern[str], ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    phone_region: str | None = None
    tells_kinds: bool = False
    """Whether the identity step tells each event's customer which identifier types its
    profile holds (a policy with ``reachability`` needs it)."""

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
            re.compile(fnmatch.translate(_pattern(kind, pattern)), re.IGNORECASE)
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
    )


def _comparable(kind: str, value: str) -> str:
    value = value.strip()
    return value.casefold() if kind == "email" else value


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


def normalise_all(
    identifiers: Mapping[str, str] | None,
    rules: IdentifierRules,
    region: str | None = None,
    cache: NormalCache | None = None,
) -> tuple[dict[str, str], list[tuple[str, Rejection]]]:
    """The usable identifiers of an event, and the kinds rejected with their reasons.

    ``cache`` remembers the normal forms already found (a phone takes tens of microseconds
    to parse, and a customer sends the same identifiers again and again).
    """
    usable: dict[str, str] = {}
    rejected: list[tuple[str, Rejection]] = []
    for kind, value in (identifiers or {}).items():
        if cache is None:
            normal = normalise(kind, value, rules, region)
        else:
            key = (kind, value, region)
            normal = cache.get(key) or cache.put(key, normalise(kind, value, rules, region))
        if isinstance(normal, Rejection):
            rejected.append((kind, normal))
        else:
            usable[kind] = normal
    return usable, rejected


class NormalCache:
    """The normal forms of the latest identifiers seen, at most ``size`` of them: when full,
    it starts again empty (cheaper than keeping an order, and the forms never change)."""

    __slots__ = ("_forms", "_size")

    def __init__(self, size: int = 16384) -> None:
        self._forms: dict[tuple[str, str, str | None], str | Rejection] = {}
        self._size = size

    def get(self, key: tuple[str, str, str | None]) -> str | Rejection | None:
        return self._forms.get(key)

    def put(self, key: tuple[str, str, str | None], normal: str | Rejection) -> str | Rejection:
        if len(self._forms) >= self._size:
            self._forms.clear()
        self._forms[key] = normal
        return normal


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
