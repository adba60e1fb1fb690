"""``concierge validate --events FILE``: what a policy listens for that a stream never has.

A policy may name any event type and any event field, so the policy alone cannot tell
``on: checkout_strated`` or ``group_by: properties.product_idd`` from a name its events
really use. A file of those events can: it is read once, in bounded memory (counts, never
the events), counting its event types, for each field the policy reads the events that
carry it, and the consent purposes its ``consent_changed`` events grant. Each name of the
policy the file never has gets a warning with where the policy names it, and with the
close name the file does have and how many events have that.
"""

from __future__ import annotations

import difflib
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from flows.replay import progress_text
from operators.policy.checks import PathItem
from operators.policy.load import Locate
from operators.policy.typos import (
    CLOSE,
    FieldUse,
    event_types_named,
    fields_named,
    purposes_named,
)

CONSENT_CHANGED = "consent_changed"
MAX_TYPE_CHARS = 128
"""The longest event type (the event schema's limit): a longer one is no event."""
MAX_TYPES = 10_000
"""Distinct event types counted beyond those the policy names (for "did you mean")."""
MAX_NAMES = 500
"""Distinct field paths counted per event type, and consent purposes, for "did you mean"."""
MAX_DEPTH = 4
"""How deep into ``properties`` and ``context`` the fields are counted."""
MAX_KEY_CHARS = 64
"""A field name longer than this is not counted as a name one may have meant."""
PROGRESS_EVERY_S = 2.0

Found = tuple[tuple[PathItem, ...], str]
"""A warning: where in the policy, and what the file says of it."""


@dataclass
class Census:
    """What an events file holds, as far as a policy's names go."""

    records: int = 0
    events: int = 0
    not_events: int = 0
    """Records that are not JSON, not an object, or have no usable ``type``."""
    types: Counter[str] = field(default_factory=Counter)
    carried: Counter[tuple[str | None, str]] = field(default_factory=Counter)
    """(event type, or None for any, field path) -> events of it carrying that field."""
    fields_of: dict[str | None, Counter[str]] = field(default_factory=dict)
    """For the types the policy reads fields from (None: any type), the field paths their
    events carry, at most :data:`MAX_NAMES` each."""
    granted: Counter[str] = field(default_factory=Counter)
    """Consent purposes, by the ``consent_changed`` events granting them."""
    read_error: str | None = None


@dataclass(frozen=True)
class Wanted:
    """What to count: the policy's field paths per event type (None: every event)."""

    fields: dict[str | None, list[tuple[str, tuple[str, ...]]]]
    types: frozenset[str]

    @staticmethod
    def of(document: dict[str, Any]) -> Wanted:
        fields: dict[str | None, list[tuple[str, tuple[str, ...]]]] = {}
        for path, types, _ in fields_named(document):
            for each in types if types is not None else (None,):
                listed = fields.setdefault(each, [])
                if path not in (known for known, _ in listed):
                    listed.append((path, tuple(path.split("."))))
        return Wanted(fields, frozenset(name for name, _ in event_types_named(document)))


def take_census(
    file: IO[bytes],
    wanted: Wanted,
    max_record_bytes: int,
    progress: Callable[[int], None] | None = None,
) -> Census:
    """Count what ``file`` (JSON lines) holds of ``wanted``; ``progress`` is told the
    records read every :data:`PROGRESS_EVERY_S` seconds. A record over
    ``max_record_bytes`` is not an event, as in replay."""
    census = Census()
    for key in wanted.fields:
        census.fields_of[key] = Counter()
    last = time.monotonic()
    for raw in _lines(file, max_record_bytes, census):
        census.records += 1
        event = _event(raw)
        if event is None:
            census.not_events += 1
            continue
        _count(census, wanted, event)
        if progress is not None and census.records % 1000 == 0:
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S:
                last = now
                progress(census.records)
    return census


def _lines(file: IO[bytes], limit: int, census: Census) -> Iterator[bytes]:
    """The file's non-blank lines; one longer than ``limit`` as ``b""`` (no event), read
    past without being held."""
    try:
        while raw := file.readline(limit + 1):
            if len(raw) > limit and not raw.endswith(b"\n"):
                while (rest := file.readline(limit + 1)) and not rest.endswith(b"\n"):
                    pass
                yield b""
            elif raw.strip():
                yield raw
    except (OSError, EOFError, zlib.error) as err:  # a damaged gzip stream
        census.read_error = f"after {census.records:,} records: {err}"


def _event(raw: bytes) -> dict[str, Any] | None:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("type")
    if not isinstance(kind, str) or not kind or len(kind) > MAX_TYPE_CHARS:
        return None
    return data


def _count(census: Census, wanted: Wanted, event: dict[str, Any]) -> None:
    kind: str = event["type"]
    census.events += 1
    if kind in census.types or kind in wanted.types or len(census.types) < MAX_TYPES:
        census.types[kind] += 1
    for key in (kind, None):
        fields = wanted.fields.get(key)
        if fields is None:
            continue
        for path, parts in fields:
            if _value(event, parts) is not None:
                census.carried[key, path] += 1
        carried = census.fields_of[key]
        for path in _paths(event):
            if path in carried or len(carried) < MAX_NAMES:
                carried[path] += 1
    if kind == CONSENT_CHANGED:
        properties = event.get("properties")
        if isinstance(properties, dict) and properties.get("granted"):
            purpose = properties.get("purpose")
            if isinstance(purpose, str) and (
                purpose in census.granted or len(census.granted) < MAX_NAMES
            ):
                census.granted[purpose] += 1


