"""The identity graph: identifiers stitched into profiles, merges, and merge protection.

Profiles are numbered in the order they are created; when identifiers of
several profiles turn out to be one person, the oldest profile survives and
the others are retired into it, so the final canonical customer id of a
group of profiles does not depend on the order their links arrive in.
Linking goes from the event's strongest identifier outwards, and a link that
would put more identifiers of a kind into one profile than the policy's
``identity.limits`` allow is refused (a shared tablet used by forty emails
must not fuse forty people).

The graph lives in a key-value store (RocksDB in the flow, a dict in tests).
Every call to :meth:`IdentityGraph.resolve` is one numbered operation whose
undo record is written with it, so the graph can be rolled back to the
operation a recovery snapshot recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from operators.identifiers import PERSON_IDENTIFIERS, IdentifierRules, mask
from operators.identity import canonical_id

MAX_HISTORY = 50
MAX_CACHED = 50_000
"""Profiles the graph keeps decoded (with their identifiers' lookups); past it the cache starts
again empty. About 1 KB each: a cache of the customers active now, not of everyone."""
_SEQ = b"s"
_NEXT = b"n"


class KeyValue(Protocol):
    """The store under the graph: bytes to bytes, with atomic batches."""

    def get(self, key: bytes) -> bytes | None: ...

    def write(self, changes: Mapping[bytes, bytes | None]) -> None:
        """Apply every change at once; ``None`` deletes the key."""
        ...

    def keys_from(self, prefix: bytes) -> Iterator[bytes]:
        """Keys starting with ``prefix``, in order."""
        ...


class DictStore:
    """An in-memory :class:`KeyValue`, for tests and replay."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def write(self, changes: Mapping[bytes, bytes | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value

    def keys_from(self, prefix: bytes) -> Iterator[bytes]:
        return iter(sorted(k for k in self.data if k.startswith(prefix)))


@dataclass(frozen=True, slots=True)
class Merge:
    """Profile ``retired`` became part of ``survivor``."""

    retired: str
    survivor: str
    identifiers: tuple[tuple[str, str], ...]
    """The event's identifiers that linked them (kind, masked value)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A link the policy refused: ``identifier`` stays out of ``profile``."""

    profile: str
    other: str | None
    """The profile the identifier belongs to, when it already had one."""
    identifier: tuple[str, str]
    limit: str


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where an event lands, and what its identifiers changed in the graph."""

    customer_id: str
    merges: tuple[Merge, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    known_person: bool = False
    created: bool = False
    kinds: tuple[str, ...] = ()
    """The identifier types the profile the event lands on holds."""
    gained: tuple[str, ...] = ()
    """The identifier types of which that profile holds a value it did not before the event
    (stated by it, or brought by a merge)."""


@dataclass(slots=True)
class _Profile:
    number: int
    customer_id: str
    identifiers: dict[str, list[str]]
    into: int | None

    def encode(self) -> bytes:
        return orjson.dumps(
            {"n": self.number, "id": self.customer_id, "ids": self.identifiers, "into": self.into}
        )

    @staticmethod
    def decode(raw: bytes) -> _Profile:
        data = orjson.loads(raw)
        return _Profile(data["n"], data["id"], data["ids"], data["into"])


def _names_a_person(profile: _Profile) -> bool:
    """Whether a profile holds an identifier of a person (not only a browser or device)."""
    return not PERSON_IDENTIFIERS.isdisjoint(profile.identifiers)  # no kind is ever empty


def _identifier_key(kind: str, value: str) -> bytes:
    return b"i\x00" + kind.encode() + b"\x00" + value.encode()


def _profile_key(number: int) -> bytes:
    return b"p\x00%012d" % number


def _history_key(number: int) -> bytes:
    return b"h\x00%012d" % number


def _customer_key(customer_id: str) -> bytes:
    return b"c\x00" + customer_id.encode()


UNDO_PREFIX = b"u\x00"
"""The keys of undo records, which only a flow that may be rolled back needs."""


def _undo_key(seq: int) -> bytes:
    return UNDO_PREFIX + b"%016d" % seq


class IdentityGraph:
    """Resolves events' identifiers to profiles, one operation at a time."""

    def __init__(self, store: KeyValue, rules: IdentifierRules) -> None:
        self._store = store
        self._rules = rules
        self._profiles: dict[int, _Profile] = {}
        self._numbers: dict[tuple[str, str], int] = {}
        """Decoded profiles and identifier lookups, written through: the graph has one
        owner, so what it last wrote is what the store holds."""

    @property
    def sequence(self) -> int:
        """The number of the last operation applied."""
        raw = self._store.get(_SEQ)
        return int(raw) if raw is not None else 0

    def resolve(self, identifiers: Mapping[str, str], at: int, event_id: str) -> Resolution:
        """Stitch an event's (normalised, non-empty) identifiers into the graph and say
        which profile the event belongs to."""
        try:
            return self._resolve(identifiers, at, event_id)
        except BaseException:
            self._forget_cache()
            raise

    def _resolve(self, identifiers: Mapping[str, str], at: int, event_id: str) -> Resolution:
        if len(self._profiles) > MAX_CACHED:
            self._forget_cache()
        known = self._cached_profile(identifiers)
        if known is not None:
            return Resolution(
                known.customer_id,
                known_person=_names_a_person(known),
                kinds=tuple(known.identifiers),
            )
        op = _Operation(self._store, self._profiles, self._numbers)
        rules = self._rules
        ordered = sorted(identifiers.items(), key=lambda kv: (rules.rank(kv[0]), kv[1]))
        linked = tuple((k, mask(k, v)) for k, v in ordered)
        roots = [op.root_of(kind, value) for kind, value in ordered]
        first_known = roots[0]
        if first_known is not None and all(
            root is not None and root.number == first_known.number for root in roots
        ):
            return Resolution(
                first_known.customer_id,
                known_person=_names_a_person(first_known),
                kinds=tuple(first_known.identifiers),
            )
        held_before = {
            root.number: {kind: len(values) for kind, values in root.identifiers.items()}
            for root in roots
            if root is not None
        }
        first_known = next((root for root in roots if root is not None), None)
        created = first_known is None
        base = first_known if first_known is not None else op.create(*ordered[0], at, event_id)
        merges: list[Merge] = []
        refusals: list[Refusal] = []
        for kind, value in ordered:
            other = op.root_of(kind, value)
            if other is not None and other.number == base.number:
                continue
            adding = other.identifiers if other is not None else {kind: [value]}
            over = self._over_limit(base, adding)
            if over is not None:
                refusals.append(
                    Refusal(
                        base.customer_id,
                        other.customer_id if other else None,
                        (kind, mask(kind, value)),
                        over,
                    )
                )
                continue
            if other is None:
                op.add(base, kind, value)
                continue
            survivor, retired = (base, other) if base.number < other.number else (other, base)
            op.merge(retired, survivor, at, event_id, linked)
            merges.append(Merge(retired.customer_id, survivor.customer_id, linked))
            base = survivor
        landing = op.root_of(*ordered[0])
        if landing is None:
            landing = op.create(*ordered[0], at, event_id)
            created = True
        op.commit()
        person = _names_a_person(landing)
        before = held_before.get(landing.number, {})
        gained = tuple(k for k, v in landing.identifiers.items() if len(v) > before.get(k, 0))
        return Resolution(
            landing.customer_id,
            tuple(merges),
            tuple(refusals),
            person,
            created,
            tuple(landing.identifiers),
            gained,
        )

    def _cached_profile(self, identifiers: Mapping[str, str]) -> _Profile | None:
        """The common event: every identifier already belongs to one profile the cache
        holds, so nothing is read, written or linked. None when that is not sure."""
        found: _Profile | None = None
        numbers, profiles = self._numbers, self._profiles
        for kind, value in identifiers.items():
            number = numbers.get((kind, value))
            profile = profiles.get(number) if number is not None else None
            while profile is not None and profile.into is not None:
                profile = profiles.get(profile.into)
            if profile is None or (found is not None and profile is not found):
                return None
            found = profile
        return found

    def _over_limit(self, base: _Profile, adding: Mapping[str, Iterable[str]]) -> str | None:
        for kind, values in adding.items():
            limit = self._rules.limits.get(kind)
            if limit is None:
                continue
            combined = set(base.identifiers.get(kind, ())) | set(values)
            if len(combined) > limit:
                return f"{kind}: {limit}"
        return None

    @property
    def profiles_created(self) -> int:
        """How many profiles were ever created (merged ones included)."""
        raw = self._store.get(_NEXT)
        return int(raw) - 1 if raw is not None else 0

    def profile_of(self, kind: str, value: str) -> dict[str, Any] | None:
        """The live profile holding an identifier: its id, identifiers and history."""
        number = self._store.get(_identifier_key(kind, value))
        return None if number is None else self._describe(int(number))

    def profile(self, customer_id: str) -> dict[str, Any] | None:
        """The live profile a canonical customer id is (or was merged into)."""
        number = self._store.get(_customer_key(customer_id))
        return None if number is None else self._describe(int(number))

    def current_id(self, customer_id: str) -> str | None:
        """The canonical id a customer id now goes by (itself unless it was merged)."""
        found = self.profile(customer_id)
        return None if found is None else str(found["customer_id"])

    def _describe(self, number: int) -> dict[str, Any]:
        operation = _Operation(self._store)
        profile = operation.follow(number)
        return {
            "customer_id": profile.customer_id,
            "identifiers": profile.identifiers,
            "history": operation.history(profile.number),
        }

    def _forget_cache(self) -> None:
        self._profiles.clear()
        self._numbers.clear()

    def roll_back(self, to_sequence: int) -> int:
        """Undo every operation after ``to_sequence``; return how many were undone."""
        self._forget_cache()
        undone = 0
        while (seq := self.sequence) > to_sequence:
            raw = self._store.get(_undo_key(seq))
            if raw is None:
                raise RuntimeError(f"identity graph: no undo record for operation {seq}")
            changes: dict[bytes, bytes | None] = {
                bytes.fromhex(k): (bytes.fromhex(v) if v is not None else None)
                for k, v in orjson.loads(raw)
            }
            changes[_undo_key(seq)] = None
            self._store.write(changes)
            undone += 1
        return undone

    def clear(self) -> None:
        """Forget everything: the graph as it was before its first operation."""
        self._forget_cache()
        keys: list[bytes] = []
        for prefix in (b"i\x00", b"p\x00", b"h\x00", b"c\x00", b"u\x00"):
            keys.extend(self._store.keys_from(prefix))
        self._store.write(dict.fromkeys([*keys, _SEQ, _NEXT]))

    def forget_undo(self, up_to: int) -> None:
        """Drop undo records of operations up to ``up_to``: they can no longer be rolled back."""
        doomed = []
        for key in self._store.keys_from(b"u\x00"):
            if int(key[2:]) > up_to:
                break
            doomed.append(key)
        if doomed:
            self._store.write(dict.fromkeys(doomed))


class _Operation:
    """The writes of one resolve, buffered, with the values they replace."""

    def __init__(
        self,
        store: KeyValue,
        profiles: dict[int, _Profile] | None = None,
        numbers: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self._store = store
        self._writes: dict[bytes, bytes | None] = {}
        self._old: dict[bytes, bytes | None] = {}
        self._profiles: dict[int, _Profile] = {} if profiles is None else profiles
        self._numbers: dict[tuple[str, str], int] = {} if numbers is None else numbers

    def _get(self, key: bytes) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        return self._store.get(key)

    def _put(self, key: bytes, value: bytes | None) -> None:
        if key not in self._old:
            self._old[key] = self._store.get(key)
        self._writes[key] = value

    def follow(self, number: int) -> _Profile:
        while True:
            profile = self._profiles.get(number)
            if profile is None:
                raw = self._get(_profile_key(number))
                if raw is None:
                    raise RuntimeError(f"identity graph: profile {number} is missing")
                profile = self._profiles[number] = _Profile.decode(raw)
            if profile.into is None:
                return profile
            number = profile.into

    def root_of(self, kind: str, value: str) -> _Profile | None:
        number = self._numbers.get((kind, value))
        if number is None:
            raw = self._get(_identifier_key(kind, value))
            if raw is None:
                return None
            number = self._numbers[kind, value] = int(raw)
        return self.follow(number)

    def create(self, kind: str, value: str, at: int, event_id: str) -> _Profile:
        raw = self._get(_NEXT)
        number = int(raw) if raw is not None else 1
        self._put(_NEXT, b"%d" % (number + 1))
        profile = _Profile(number, canonical_id(kind, value), {kind: [value]}, None)
        self._put(
            _history_key(number),
            orjson.dumps(
                [
                    {
                        "at": at,
                        "event": "created",
                        "event_id": event_id,
                        "customer_id": profile.customer_id,
                    }
                ]
            ),
        )
        self._profiles[number] = profile
        self._put(_identifier_key(kind, value), b"%d" % number)
        self._put(_customer_key(profile.customer_id), b"%d" % number)
        self._save(profile)
        return profile

    def add(self, profile: _Profile, kind: str, value: str) -> None:
        profile.identifiers.setdefault(kind, []).append(value)
        self._put(_identifier_key(kind, value), b"%d" % profile.number)
        self._save(profile)

    def merge(
        self,
        retired: _Profile,
        survivor: _Profile,
        at: int,
        event_id: str,
        linked: tuple[tuple[str, str], ...],
    ) -> None:
        for kind, values in retired.identifiers.items():
            kept = survivor.identifiers.setdefault(kind, [])
            kept.extend(v for v in values if v not in kept)
        retired.into = survivor.number
        entry = {
            "at": at,
            "event": "merged",
            "event_id": event_id,
            "retired": retired.customer_id,
            "survivor": survivor.customer_id,
            "identifiers": [list(pair) for pair in linked],
        }
        retired_history = self.history(retired.number)
        merged = sorted(
            [*self.history(survivor.number), *retired_history, entry], key=lambda e: e["at"]
        )
        self._put(_history_key(survivor.number), orjson.dumps(merged[-MAX_HISTORY:]))
        self._put(
            _history_key(retired.number), orjson.dumps([*retired_history, entry][-MAX_HISTORY:])
        )
        self._save(retired)
        self._save(survivor)

    def history(self, number: int) -> list[dict[str, Any]]:
        raw = self._get(_history_key(number))
        return [] if raw is None else list(orjson.loads(raw))

    def _save(self, profile: _Profile) -> None:
        self._put(_profile_key(profile.number), profile.encode())

    def commit(self) -> None:
        """Write the operation with its undo record; an operation that changed nothing
        writes nothing (and takes no number)."""
        if not self._writes:
            return
        raw = self._store.get(_SEQ)
        seq = (int(raw) if raw is not None else 0) + 1
        self._old.setdefault(_SEQ, raw)
        undo = [[k.hex(), v.hex() if v is not None else None] for k, v in self._old.items()]
        self._writes[_SEQ] = b"%d" % seq
        self._writes[_undo_key(seq)] = orjson.dumps(undo)
        self._store.write(self._writes)
