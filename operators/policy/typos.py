"""Likely typos in a policy: names the policy may spell as it likes, so no check refuses
them, but that silently switch something off when misspelt.

An event type a signal waits for (``on: checkout_strated``) that no event has fires
nothing; a consent purpose (``consent: marketting``) that no ``consent_changed`` event
grants holds every action needing it back as ``no_consent``. Such a name is likely a typo
when the policy uses it once and it is close to a name the policy uses elsewhere, or to one
Concierge knows: it gets a warning saying which it may have meant. ``validate`` prints the
warnings (``--strict`` refuses the policy for them), and so do the commands that run it.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterator
from typing import Any

from operators.policy.checks import PathItem, Problem

KNOWN_EVENT_TYPES = frozenset(
    {
        "consent_changed",
        "erasure_requested",
        "feedback",
        "page_view",
        "product_view",
        "checkout_started",
        "purchase",
        "help_search",
        "payment_failed",
        "loan_eligibility_check",
        "loan_application",
        "test_drive_completed",
        "support_contact",
        "complaint",
        "renewal_scheduled",
        "renewed",
        "identify",
    }
)
"""Event types Concierge itself reads (consent, feedback, erasure) and those of the
reference policies and the demo's stream."""
KNOWN_PURPOSES = frozenset({"marketing"})
"""Consent purposes of the reference policies."""
CLOSE = 0.8
"""How alike two names must be (difflib's ratio) for one to be taken for the other."""


def likely_typos(document: dict[str, Any]) -> list[Problem]:
    """A warning for each name used once that is close to another the policy or Concierge
    knows, in the order the policy gives them."""
    found: list[Problem] = []
    for what, known, uses in (
        ("event type", KNOWN_EVENT_TYPES, list(event_types_named(document))),
        ("consent purpose", KNOWN_PURPOSES, list(purposes_named(document))),
    ):
        counts = Counter(name for name, _ in uses)
        for name, path in uses:
            if counts[name] > 1 or name in known:
                continue
            others = sorted((known | set(counts)) - {name})
            close = difflib.get_close_matches(name, others, n=1, cutoff=CLOSE)
            if close:
                found.append(
                    (
                        path,
                        f"{what} {name!r} is used only here and is close to {close[0]!r}: "
                        f"did you mean {close[0]!r}? (if not, nothing else names it)",
                    )
                )
    return found


def event_types_named(document: dict[str, Any]) -> Iterator[tuple[str, tuple[PathItem, ...]]]:
    """Every event type the policy names, with where (``any`` is no type)."""
    for name, signal in _mapping(document.get("signals")).items():
        for key in ("on", "unless"):
            for n, each in _names(signal.get(key) if isinstance(signal, dict) else None):
                if each != "any":
                    yield each, ("signals", name, key) if n is None else ("signals", name, key, n)
    for index, rule in enumerate(document.get("suppressions") or ()):
        when = rule.get("when") if isinstance(rule, dict) else None
        if isinstance(when, dict) and isinstance(when.get("event"), str):
            yield when["event"], ("suppressions", index, "when", "event")
    for name in _mapping(document.get("conversions")):
        yield name, ("conversions", name)
    for n, each in _names(document.get("event_types")):
        yield each, ("event_types",) if n is None else ("event_types", n)


def purposes_named(document: dict[str, Any]) -> Iterator[tuple[str, tuple[PathItem, ...]]]:
    """Every consent purpose an action needs, with where."""
    for name, action in _mapping(document.get("actions")).items():
        if isinstance(action, dict) and isinstance(action.get("consent"), str):
            yield action["consent"], ("actions", name, "consent")


FieldUse = tuple[str, tuple[str, ...] | None, tuple[PathItem, ...]]
"""A field the policy reads from events: its path (``properties.x``), the event types it
is read from (None: every event), and where the policy names it."""


def fields_named(document: dict[str, Any]) -> Iterator[FieldUse]:
    """Every event field the policy reads, from which events, with where: a signal's
    ``group_by``, ``at`` and ``text_field`` from the events it counts, an attribute from
    every event, a suppression's ``same`` from the event (or feedback) that starts it."""
    for name, signal in _mapping(document.get("signals")).items():
        if not isinstance(signal, dict):
            continue
        types = tuple(each for _, each in _names(signal.get("on")) if each != "any")
        for key in ("group_by", "at", "text_field"):
            if isinstance(signal.get(key), str) and types:
                yield signal[key], types, ("signals", name, key)
    for name, path in _mapping(document.get("attributes")).items():
        if isinstance(path, str):
            yield path, None, ("attributes", name)
    for index, rule in enumerate(document.get("suppressions") or ()):
        if not isinstance(rule, dict):
            continue
        when, same = _mapping(rule.get("when")), _mapping(rule.get("suppress")).get("same")
        starts = (
            when.get("event") if "event" in when else "feedback" if "feedback" in when else None
        )
        if isinstance(same, str) and isinstance(starts, str):  # a signal starts it with no event
            yield same, (starts,), ("suppressions", index, "suppress", "same")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _names(value: Any) -> Iterator[tuple[int | None, str]]:
    """A name, or a list of them (with their index)."""
    if isinstance(value, str):
        yield None, value
    elif isinstance(value, list):
        yield from ((n, each) for n, each in enumerate(value) if isinstance(each, str))
