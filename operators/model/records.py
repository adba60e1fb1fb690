"""The records that flow through Concierge: events in; decisions, actions and dead letters out."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

from operators.model.fast_init import fast_init
from operators.model.timefmt import format_ms

if TYPE_CHECKING:
    from operators.model.identifiers import Identifier


class Outcome(StrEnum):
    """What a decision came to. Only ``sent`` puts an action on a channel."""

    SENT = "sent"
    DEFERRED = "deferred"
    CAPPED = "capped"
    SUPPRESSED = "suppressed"
    NO_CONSENT = "no_consent"
    STALE = "stale"
    COOLDOWN = "cooldown"
    OUTRANKED = "outranked"
    INELIGIBLE = "ineligible"
    UNREACHABLE = "unreachable"
    """No channel of the action can reach the customer (no identifier of its types, or
    bounced)."""
    HELD_OUT = "held_out"
    """A holdout kept it from the channel; everything else is as if it had been sent."""
    PACED_OUT = "paced_out"
    """Capacity: a pace of every channel tried had no room before its value decayed below
    its ``min_value``."""
    OVER_BUDGET = "over_budget"
    """Capacity: a budget of every channel tried was spent."""


FEEDBACK_OUTCOMES = frozenset(
    {"delivered", "opened", "clicked", "converted", "bounced", "unsubscribed", "complained"}
)
"""What a channel service may say of an action it was sent (a ``feedback`` event's outcome)."""


class DeadLetterReason(StrEnum):
    """Machine-readable reason codes of a dead letter."""

    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    OVERSIZE = "oversize"
    SCHEMA_VIOLATION = "schema_violation"
    INVALID_TIMESTAMP = "invalid_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    NO_USABLE_IDENTIFIER = "no_usable_identifier"
    UNKNOWN_ACTION_ID = "unknown_action_id"
    LATE_EVENT = "late_event"
    KAFKA_ERROR = "kafka_error"
    OUTPUT_TOO_LARGE = "output_too_large"
    """Not an input record: an output record the brokers refused for its size."""


@fast_init
@dataclass(frozen=True, slots=True)
class Origin:
    """Where an input record came from: a Kafka topic position or a file line."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    file: str | None = None
    line: int | None = None
    key: bytes | None = None

    def as_record(self) -> dict[str, Any]:
        if self.topic is not None:
            return {"topic": self.topic, "partition": self.partition, "offset": self.offset}
        return {"file": self.file, "line": self.line}


ERASURE = "erasure_requested"
"""The event type that erases a person (:meth:`operators.identity.graph.IdentityGraph.erase`)."""


@fast_init
@dataclass(frozen=True, slots=True)
class Event:
    """A validated input event. ``time`` is event time in ms since the epoch."""

    event_id: str
    type: str
    time: int
    identifiers: dict[str, Identifier]
    """Each usable identifier, digested (its value goes no further than ingest)."""
    context: dict[str, Any]
    properties: dict[str, Any]
    origin: Origin = field(default_factory=Origin)
    received_at: float = 0.0
    """Wall-clock seconds when the record was read (0 in replay); for latency metrics only."""
    watermark: int = 0
    """Event time of the input when this event was read: the latest time accepted on its
    partition so far (this event's own time, unless it arrived late)."""
    rejected_identifiers: tuple[tuple[str, str], ...] = ()
    """Identifier kinds this event named but could not use, with the reason (empty, blocked,
    invalid)."""
    blocked_identifiers: tuple[tuple[str, str], ...] = ()
    """(kind, masked value) of identifiers the policy blocks, for the audit stream."""
    late: bool = False
    """Further behind its input's clock than the policy's ``allowed_lateness``: it still
    changes consent and suppressions, cancels timers and counts as activity, but counts in
    no window and starts no absence timer (those moments have passed)."""
    profile_kinds: tuple[str, ...] | None = None
    """The identifier types the customer's profile holds, as the identity step found them
    (None: not told; see :mod:`operators.context.reachability`)."""
    gained_kinds: tuple[str, ...] = ()
    """The identifier types of which the profile gained a new value with this event."""

    def with_watermark(self, watermark: int) -> Event:
        """This event with another ``watermark``: ``dataclasses.replace``, at half its cost
        (the alignment step does it to most events)."""
        return Event(
            self.event_id,
            self.type,
            self.time,
            self.identifiers,
            self.context,
            self.properties,
            self.origin,
            self.received_at,
            watermark,
            self.rejected_identifiers,
            self.blocked_identifiers,
            self.late,
            self.profile_kinds,
            self.gained_kinds,
        )

    def with_profile(self, kinds: tuple[str, ...], gained: tuple[str, ...]) -> Event:
        """This event with what the identity step found of its profile's identifier types."""
        return Event(
            self.event_id,
            self.type,
            self.time,
            self.identifiers,
            self.context,
            self.properties,
            self.origin,
            self.received_at,
            self.watermark,
            self.rejected_identifiers,
            self.blocked_identifiers,
            self.late,
            kinds,
            gained,
        )


def lookup(path: tuple[str, ...], event: Event) -> Any:
    """The value at a ``properties.x`` / ``context.x`` path of an event, or None."""
    node: Any = event.properties if path[0] == "properties" else event.context
    for part in path[1:]:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


RAW_KEEP_BYTES = 65536
"""An oversize record's dead letter keeps at most this many bytes of it."""
RAW_SLACK = 4096
"""How much larger than the record itself its quoted ``raw`` (and ``raw_base64``) may be: JSON
escapes quotes and control characters, and bytes that are not UTF-8 are quoted twice. A record
that costs more to quote goes as ``raw_base64`` (4/3 of its size) with only its beginning, this
long once quoted, as ``raw``."""
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
"""librdkafka's default ``message.max.bytes``: a dead letter is cut to stay under the
producer's (replay takes this one, so it writes what Kafka mode writes by default)."""
TEXT_KEEP_CHARS = 1000
"""Dead-letter fields quoted from the input (detail, event id, type, path) keep this much..."""
TEXT_KEEP_BYTES = 2048
"""... and at most this much once quoted."""
DEAD_LETTER_SLACK = 16384
"""A dead letter, serialized, is at most its record's size plus this (all of the above)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input record that could not be accepted, with the reason and the original bytes."""

    reason: DeadLetterReason
    detail: str
    raw: bytes
    origin: Origin
    event_id: str | None = None
    type: str | None = None
    path: str | None = None

    def as_record(self, max_bytes: int = DEFAULT_MESSAGE_MAX_BYTES) -> dict[str, Any]:
        """The dead letter, at most ``max_bytes`` once serialized (the producer's
        ``message.max.bytes``): its record whole where that fits, else its first bytes."""
        record: dict[str, Any] = {"reason": self.reason.value, "detail": _cut(self.detail)}
        raw = self.raw
        most = (
            min(len(raw), RAW_KEEP_BYTES) if self.reason is DeadLetterReason.OVERSIZE else len(raw)
        )
        room = max_bytes - DEAD_LETTER_SLACK
        kept, text, raw_base64 = _quotable(raw, most, min(most + RAW_SLACK, room))
        whole = min(most, (room - RAW_SLACK) // 4 * 3)  # what base64 has room for
        if kept < most and whole > kept:
            # Quoting costs more than the record (quotes, control characters, bytes that are
            # not UTF-8): its bytes go as base64, at 4/3 of their size, with its beginning
            # as text for people; cut only where even that would not fit.
            kept, raw_base64 = whole, base64.b64encode(raw[:whole]).decode("ascii")
            text = _beginning(raw[:whole], RAW_SLACK)
        record["raw"] = text
        if raw_base64 is not None:
            record["raw_base64"] = raw_base64
        if kept < len(raw):
            record["raw_truncated"] = True
            record["raw_size"] = len(raw)
        record["origin"] = self.origin.as_record()
        if self.event_id is not None:
            record["event_id"] = _cut(self.event_id)
        if self.type is not None:
            record["type"] = _cut(self.type)
        if self.path is not None:
            record["path"] = _cut(self.path)
        return record


def _quotable(raw: bytes, most: int, budget: int) -> tuple[int, str, str | None]:
    """The longest prefix of ``raw`` (at most ``most`` bytes) whose quoted form fits in
    ``budget`` bytes: (its length, its text, its base64 when ``raw`` is not UTF-8)."""
    try:
        raw[:most].decode("utf-8")
        utf8 = True
    except UnicodeDecodeError as bad:  # a character cut at ``most`` is still UTF-8
        utf8 = most < len(raw) and bad.reason == "unexpected end of data"

    def quoted(size: int) -> tuple[int, str, str | None]:
        head = raw[:size]
        if utf8:
            return len(orjson.dumps(text := head.decode("utf-8", "ignore"))), text, None
        text = head.decode("utf-8", "replace")
        encoded = base64.b64encode(head).decode("ascii")
        return len(orjson.dumps(text)) + len(encoded), text, encoded

    cost, text, encoded = quoted(most)
    if cost <= budget:
        return most, text, encoded
    low, high = 0, most
    while low < high:
        middle = (low + high + 1) // 2
        cost, _, _ = quoted(middle)
        if cost <= budget:
            low = middle
        else:
            high = middle - 1
    return (low, *quoted(low)[1:])


def _beginning(raw: bytes, budget: int) -> str:
    """The text ``raw`` begins with, at most ``budget`` bytes once quoted."""
    text = raw[:budget].decode("utf-8", "replace")
    while (cost := len(orjson.dumps(text))) > budget:
        text = text[: len(text) * budget // cost - 1]
    return text


def dead_letter_bound(size: int, max_bytes: int = DEFAULT_MESSAGE_MAX_BYTES) -> int:
    """The most the dead letter of a ``size``-byte record takes once serialized, with the
    producer's ``message.max.bytes`` at ``max_bytes``."""
    carried = max(size, 4 * -(-size // 3)) + RAW_SLACK  # quoted, or base64 and a beginning
    return min(carried, max(max_bytes - DEAD_LETTER_SLACK, 0)) + DEAD_LETTER_SLACK


def _cut(text: str) -> str:
    if len(text) > TEXT_KEEP_CHARS:
        text = text[:TEXT_KEEP_CHARS] + "..."
    while len(orjson.dumps(text)) > TEXT_KEEP_BYTES:
        text = text[: len(text) // 2] + "..."
    return text


@fast_init
@dataclass(frozen=True, slots=True)
class Action:
    """What a channel service is asked to do; ``action_id`` is its idempotency key."""

    action_id: str
    customer_id: str
    action: str
    channel: str
    category: str
    priority: float
    template: str
    moment: str
    group: str | None
    value: float
    signals: tuple[str, ...]
    triggered_by: tuple[str, ...]
    decided_at: int
    expires_at: int
    policy_version: str
    send_at: int | None = None
    """When capacity lets it leave, if later than ``decided_at`` (a pace had no room
    before)."""
    recent_sends: int = 0
    """Actions written to a channel for this customer in the 7 days up to this one, itself
    included: the fatigue measure's observation. Not part of the record."""

    def as_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "action_id": self.action_id,
            "customer_id": self.customer_id,
            "action": self.action,
            "channel": self.channel,
            "category": self.category,
            "priority": self.priority,
            "template": self.template,
            "moment": self.moment,
        }
        if self.group is not None:
            record["group"] = self.group
        record["value"] = self.value
        record["signals"] = list(self.signals)
        record["triggered_by"] = list(self.triggered_by)
        record["decided_at"] = format_ms(self.decided_at)
        if self.send_at is not None:
            record["send_at"] = format_ms(self.send_at)
        record["expires_at"] = format_ms(self.expires_at)
        record["policy_version"] = self.policy_version
        return record


@dataclass(frozen=True, slots=True)
class Arm:
    """One choice learning weighed: its estimated reward per send, and how many of the
    customer's own trials (faded) that rests on besides the prior."""

    name: str
    estimate: float
    trials: float
    population: tuple[float, float] | None = None
    """With a population model: what it says of the arm, the reward per send (shrunk
    toward the policy's prior) and the trials (faded) it rests on; the customer's estimate
    is shrunk toward that reward."""

    def as_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "arm": self.name,
            "estimate": round(self.estimate, 4),
            "trials": round(self.trials, 2),
        }
        if self.population is not None:
            rate, trials = self.population
            record["population"] = {"estimate": round(rate, 4), "trials": round(trials, 2)}
        return record


@dataclass(frozen=True, slots=True)
class Choice:
    """How learning chose among ``arms`` (the channels that passed, or the templates): the
    ``chosen`` one, with what probability, and whether at random (exploring)."""

    kind: str
    arms: tuple[Arm, ...]
    chosen: str
    propensity: float
    explored: bool
    best: str
    """The arm with the highest estimate (the first in the policy's order on a tie): what
    learning chooses when it does not explore."""

    @property
    def arms_chosen(self) -> Arm:
        """The chosen arm, with its estimate."""
        return next(arm for arm in self.arms if arm.name == self.chosen)

    def as_record(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "best": self.best,
            "propensity": round(self.propensity, 6),
            "explored": self.explored,
            "arms": [arm.as_record() for arm in self.arms],
        }


@dataclass(frozen=True, slots=True)
class Learned:
    """What learning did for one decision: its choices, or none for a customer in its control
    share (decided by the static policy)."""

    choices: tuple[Choice, ...]
    control: bool
    model: int | None = None
    """With a population model: the boundary of the version its estimates used (ms)."""
    split: str = ""
    """The population's split the customer is in, such as ``region=north`` (empty: none)."""

    @property
    def estimate(self) -> float:
        """The estimated reward per send of the arm chosen: the channel's, else the
        template's (1 when it chose neither)."""
        return self.choices[0].arms_chosen.estimate if self.choices else 1.0

    @property
    def propensity(self) -> float:
        """The probability the decision chose what it chose (for offline evaluation)."""
        product = 1.0
        for choice in self.choices:
            product *= choice.propensity
        return product

    def as_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"control": self.control, "propensity": round(self.propensity, 6)}
        if self.model is not None:
            record["population"] = {"model": format_ms(self.model)}
            if self.split:
                record["population"]["split"] = self.split
        for choice in self.choices:
            record[choice.kind] = choice.as_record()
        return record


@fast_init
@dataclass(frozen=True, slots=True)
class Decision:
    """One decision about one action for one customer, sent or not, with its reason."""

    customer_id: str
    at: int
    action: str
    outcome: Outcome
    reason: str
    moment: str
    group: str | None
    value: float
    signals: tuple[str, ...]
    triggered_by: tuple[str, ...]
    policy_version: str
    action_id: str | None = None
    channel: str | None = None
    rule: str | None = None
    """What held it back, machine-readable: the cap's or suppression's name, or
    ``quiet_hours``."""
    until: int | None = None
    """Until when it is held back (a deferral's end, a cap's free slot, a suppression's end)."""
    learning: Learned | None = None
    """What learning chose for a sent or held-out decision (policies with ``learning``)."""

    def as_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "customer_id": self.customer_id,
            "at": format_ms(self.at),
            "action": self.action,
        }
        if self.action_id is not None:
            record["action_id"] = self.action_id
        if self.channel is not None:
            record["channel"] = self.channel
        record["outcome"] = self.outcome.value
        record["reason"] = self.reason
        if self.rule is not None:
            record["rule"] = self.rule
        if self.until is not None:
            record["until"] = format_ms(self.until)
        record["moment"] = self.moment
        if self.group is not None:
            record["group"] = self.group
        record["value"] = self.value
        record["signals"] = list(self.signals)
        record["triggered_by"] = list(self.triggered_by)
        record["policy_version"] = self.policy_version
        if self.learning is not None:
            record["learning"] = self.learning.as_record()
        return record


@fast_init
@dataclass(frozen=True, slots=True)
class Conversion:
    """A sent or held-out decision converted: the customer's first event of a conversion
    type within its window after the decision."""

    customer_id: str
    action_id: str
    action: str
    outcome: Outcome
    """``sent`` or ``held_out``: the group the decision measures."""
    conversion: str
    """The conversion type (an event type)."""
    event_id: str
    at: int
    """The converting event's time."""
    decided_at: int
    first: bool = True
    """Whether it is the decision's first conversion (of any type): what conversion rates
    count. Not part of the record."""

    def as_record(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "action_id": self.action_id,
            "action": self.action,
            "outcome": self.outcome.value,
            "conversion": self.conversion,
            "event_id": self.event_id,
            "at": format_ms(self.at),
            "decided_at": format_ms(self.decided_at),
        }


@fast_init
@dataclass(frozen=True, slots=True)
class Scored:
    """A sent decision's trial scored, once its window closed: what learning counts of it
    (:mod:`operators.learning.evidence`)."""

    customer_id: str
    action_id: str
    action: str
    channel: str
    template: str
    decided_at: int
    at: int
    """The end of its window: outcomes later than this counted as none."""
    reward: float
    outcomes: tuple[str, ...]
    """The rewarded outcomes it got, each once, in the order they came."""
    control: bool
    """Whether its customer was in learning's control share (decided by the static policy)."""
    feature: str = ""
    """The population model's split its decision was in (empty: none)."""

    def as_record(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "action_id": self.action_id,
            "action": self.action,
            "channel": self.channel,
            "template": self.template,
            "decided_at": format_ms(self.decided_at),
            "at": format_ms(self.at),
            "reward": self.reward,
            "outcomes": list(self.outcomes),
            "control": self.control,
        }


@dataclass(frozen=True, slots=True)
class Audit:
    """An identity merge, or a link the policy refused, for the audit stream."""

    at: int
    kind: str
    customer_ids: tuple[str, ...]
    surviving_id: str
    identifiers: tuple[tuple[str, str], ...]
    """(type, masked value) of the identifiers involved."""
    event_id: str
    limit: str | None = None
    blocked: str | None = None

    @property
    def customer_id(self) -> str:
        return self.surviving_id

    def as_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "at": format_ms(self.at),
            "kind": self.kind,
            "customer_ids": list(self.customer_ids),
            "surviving_id": self.surviving_id,
            "identifiers": [{"type": t, "value": v} for t, v in self.identifiers],
            "event_id": _cut(self.event_id),
        }
        if self.limit is not None:
            record["limit"] = self.limit
        if self.blocked is not None:
            record["blocked"] = self.blocked
        return record