def _value(event: dict[str, Any], parts: tuple[str, ...]) -> Any:
    """The value at a ``properties.x`` / ``context.x`` path, as the engine looks it up
    (:func:`operators.model.records.lookup`)."""
    node: Any = event.get(parts[0])
    for part in parts[1:]:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _paths(event: dict[str, Any]) -> Iterator[str]:
    """Every field path an event carries a value at, down to :data:`MAX_DEPTH`."""
    for top in ("properties", "context"):
        node = event.get(top)
        if isinstance(node, dict):
            yield from _walk(node, top, 1)


def _walk(node: dict[str, Any], prefix: str, depth: int) -> Iterator[str]:
    for key, value in node.items():
        if value is None or len(key) > MAX_KEY_CHARS:
            continue
        path = f"{prefix}.{key}"
        yield path
        if isinstance(value, dict) and depth < MAX_DEPTH:
            yield from _walk(value, path, depth + 1)


def event_warnings(
    document: dict[str, Any], census: Census, name: str, locate: Locate
) -> list[Found]:
    """A warning for each event type, field and consent purpose the policy names that the
    file (called ``name``) never has, in the order the policy names them."""
    found: list[Found] = []
    found += _type_warnings(event_types_named(document), census, name, locate)
    found += _field_warnings(fields_named(document), census, name)
    found += _purpose_warnings(purposes_named(document), census, name, locate)
    return found


def _type_warnings(
    named: Iterable[tuple[str, tuple[PathItem, ...]]], census: Census, name: str, locate: Locate
) -> Iterator[Found]:
    places: dict[str, list[tuple[PathItem, ...]]] = {}
    for kind, where in named:
        places.setdefault(kind, []).append(where)
    for kind, wheres in places.items():
        if census.types[kind]:
            continue
        message = f"event type {kind!r} is in no event of {name} ({_many(census.events, 'event')})"
        message += _meant(kind, census.types, "event", "has it", "have it")
        yield wheres[0], message + _also(wheres[1:], locate)


def _field_warnings(named: Iterable[FieldUse], census: Census, name: str) -> Iterator[Found]:
    for path, types, where in named:
        for kind in types if types is not None else (None,):
            events = census.events if kind is None else census.types[kind]
            if not events or census.carried[kind, path]:
                continue  # a type the file lacks has its own warning
            of = "event" if kind is None else f"{kind} event"
            message = f"{path} is on no {of} of {name} ({_many(events, of)})"
            message += _meant(
                path, census.fields_of[kind], of, "carries it", "carry it", quote=False
            )
            yield where, message


def _purpose_warnings(
    named: Iterable[tuple[str, tuple[PathItem, ...]]], census: Census, name: str, locate: Locate
) -> Iterator[Found]:
    places: dict[str, list[tuple[PathItem, ...]]] = {}
    for purpose, where in named:
        places.setdefault(purpose, []).append(where)
    consents = census.types[CONSENT_CHANGED]
    for purpose, wheres in places.items():
        if census.granted[purpose]:
            continue
        message = (
            f"consent purpose {purpose!r} is granted by no {CONSENT_CHANGED} event of {name} "
            f"({_many(consents, CONSENT_CHANGED + ' event')}), so an action needing it is "
            "never sent"
        )
        message += _meant(purpose, census.granted, "event", "grants it", "grant it")
        yield wheres[0], message + _also(wheres[1:], locate)


def _meant(
    name: str, known: Counter[str], noun: str, one: str, more: str, quote: bool = True
) -> str:
    """``; did you mean 'x'? 1,204 events have it``, for the closest known name."""
    close = difflib.get_close_matches(name, [k for k in known if k != name], n=1, cutoff=CLOSE)
    if not close:
        return ""
    shown = repr(close[0]) if quote else close[0]
    n = known[close[0]]
    return f"; did you mean {shown}? {_many(n, noun)} {one if n == 1 else more}"


def _many(n: int, noun: str) -> str:
    """``1 event``, ``1,204 events``."""
    return f"{n:,} {noun}{'s' * (n != 1)}"


def _also(wheres: list[tuple[PathItem, ...]], locate: Locate) -> str:
    if not wheres:
        return ""
    return " (also named at " + ", ".join(_place(where, locate) for where in wheres) + ")"


def _place(where: tuple[PathItem, ...], locate: Locate) -> str:
    line = locate(where)
    dotted = ".".join(str(part) for part in where)
    return dotted if line is None else f"{dotted} (line {line})"


def census_text(census: Census, name: str) -> str:
    """One line: what the file held."""
    kinds = len(census.types)
    return (
        f"{name}: {census.records:,} records, {census.events:,} events of {kinds:,} "
        f"type{'s' * (kinds != 1)}"
    )


def not_events_text(census: Census, name: str) -> str | None:
    """One line about the records that are no events, if any."""
    if not census.not_events:
        return None
    return (
        f"{census.not_events:,} of the {census.records:,} records of {name} are not events "
        "(not JSON, not an object, no type, or too large): not counted (replay makes them "
        "dead letters)"
    )


def reading_progress(
    file: IO[bytes], size: int | None, say: Callable[[str], None]
) -> Callable[[int], None]:
    """What ``progress`` of :func:`take_census` tells ``say``: how far reading has got (of
    the file's ``size`` in bytes, compressed for gzip, when known), in replay's words."""
    started = time.monotonic()
    raw = getattr(file, "fileobj", None) or file  # a gzip file's place in its compressed bytes

    def told(records: int) -> None:
        try:
            place = int(raw.tell())
        except (OSError, ValueError):
            place = 0
        elapsed = time.monotonic() - started
        done = "" if size is None else f"{progress_text(place, size, elapsed)} "
        say(f"validate: reading {done}({records:,} records)")

    return told
