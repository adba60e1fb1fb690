"""Ingest: raw bytes -> a validated :class:`Event`, or a :class:`DeadLetter` saying why not."""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema_rs
import orjson

import schemas
from operators.durations import format_duration
from operators.identifiers import KNOWN_IDENTIFIERS, Rejection, mask, normalise_all
from operators.model import DeadLetter, DeadLetterReason, Event, Origin
from operators.policy import Policy
from operators.timefmt import InvalidTimestamp, format_ms, parse_ms

Reason = DeadLetterReason


@cache
def event_validator() -> Any:
    """``schemas/event.schema.json``, compiled once by jsonschema-rs (a compiled validator:
    under a microsecond per event)."""
    return jsonschema_rs.validator_for(schemas.load("event"))


class Ingestor:
    """Accepts or rejects input records for one input partition.

    It keeps that partition's ingest clock: the latest event time it has
    accepted. A timestamp more than ``max_future_skew`` past the clock (or past
    the record's arrival time, when the source knows it) is rejected as absurd;
    one more than ``allowed_lateness`` behind it is *late*: marked so, or a dead
    letter if the policy says so.
    """

    __slots__ = (
        "_action_ids",
        "_actions",
        "_dead_letter_late",
        "_event_types",
        "_lateness",
        "_max_bytes",
        "_rules",
        "_skew",
        "_validate",
        "clock",
    )

    def __init__(self, policy: Policy, clock: int | None = None) -> None:
        self._validate = event_validator().validate
        self._max_bytes = policy.max_record_bytes
        self._skew = policy.max_future_skew
        self._event_types = policy.event_types
        self._rules = policy.identifier_rules
        self._lateness = policy.allowed_lateness
        self._dead_letter_late = policy.dead_letter_late
        self._action_ids = policy.action_ids
        self._actions = frozenset(policy.actions)
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
        if len(raw) > self._max_bytes:
            return DeadLetter(
                Reason.OVERSIZE,
                f"record is {len(raw)} bytes, over the limit of {self._max_bytes}",
                raw,
                origin,
            )
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                return DeadLetter(
                    Reason.NOT_UTF8, f"not UTF-8: {bad.reason} at byte {bad.start}", raw, origin
                )
            return DeadLetter(Reason.INVALID_JSON, f"not JSON: {err}", raw, origin)
        if not isinstance(data, dict):
            return DeadLetter(
                Reason.NOT_AN_OBJECT,
                f"an event is a JSON object, not {type(data).__name__}",
                raw,
                origin,
            )
        try:
            self._validate(data)
        except jsonschema_rs.ValidationError as err:
            path, detail = _explain(err, data)
            return DeadLetter(
                Reason.SCHEMA_VIOLATION,
                detail,
                raw,
                origin,
                _text(data.get("event_id")),
                _text(data.get("type")),
                path,
            )
        event_id: str = data["event_id"]
        event_type: str = data["type"]
        if self._event_types is not None and event_type not in self._event_types:
            return DeadLetter(
                Reason.UNKNOWN_EVENT_TYPE,
                f"event type {event_type!r} is not in the policy's event_types",
                raw,
                origin,
                event_id,
                event_type,
                "type",
            )
        try:
            time = parse_ms(data["timestamp"])
        except InvalidTimestamp as err:
            return DeadLetter(
                Reason.INVALID_TIMESTAMP,
                f"timestamp {data['timestamp']!r}: {err}",
                raw,
                origin,
                event_id,
                event_type,
                "timestamp",
            )
        reference = self.clock
        if arrival is not None and (reference is None or arrival > reference):
            reference = arrival
        if reference is not None and time - reference > self._skew:
            return DeadLetter(
                Reason.FUTURE_TIMESTAMP,
                f"timestamp {format_ms(time)} is more than {format_duration(self._skew)} past "
                f"the ingest clock {format_ms(reference)}",
                raw,
                origin,
                event_id,
                event_type,
                "timestamp",
            )
        if event_type == "feedback":
            unknown = self._unknown_action(data["properties"]["action_id"])
            if unknown is not None:
                return DeadLetter(
                    Reason.UNKNOWN_ACTION_ID,
                    unknown,
                    raw,
                    origin,
                    event_id,
                    event_type,
                    "properties.action_id",
                )
        context = data.get("context") or {}
        region = context.get("region")
        identifiers, rejected = normalise_all(
            data.get("identifiers"), self._rules, region if isinstance(region, str) else None
        )
        if not identifiers and "identifiers" in data:
            reasons = ", ".join(f"{kind} {why.value}" for kind, why in rejected)
            return DeadLetter(
                Reason.NO_USABLE_IDENTIFIER,
                f"no identifier can be used ({reasons})",
                raw,
                origin,
                event_id,
                event_type,
                "identifiers",
            )
        late = self.clock is not None and self.clock - time > self._lateness
        if late and self._dead_letter_late:
            assert self.clock is not None
            return DeadLetter(
                Reason.LATE_EVENT,
                f"timestamp {format_ms(time)} is more than {format_duration(self._lateness)} "
                f"behind the ingest clock {format_ms(self.clock)}",
                raw,
                origin,
                event_id,
                event_type,
                "timestamp",
            )
        if self.clock is None or time > self.clock:
            self.clock = time
        return Event(
            event_id,
            event_type,
            time,
            identifiers,
            context,
            data.get("properties") or {},
            origin,
            received_at,
            self.clock,
            tuple((kind, why.value) for kind, why in rejected),
            tuple(
                (kind, mask(kind, str(data["identifiers"][kind]).strip()))
                for kind, why in rejected
                if why is Rejection.BLOCKED
            ),
            late,
        )

    def _unknown_action(self, action_id: str) -> str | None:
        """Why feedback about ``action_id`` cannot be accepted, or None if Concierge issued it."""
        issued = self._action_ids.verify(action_id)
        if issued is None:
            return "feedback names an action_id Concierge did not issue"
        if issued[1] not in self._actions:
            return f"feedback names an action the policy does not have: {issued[1]!r}"
        return None


def _text(value: object) -> str | None:
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
