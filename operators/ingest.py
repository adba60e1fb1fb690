"""Ingest: raw bytes -> a validated :class:`Event`, or a :class:`DeadLetter` saying why not."""

from __future__ import annotations

import bisect
import hashlib
from collections import deque
from functools import cache
from typing import Any

import jsonschema_rs
import orjson

import schemas
from operators.model.durations import format_duration
from operators.model.identifiers import (
    KNOWN_IDENTIFIERS,
    Identifier,
    NormalCache,
    Rejection,
    identify_all,
    mask,
)
from operators.model.records import ERASURE, DeadLetter, DeadLetterReason, Event, Origin
from operators.model.timefmt import InvalidTimestamp, format_ms, parse_ms
from operators.policy.compiled import Policy

Reason = DeadLetterReason
Identifiers = tuple[dict[str, Identifier], list[tuple[str, Rejection]]]
"""The usable identifiers of an event, and the kinds rejected with their reasons."""


WINDOW = 64
"""How many of an input's latest accepted event times (in the order they came) its clock is
agreed from: three quarters of them must reach a time for it to be agreed on, so records
stamped ahead move the clock only if they are a quarter of what the input gives."""
PACE = 10
"""A time past the agreed one still counts while it is no further past it than this many
times as long as the quarter of the window before it took to come (or ``max_future_skew``,
if longer): a quiet input moves on in longer steps than a busy one."""
TOLD_APART = 20
"""A file of fewer accepted events has too few to tell a record stamped ahead from the
file moving on: replay takes it as it is (see :attr:`Ingestor.told_apart`)."""
ClockState = tuple[list[int], int | None, int | None]
"""What a snapshot keeps of an input's clock: the window's times, the clock, the bound."""


@cache
def event_validator() -> Any:
    """``schemas/event.schema.json``, compiled once by jsonschema-rs (a compiled validator:
    under a microsecond per event)."""
    return jsonschema_rs.validator_for(schemas.load("event"))


