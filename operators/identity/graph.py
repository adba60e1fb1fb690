"""The identity graph: identifiers stitched into profiles, merges, and merge protection.

Profiles are numbered in the order they are created; when identifiers of
several profiles turn out to be one person, the oldest profile survives and
the others are retired into it, so the final canonical customer id of a
group of profiles does not depend on the order their links arrive in.
Linking goes from the event's strongest identifier outwards, and a link that
would put more identifiers of a kind into one profile than the policy's
``identity.limits`` (or the defaults of :data:`~operators.model.identifiers.DEFAULT_LIMITS`)
allow is refused (a shared tablet used by forty emails must not fuse forty people).

Each identifier a profile holds is a key of its own, and the profile's record keeps
only how many of each kind it holds (and how many profiles were merged into it), so
adding an identifier writes a few small keys whatever the profile already holds; a merge
moves the retired profile's keys to the survivor.

The graph lives in a key-value store (RocksDB in the flow, a dict in tests). It holds
identifiers only as keyed digests, with their masked forms for people to read (see
:class:`~operators.model.identifiers.Identifier`), and remembers which key digested them: a
graph opened under another key refuses, rather than finding none of its customers.
Every call to :meth:`IdentityGraph.resolve` is one numbered operation whose
undo record is written with it, so the graph can be rolled back to the
operation a recovery snapshot recorded.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from operators.model.identifiers import (
    PERSON_IDENTIFIERS,
    UNKEYED_IDENTITY,
    Identifier,
    IdentifierRules,
    IdentityKey,
    canonical_id,
)

MAX_HISTORY = 50
MAX_CACHED = 50_000
"""Profiles the graph keeps decoded (with their identifiers' lookups); past it the cache starts
again empty. About 1 KB each: a cache of the customers active now, not of everyone."""
_SEQ = b"s"
_NEXT = b"n"
_FORMAT = b"f"
_KEY_CHECK = b"k"
_LINEAGE = b"l"
"""A token the graph is given when it starts from nothing; recovery snapshots carry it, so
a graph is known for the one the snapshots were taken with (not its numbered operations:
those are undone to a snapshot, the token stays)."""
FORMAT = b"3"
"""Format 3 keeps each identifier a profile holds under a key of its own; format 2 kept
them all in the profile's record (adding one rewrote them all), and the graphs of 0.6.0
and before (no format written) kept identifiers in clear."""


class GraphError(RuntimeError):
    """A graph this process cannot use: another format, or digested under another key."""


class MissingUndo(RuntimeError):
    """A roll back past the operations the graph can still undo."""


class KeyValue(Protocol):
    """The store under the graph: bytes to bytes, with atomic batches."""

    def get(self, key: bytes) -> bytes | None: ...

    def write(self, changes: Mapping[bytes, bytes | None]) -> None:
        """Apply every change at once; ``None`` deletes the key."""
        ...

    def keys_from(self, prefix: bytes) -> Iterator[bytes]:
        """Keys starting with ``prefix``, in order."""
        ...

    def purge(self) -> None:
        """Make sure deleted keys and values are gone from storage, not only unreachable."""
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

    def purge(self) -> None:
        """Nothing to do: a deleted key is gone from a dict."""


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
class Erasure:
    """A profile the graph forgot: its id, the ids merged into it, what it held (masked)."""

    customer_id: str
    retired: tuple[str, ...]
    identifiers: tuple[tuple[str, str], ...]


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
    held: dict[str, int]
    """Kind -> how many values of it the profile holds, kinds in the order they came (the
    values: :func:`_held_key`). A retired profile holds none: they moved to its survivor."""
    into: int | None
    merged: int = 0
    """How many profiles were merged into this one, directly or through others (what an
    erasure of it also erases; their numbers: :func:`_merged_key`)."""
    seen: int | None = None
    """The day (since the epoch) of its latest event, kept when the policy sets
    ``identity.retention``."""

    def encode(self) -> bytes:
        data: dict[str, Any] = {
            "n": self.number,
            "id": self.customer_id,
            "held": self.held,
            "into": self.into,
        }
        if self.merged:
            data["merged"] = self.merged
        if self.seen is not None:
            data["seen"] = self.seen
        return orjson.dumps(data)

    @staticmethod
    def decode(raw: bytes) -> _Profile:
        data = orjson.loads(raw)
        return _Profile(
            data["n"],
            data["id"],
            data["held"],
            data["into"],
            data.get("merged", 0),
            data.get("seen"),
        )


def _names_a_person(profile: _Profile) -> bool:
    """Whether a profile holds an identifier of a person (not only a browser or device)."""
    return not PERSON_IDENTIFIERS.isdisjoint(profile.held)  # no kind is ever held 0 times


def _identifier_key(kind: str, digest: str) -> bytes:
    return b"i\x00" + kind.encode() + b"\x00" + digest.encode()


def _profile_key(number: int) -> bytes:
    return b"p\x00%012d" % number


HELD_PREFIX = b"m\x00"


def _held_key(number: int, kind: str, index: int) -> bytes:
    """The ``index``-th value of ``kind`` profile ``number`` holds (:func:`_held_value`)."""
    return HELD_PREFIX + b"%012d\x00%s\x00%012d" % (number, kind.encode(), index)


MERGED_PREFIX = b"r\x00"


def _merged_key(number: int, index: int) -> bytes:
    """The ``index``-th profile merged into profile ``number``: its number."""
    return MERGED_PREFIX + b"%012d\x00%012d" % (number, index)


def _history_key(number: int) -> bytes:
    return b"h\x00%012d" % number


def _customer_key(customer_id: str) -> bytes:
    return b"c\x00" + customer_id.encode()


DAY_MS = 86_400_000
SEEN_PREFIX = b"a\x00"
"""Live profiles by the day of their latest event, oldest first: what retention drops."""


def _seen_key(day: int, number: int) -> bytes:
    return SEEN_PREFIX + b"%08d\x00%012d" % (day, number)


def _erased_key(digest: str) -> bytes:
    return b"x\x00" + digest.encode()


UNDO_PREFIX = b"u\x00"
"""The keys of undo records, which only a flow that may be rolled back needs."""


def _undo_key(seq: int) -> bytes:
    return UNDO_PREFIX + b"%016d" % seq


PURGE_PREFIX = b"e\x00"
"""Operations that deleted profiles: once their undo records go, so must the store's copies."""


def _purge_key(seq: int) -> bytes:
    return PURGE_PREFIX + b"%016d" % seq


class IdentityGraph:
    """Resolves events' identifiers to profiles, one operation at a time."""

    def __init__(
        self, store: KeyValue, rules: IdentifierRules, key: IdentityKey = UNKEYED_IDENTITY
    ) -> None:
        self._store = store
        self._rules = rules
        self._key = key
        check_store(store, key)
        self._profiles: dict[int, _Profile] = {}
        self._numbers: dict[tuple[str, str], int] = {}
        """Decoded profiles and identifier lookups, written through: the graph has one
        owner, so what it last wrote is what the store holds."""

    @property
    def sequence(self) -> int:
        """The number of the last operation applied."""
        raw = self._store.get(_SEQ)
        return int(raw) if raw is not None else 0

    @property
    def lineage(self) -> str | None:
        """The token this graph was given when it started from nothing (``None``: never
        given one: an empty graph, or one written by an earlier version)."""
        raw = self._store.get(_LINEAGE)
        return raw.decode() if raw is not None else None

    def begin(self) -> str:
        """Give the graph, which must be empty, a new lineage token; return it."""
        token = secrets.token_hex(8)
        self._store.write({_LINEAGE: token.encode()})
        return token

    def resolve(self, identifiers: Mapping[str, Identifier], at: int, event_id: str) -> Resolution:
        """Stitch an event's (non-empty) identifiers into the graph and say which profile the
        event belongs to."""
        try:
            return self._resolve(identifiers, at, event_id)
        except BaseException:
            self._forget_cache()
            raise

    def _resolve(self, identifiers: Mapping[str, Identifier], at: int, event_id: str) -> Resolution:
        if len(self._profiles) > MAX_CACHED:
            self._forget_cache()
        known = self._cached_profile(identifiers)
        if known is not None:
            self._seen(known, at)
            return Resolution(
                known.customer_id,
                known_person=_names_a_person(known),
                kinds=tuple(known.held),
            )
        op = _Operation(self._store, self._key, self._profiles, self._numbers)
        rules = self._rules
        ordered = sorted(identifiers.items(), key=lambda kv: (rules.rank(kv[0]), kv[0]))
        linked = tuple((kind, identifier.masked) for kind, identifier in ordered)
        roots = [op.root_of(kind, identifier.digest) for kind, identifier in ordered]
        first_known = roots[0]
        if first_known is not None and all(
            root is not None and root.number == first_known.number for root in roots
        ):
            self._seen(first_known, at, op)
            return Resolution(
                first_known.customer_id,
                known_person=_names_a_person(first_known),
                kinds=tuple(first_known.held),
            )
        held_before = {root.number: dict(root.held) for root in roots if root is not None}
        first_known = next((root for root in roots if root is not None), None)
        created = first_known is None
        base = first_known if first_known is not None else op.create(*ordered[0], at, event_id)
        merges: list[Merge] = []
        refusals: list[Refusal] = []
        for kind, identifier in ordered:
            other = op.root_of(kind, identifier.digest)
            if other is not None and other.number == base.number:
                continue
            over = self._over_limit(base, other.held if other is not None else {kind: 1})
            if over is not None:
                refusals.append(
                    Refusal(
                        base.customer_id,
                        other.customer_id if other else None,
                        (kind, identifier.masked),
                        over,
                    )
                )
                continue
            if other is None:
                op.add(base, kind, identifier)
                continue
            survivor, retired = (base, other) if base.number < other.number else (other, base)
            op.merge(retired, survivor, at, event_id, linked)
            merges.append(Merge(retired.customer_id, survivor.customer_id, linked))
            base = survivor
        landing = op.root_of(ordered[0][0], ordered[0][1].digest)
        if landing is None:
            landing = op.create(*ordered[0], at, event_id)
            created = True
        if rules.retention is not None:
            op.touch(landing, at // DAY_MS)
        op.commit()
        person = _names_a_person(landing)
        before = held_before.get(landing.number, {})
        gained = tuple(k for k, n in landing.held.items() if n > before.get(k, 0))
        return Resolution(
            landing.customer_id,
            tuple(merges),
            tuple(refusals),
            person,
            created,
            tuple(landing.held),
            gained,
        )

    def _seen(self, profile: _Profile, at: int, op: _Operation | None = None) -> None:
        """Under a retention, note a later day of activity (one write a profile a day)."""
        if self._rules.retention is None:
            return
        day = at // DAY_MS
        if profile.seen is None or profile.seen < day:
            op = op or _Operation(self._store, self._key, self._profiles, self._numbers)
            op.touch(profile, day)
            op.commit()

    def expire(self, now: int) -> tuple[Erasure, ...]:
        """Under ``identity.retention``, forget every profile whose latest event was more
        than the retention before ``now`` (to within the day it was on), as :meth:`erase`
        does but remembering nothing of them: the person coming back is simply new."""
        retention = self._rules.retention
        if retention is None:
            return ()
        last_day = (now - retention) // DAY_MS - 1
        numbers = []
        for key in self._store.keys_from(SEEN_PREFIX):
            day, number = key[len(SEEN_PREFIX) :].split(b"\x00")
            if int(day) > last_day:
                break
            numbers.append(int(number))
        if not numbers:
            return ()
        op = _Operation(self._store, self._key)
        expired = tuple(op.forget_profile(op.follow_one(n)) for n in numbers)
        op.mark_purge(self.sequence + 1)
        op.commit()
        self._forget_cache()
        return expired

    def erase(self, identifiers: Mapping[str, Identifier]) -> tuple[Erasure, ...]:
        """Forget every profile that holds one of ``identifiers``: their identifiers, merge
        history and ids. What stays is a keyed digest of each id they went by, so none is
        given again (feedback about their actions finds nobody, and a new profile of the same
        person is a stranger to it)."""
        op = _Operation(self._store, self._key)
        found: dict[int, _Profile] = {}
        for kind, identifier in identifiers.items():
            root = op.root_of(kind, identifier.digest)
            if root is not None:
                found[root.number] = root
        erased = []
        for number in sorted(found):
            erasure = op.forget_profile(found[number])
            for customer_id in (erasure.customer_id, *erasure.retired):
                op.mark_erased(customer_id)
            erased.append(erasure)
        if erased:
            op.mark_purge(self.sequence + 1)
        op.commit()
        self._forget_cache()
        return tuple(erased)

    def _cached_profile(self, identifiers: Mapping[str, Identifier]) -> _Profile | None:
        """The common event: every identifier already belongs to one profile the cache
        holds, so nothing is read, written or linked. None when that is not sure."""
        found: _Profile | None = None
        numbers, profiles = self._numbers, self._profiles
        for kind, identifier in identifiers.items():
            number = numbers.get((kind, identifier.digest))
            profile = profiles.get(number) if number is not None else None
            while profile is not None and profile.into is not None:
                profile = profiles.get(profile.into)
            if profile is None or (found is not None and profile is not found):
                return None
            found = profile
        return found

    def _over_limit(self, base: _Profile, adding: Mapping[str, int]) -> str | None:
        """The limit ``base`` would go over by taking ``adding`` (kind -> how many values),
        as ``kind: limit``. Counts suffice: a value belongs to one live profile only."""
        limits = self._rules.limits
        for kind, count in adding.items():
            limit = limits.get(kind)
            if limit is not None and base.held.get(kind, 0) + count > limit:
                return f"{kind}: {limit}"
        return None

    @property
    def profiles_created(self) -> int:
        """How many profiles were ever created (merged ones included)."""
        raw = self._store.get(_NEXT)
        return int(raw) - 1 if raw is not None else 0

    def profile_of(self, kind: str, normal: str) -> dict[str, Any] | None:
        """The live profile holding an identifier (its normal form): its id, identifiers
        (masked, and as digests) and history."""
        number = self._store.get(_identifier_key(kind, self._key.digest(kind, normal)))
        return None if number is None else self._describe(int(number))

    def profile(self, customer_id: str) -> dict[str, Any] | None:
        """The live profile a canonical customer id is (or was merged into)."""
        number = self._store.get(_customer_key(customer_id))
        return None if number is None else self._describe(int(number))

    def current_id(self, customer_id: str) -> str | None:
        """The canonical id a customer id now goes by (itself unless it was merged)."""
        number = self._store.get(_customer_key(customer_id))
        if number is None:
            return None
        return _Operation(self._store, self._key).follow(int(number)).customer_id

    def _describe(self, number: int) -> dict[str, Any]:
        operation = _Operation(self._store, self._key)
        profile = operation.follow(number)
        masks: dict[str, list[str]] = {}
        digests: dict[str, list[str]] = {}
        for _, kind, digest, masked in operation.held(profile):
            digests.setdefault(kind, []).append(digest)
            masks.setdefault(kind, []).append(masked)
        return {
            "customer_id": profile.customer_id,
            "identifiers": masks,
            "digests": digests,
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
                raise MissingUndo(f"no undo record for operation {seq}")
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
        prefixes: tuple[bytes, ...] = (b"i\x00", b"p\x00", b"h\x00", b"c\x00", b"x\x00")
        prefixes += (HELD_PREFIX, MERGED_PREFIX, SEEN_PREFIX, UNDO_PREFIX, PURGE_PREFIX)
        for prefix in prefixes:
            keys.extend(self._store.keys_from(prefix))
        self._store.write(dict.fromkeys([*keys, _SEQ, _NEXT, _FORMAT, _KEY_CHECK, _LINEAGE]))

    def forget_undo(self, up_to: int) -> None:
        """Drop undo records of operations up to ``up_to``: they can no longer be rolled back.
        If one of them deleted profiles (:meth:`erase`), the store then rewrites its files
        without what they held: the undo record was the last copy."""
        doomed = []
        for prefix in (UNDO_PREFIX, PURGE_PREFIX):
            for key in self._store.keys_from(prefix):
                if int(key[2:]) > up_to:
                    break
                doomed.append(key)
        if doomed:
            self._store.write(dict.fromkeys(doomed))
        if any(key.startswith(PURGE_PREFIX) for key in doomed):
            self._store.purge()


class _Operation:
    """The writes of one resolve, buffered, with the values they replace."""

    def __init__(
        self,
        store: KeyValue,
        key: IdentityKey,
        profiles: dict[int, _Profile] | None = None,
        numbers: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self._store = store
        self._key = key
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

    def follow_one(self, number: int) -> _Profile:
        """Profile ``number`` itself, merged or not."""
        return _Profile.decode(self._stored(_profile_key(number)))

    def _stored(self, key: bytes) -> bytes:
        """The value of a key the graph's own records say is there."""
        raw = self._get(key)
        if raw is None:
            raise RuntimeError(f"identity graph: {key!r} is missing")
        return raw

    def held(self, profile: _Profile) -> Iterator[tuple[bytes, str, str, str]]:
        """The values a live profile holds, as (key, kind, digest, masked), kind by kind in
        the order they came."""
        for kind, count in profile.held.items():
            for index in range(count):
                key = _held_key(profile.number, kind, index)
                digest, masked = _held_of(self._stored(key))
                yield key, kind, digest, masked

    def _hold(self, profile: _Profile, kind: str, value: bytes) -> None:
        """Give the profile one more value of ``kind`` (as :func:`_held_value` writes it)."""
        index = profile.held.get(kind, 0)
        self._put(_held_key(profile.number, kind, index), value)
        profile.held[kind] = index + 1

    def drop(self, key: bytes) -> None:
        self._put(key, None)

    def forget_profile(self, root: _Profile) -> Erasure:
        """Delete a live profile and every profile merged into it: identifiers, history, ids."""
        members = []
        for index in range(root.merged):
            key = _merged_key(root.number, index)
            members.append(self.follow_one(int(self._stored(key))))
            self.drop(key)
        held = []
        for key, kind, digest, masked in self.held(root):  # each read before it is dropped
            self.drop(_identifier_key(kind, digest))
            self.drop(key)
            held.append((kind, masked))
        if root.seen is not None:
            self.drop(_seen_key(root.seen, root.number))
        for profile in (root, *members):
            self.drop(_profile_key(profile.number))
            self.drop(_history_key(profile.number))
            self.drop(_customer_key(profile.customer_id))
        return Erasure(root.customer_id, tuple(p.customer_id for p in members), tuple(held))

    def touch(self, profile: _Profile, day: int) -> None:
        """Say the profile had an event on ``day`` (only written when that is a later day)."""
        if profile.seen is not None and profile.seen >= day:
            return
        if profile.seen is not None:
            self.drop(_seen_key(profile.seen, profile.number))
        profile.seen = day
        self._put(_seen_key(day, profile.number), b"")
        self._save(profile)

    def mark_purge(self, seq: int) -> None:
        self._put(_purge_key(seq), b"")

    def mark_erased(self, customer_id: str) -> None:
        self._put(_erased_key(self._key.digest("erased", customer_id)), b"")

    def _name(self, name: str) -> str:
        """``name``, unless a profile of that name was erased: then the next name derived
        from it that none was (the same in every run, as the graph is)."""
        while self._get(_erased_key(self._key.digest("erased", name))) is not None:
            name = canonical_id("erased", name)
        return name

    def root_of(self, kind: str, digest: str) -> _Profile | None:
        number = self._numbers.get((kind, digest))
        if number is None:
            raw = self._get(_identifier_key(kind, digest))
            if raw is None:
                return None
            number = self._numbers[kind, digest] = int(raw)
        return self.follow(number)

    def create(self, kind: str, identifier: Identifier, at: int, event_id: str) -> _Profile:
        raw = self._get(_NEXT)
        number = int(raw) if raw is not None else 1
        self._put(_NEXT, b"%d" % (number + 1))
        profile = _Profile(number, self._name(identifier.name), {}, None)
        self._hold(profile, kind, _held_value(identifier))
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
        self._put(_identifier_key(kind, identifier.digest), b"%d" % number)
        self._put(_customer_key(profile.customer_id), b"%d" % number)
        self._save(profile)
        return profile

    def add(self, profile: _Profile, kind: str, identifier: Identifier) -> None:
        self._hold(profile, kind, _held_value(identifier))
        self._put(_identifier_key(kind, identifier.digest), b"%d" % profile.number)
        self._save(profile)

    def merge(
        self,
        retired: _Profile,
        survivor: _Profile,
        at: int,
        event_id: str,
        linked: tuple[tuple[str, str], ...],
    ) -> None:
        for kind, count in retired.held.items():  # none of them is the survivor's already
            for index in range(count):
                key = _held_key(retired.number, kind, index)
                self._hold(survivor, kind, self._stored(key))
                self.drop(key)
        for index in range(retired.merged):
            key = _merged_key(retired.number, index)
            self._put(_merged_key(survivor.number, survivor.merged), self._stored(key))
            survivor.merged += 1
            self.drop(key)
        self._put(_merged_key(survivor.number, survivor.merged), b"%d" % retired.number)
        survivor.merged += 1
        retired.held, retired.merged, retired.into = {}, 0, survivor.number
        if retired.seen is not None:
            self.drop(_seen_key(retired.seen, retired.number))
            self.touch(survivor, retired.seen)
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
        if raw is None:  # the graph's first operation: say what it is and under which key
            self._put(_FORMAT, FORMAT)
            self._put(_KEY_CHECK, self._key.check.encode())
        self._old.setdefault(_SEQ, raw)
        undo = [[k.hex(), v.hex() if v is not None else None] for k, v in self._old.items()]
        self._writes[_SEQ] = b"%d" % seq
        self._writes[_undo_key(seq)] = orjson.dumps(undo)
        self._store.write(self._writes)


def _held_value(identifier: Identifier) -> bytes:
    """What a held key keeps: the digest (hex, so never a NUL), a NUL, the masked form. Not
    JSON: orjson's bytes keep a 4 KiB buffer, which a graph held in memory would pay for
    each value."""
    return identifier.digest.encode() + b"\x00" + identifier.masked.encode()


def _held_of(raw: bytes) -> tuple[str, str]:
    """The digest and masked form :func:`_held_value` wrote."""
    digest, _, masked = raw.partition(b"\x00")
    return digest.decode(), masked.decode()


def check_store(store: KeyValue, key: IdentityKey) -> None:
    """Refuse a graph of another format, or one digested under another key."""
    if store.get(_NEXT) is None:
        return  # empty: whatever it becomes is written by this version, under this key
    written = store.get(_FORMAT)
    if written != FORMAT:
        raise GraphError(
            f"the identity graph was written by another version ({_format_name(written)}; "
            f"this one reads graph format {FORMAT.decode()} only): start with a fresh state "
            "directory and recovery directory, see the README's known limits on upgrading"
        )
    if store.get(_KEY_CHECK) != key.check.encode():
        raise GraphError(
            "the identity graph was digested under another identity key: give the key it "
            "was written with (CONCIERGE_IDENTITY_KEY, or identity.key under the state "
            "directory); see the README's section on the identity key"
        )


def _format_name(written: bytes | None) -> str:
    if written is None:
        return "graph format 1, identifiers in clear"
    return f"graph format {written.decode()}" if written.isdigit() else "an unknown graph format"