class _Rejected(Exception):
    """A check's verdict that a record is a dead letter: the reason, and the field at fault."""

    __slots__ = ("detail", "path", "reason")

    def __init__(self, reason: DeadLetterReason, detail: str, path: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.path = path

    def dead_letter(self, raw: bytes, origin: Origin, data: Any) -> DeadLetter:
        """The dead letter of ``raw``; once ``data`` is an object, with the event id and type
        it gives (when they are strings) and the field at fault."""
        if not isinstance(data, dict):
            return DeadLetter(self.reason, self.detail, raw, origin)
        return DeadLetter(
            self.reason,
            self.detail,
            raw,
            origin,
            _text(data.get("event_id")),
            _text(data.get("type")),
            self.path,
        )


class Ingestor:
    """Accepts or rejects input records for one input partition.

    It keeps that partition's ingest clock: the latest event time its accepted events agree
    on, so that a record stamped months ahead cannot make every later event late (see
    :meth:`_accept`). An event more than ``allowed_lateness`` behind the clock is *late*:
    marked so, or a dead letter if the policy says so. A timestamp more than
    ``max_future_skew`` past the record's arrival (its broker timestamp, never later than
    when it was read) is rejected as absurd; a file has no arrival times, so replay looks
    for events past :attr:`bound` once it has read the whole file.
    """

    __slots__ = (
        "_action_ids",
        "_actions",
        "_dead_letter_late",
        "_event_types",
        "_key",
        "_lateness",
        "_max_bytes",
        "_normal",
        "_ordered",
        "_rules",
        "_skew",
        "_validate",
        "_window",
        "bound",
        "clock",
    )

    def __init__(self, policy: Policy, state: ClockState | int | None = None) -> None:
        self._validate = event_validator().validate
        self._max_bytes = policy.max_record_bytes
        self._skew = policy.max_future_skew
        self._event_types = policy.event_types
        self._rules = policy.identifier_rules
        self._key = policy.identity_key
        self._normal = NormalCache()
        self._lateness = policy.allowed_lateness
        self._dead_letter_late = policy.dead_letter_late
        self._action_ids = policy.action_ids
        self._actions = frozenset(policy.actions)
        if isinstance(state, int):  # a snapshot of before clocks were agreed on
            state = ([state], state, state)
        window, clock, bound = state if state is not None else ([], None, None)
        self._window: deque[int] = deque(window[-WINDOW:], maxlen=WINDOW)
        """The latest accepted event times, in the order they came."""
        self._ordered: list[int] = sorted(self._window)
        """The same, in time order."""
        self.clock: int | None = clock
        """The input's event time: the latest its accepted events agree on (None: none yet).
        It never goes back."""
        self.bound: int | None = bound
        """Past this time an event is further ahead than the input's latest events agree it
        may be (None: fewer than two accepted)."""

    @property
    def told_apart(self) -> bool:
        """Whether enough events were accepted to tell one stamped ahead from the input
        moving on (:data:`TOLD_APART`)."""
        return len(self._window) >= TOLD_APART

    @property
    def state(self) -> ClockState:
        """What a snapshot keeps of the clock."""
        return list(self._window), self.clock, self.bound

    def _accept(self, time: int) -> None:
        """Count ``time`` in the window, and agree the clock and its bound again.

        The agreed time is the one three quarters of the window reach; the bound is
        ``max_future_skew`` past it, or :data:`PACE` times as long as the quarter of the
        window just before it took, if longer (half the window may be old events, a
        quarter far ahead, and neither widens it). The clock is the latest time in the
        window within the bound, and never goes back. One record alone is no clock (it may
        be the one stamped ahead); of two, the earlier is agreed on."""
        window, ordered = self._window, self._ordered
        if len(window) == WINDOW:
            del ordered[bisect.bisect_left(ordered, window[0])]
        window.append(time)
        bisect.insort(ordered, time)
        count = len(ordered)
        if count < 2:
            return  # one record alone is no clock: it may be the one stamped ahead
        agreed = ordered[(count - 1) * 3 // 4]
        took = agreed - ordered[(count - 1) // 2]
        self.bound = bound = agreed + max(self._skew, PACE * took)
        clock = ordered[bisect.bisect_right(ordered, bound) - 1]
        if self.clock is None or clock > self.clock:
            self.clock = clock

    def ingest(
        self,
        raw: bytes,
        origin: Origin,
        arrival: int | None = None,
        received_at: float = 0.0,
    ) -> Event | DeadLetter:
        """Return the event ``raw`` holds, or the dead letter that explains why it holds none.

        ``arrival`` is when the record reached the broker (ms), if known.
        """
        data: Any = None
        try:
            self._check_size(raw)
            data = _parse(raw)
            _check_object(data)
            self._check_schema(data)
            event_type: str = data["type"]
            self._check_event_type(event_type)
            if event_type == ERASURE and "timestamp" not in data:
                time = self.clock if self.clock is not None else 0
            else:
                time = _timestamp(data["timestamp"])
            self._check_future(time, arrival)
            if event_type == "feedback":
                self._check_action_id(data["properties"]["action_id"])
            context = data.get("context") or {}
            identifiers, rejected = self._identifiers(data, context)
            late = self._late(time)
        except _Rejected as verdict:
            return verdict.dead_letter(raw, origin, data)
        clock = self.clock
        self._accept(time)
        return Event(
            data["event_id"] if "event_id" in data else _erasure_id(raw),
            event_type,
            time,
            identifiers,
            context,
            data.get("properties") or {},
            origin,
            received_at,
            clock if clock is not None and clock > time else time,  # input's time as it was read
            # Most events reject no identifier: spare them building two generators.
            _refusals(rejected) if rejected else (),
            _blocked(data, rejected) if rejected else (),
            late,
        )

    def _check_size(self, raw: bytes) -> None:
        """Reject a record over ``max_record_bytes`` before any work is spent parsing it."""
        if len(raw) > self._max_bytes:
            raise _Rejected(
                Reason.OVERSIZE,
                f"record is {len(raw)} bytes, over the limit of {self._max_bytes}",
            )

    def _check_schema(self, data: dict[str, Any]) -> None:
        """Reject an object that breaks ``schemas/event.schema.json``, naming the field."""
        try:
            self._validate(data)
        except jsonschema_rs.ValidationError as err:
            path, detail = _explain(err, data)
            raise _Rejected(Reason.SCHEMA_VIOLATION, detail, path) from None

    def _check_event_type(self, event_type: str) -> None:
        """Reject an event type outside the policy's ``event_types``, when it lists them."""
        if (
            self._event_types is not None
            and event_type not in self._event_types
            and event_type != ERASURE  # a person's right to erasure is never a dead letter
        ):
            raise _Rejected(
                Reason.UNKNOWN_EVENT_TYPE,
                f"event type {event_type!r} is not in the policy's event_types",
                "type",
            )

    def _check_future(self, time: int, arrival: int | None) -> None:
        """Reject a ``time`` more than ``max_future_skew`` past ``arrival``, when the source
        knows it."""
        if arrival is not None and time - arrival > self._skew:
            raise _Rejected(
                Reason.FUTURE_TIMESTAMP,
                f"timestamp {format_ms(time)} is more than {format_duration(self._skew)} past "
                f"the record's arrival {format_ms(arrival)}",
                "timestamp",
            )

    def _check_action_id(self, action_id: str) -> None:
        """Reject feedback about an action Concierge did not issue, or the policy lacks."""
        issued = self._action_ids.verify(action_id)
        if issued is None:
            raise _Rejected(
                Reason.UNKNOWN_ACTION_ID,
                "feedback names an action_id Concierge did not issue",
                "properties.action_id",
            )
        if issued[1] not in self._actions:
            raise _Rejected(
                Reason.UNKNOWN_ACTION_ID,
                f"feedback names an action the policy does not have: {issued[1]!r}",
                "properties.action_id",
            )

    def _identifiers(self, data: dict[str, Any], context: dict[str, Any]) -> Identifiers:
        """The event's identifiers, normalised; reject an event that gives identifiers but
        none that can be used."""
        region = context.get("region")
        found = identify_all(
            data.get("identifiers"),
            self._rules,
            self._key,
            region if isinstance(region, str) else None,
            self._normal,
        )
        if not found[0] and "identifiers" in data:
            reasons = ", ".join(f"{kind} {why.value}" for kind, why in found[1])
            raise _Rejected(
                Reason.NO_USABLE_IDENTIFIER,
                f"no identifier can be used ({reasons})",
                "identifiers",
            )
        return found

    def _late(self, time: int) -> bool:
        """Whether ``time`` is more than ``allowed_lateness`` behind the ingest clock; reject
        such an event if the policy dead-letters late events."""
        clock = self.clock
        if clock is None or clock - time <= self._lateness:
            return False
        if self._dead_letter_late:
            # Still a time the input gives: were the clock ahead of it, they would agree on it.
            self._accept(time)
            raise _Rejected(
                Reason.LATE_EVENT,
                f"timestamp {format_ms(time)} is more than {format_duration(self._lateness)} "
                f"behind the ingest clock {format_ms(clock)}",
                "timestamp",
            )
        return True


def _parse(raw: bytes) -> Any:
    """The JSON value ``raw`` holds; reject bytes that are not UTF-8, or not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise _Rejected(
                Reason.NOT_UTF8, f"not UTF-8: {bad.reason} at byte {bad.start}"
            ) from None
        raise _Rejected(Reason.INVALID_JSON, f"not JSON: {err}") from None


def _check_object(data: Any) -> None:
    """Reject a JSON value that is not an object."""
    if not isinstance(data, dict):
        raise _Rejected(
            Reason.NOT_AN_OBJECT, f"an event is a JSON object, not {type(data).__name__}"
        )


def future_dead_letter(raw: bytes, origin: Origin, time: int, bound: int) -> DeadLetter:
    """The dead letter of an event of a file stamped past ``bound``, as far ahead as the
    file's events agree an event may be (:attr:`Ingestor.bound`)."""
    return _Rejected(
        Reason.FUTURE_TIMESTAMP,
        f"timestamp {format_ms(time)} is past {format_ms(bound)}, as far ahead as the file's "
        "latest events agree an event may be (README: what bounds event time)",
        "timestamp",
    ).dead_letter(raw, origin, orjson.loads(raw))


def _timestamp(stamp: str) -> int:
    """``stamp`` in ms since the epoch; reject an instant that does not exist or is out of
    range."""
    try:
        return parse_ms(stamp)
    except InvalidTimestamp as err:
        raise _Rejected(
            Reason.INVALID_TIMESTAMP, f"timestamp {stamp!r}: {err}", "timestamp"
        ) from None


def _refusals(rejected: list[tuple[str, Rejection]]) -> tuple[tuple[str, str], ...]:
    """(kind, reason) of every identifier the event named but could not use."""
    return tuple((kind, why.value) for kind, why in rejected)


def _blocked(
    data: dict[str, Any], rejected: list[tuple[str, Rejection]]
) -> tuple[tuple[str, str], ...]:
    """(kind, masked value) of every identifier the policy blocks, for the audit stream."""
    return tuple(
        (kind, mask(kind, str(data["identifiers"][kind]).strip()))
        for kind, why in rejected
        if why is Rejection.BLOCKED
    )


def _erasure_id(raw: bytes) -> str:
    """The id of an erasure request that gives none: a digest of the record, so the same
    request read twice is one request."""
    return "erasure-" + hashlib.blake2b(raw, digest_size=8).hexdigest()


def _text(value: object) -> str | None:
    """``value`` if it is a string, else None."""
    return value if isinstance(value, str) else None


def _explain(err: Any, data: dict[str, Any]) -> tuple[str, str]:
    """A field path and a readable message from a schema failure."""
    path = ".".join(str(part) for part in err.instance_path)
    kind = type(err.kind).__name__
    message: str = err.message
    if path == "identifiers" and kind == "Not":
        message = "identifiers must hold at least one non-empty identifier"
    elif path == "identifiers" and kind == "AdditionalProperties":
        identifiers = data.get("identifiers")
        unknown = (
            sorted(set(identifiers) - set(KNOWN_IDENTIFIERS))
            if isinstance(identifiers, dict)
            else []
        )
        message = f"identifiers has unknown names {unknown}; known: {', '.join(KNOWN_IDENTIFIERS)}"
    elif kind == "Required" and message.startswith('"'):
        missing = message.split('"')[1]
        path = f"{path}.{missing}" if path else missing
        message = f"{path} is required"
    elif path == "timestamp" and kind == "Pattern":
        message = "timestamp must be RFC 3339 with an offset or Z, e.g. 2026-11-20T10:15:00Z"
    elif path:
        message = f"{path}: {message}"
    return path or "(event)", message
