"""Everything Concierge keeps about one customer, and the shape of each part.

Each part has the module that changes it: windows (:mod:`operators.context.windows`),
pending absences (:mod:`operators.context.absences`), moments (:mod:`operators.context.moments`),
consent (:mod:`operators.context.consent`), cooldowns (:mod:`operators.decisions.cooldowns`),
suppression spells (:mod:`operators.context.suppression`), sends (:mod:`operators.context.sends`),
deferrals (:mod:`operators.decisions.decide`) and the time zone
(:mod:`operators.context.timezones`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from operators.model.fast_init import fast_init

Group = str | None
"""What a window, moment, cooldown or suppression is per: a product, say; None for all."""


class MomentKey(NamedTuple):
    """A moment's kind and group: at most one moment of each is open."""

    moment: str
    group: Group


Entry = tuple[int, str]
"""An event counted in a window: (event time, event id), read by unpacking. A plain tuple,
not a named one: windows hold most of a customer's entries, and the garbage collector
stops tracking a tuple of plain values but never a named tuple."""


class Send(NamedTuple):
    """A recent send: what caps count and what feedback about it refers to."""

    at: int
    action_id: str
    action: str
    channel: str
    category: str
    group: Group
    held_out: bool = False
    """Held out by a holdout: caps count it, but nothing reached a channel."""
    bounced: bool = False
    """The channel said it bounced: it reached nobody, so neither caps nor fatigue count it."""
    engaged_at: int | None = None
    """When the customer first opened, clicked or converted on it (feedback's event time)."""


class ConsentWord(NamedTuple):
    """The latest word on consent for a purpose on a channel (or on ``*``, every channel).
    ``at`` and ``seq`` (the customer's event count when it was said) order two words."""

    granted: bool
    at: int
    seq: int

    @property
    def order(self) -> tuple[int, int]:
        return (self.at, self.seq)


class Watch(NamedTuple):
    """A sent or held-out decision waiting for a conversion of one type, until ``until``
    (inclusive)."""

    until: int
    conversion: str
    action_id: str
    action: str
    held_out: bool
    decided_at: int
    converted: bool = False
    """Whether the decision has already converted by another type."""


class Trial(NamedTuple):
    """A sent decision learning waits to score (:mod:`operators.learning.evidence`): the
    channel and template it tried, and what its outcomes have earned so far."""

    closes: int
    """The end of its window (inclusive): outcomes after it count as none."""
    action_id: str
    action: str
    channel: str
    template: str
    reward: float = 0.0
    outcomes: tuple[str, ...] = ()
    """The outcomes already counted (each counts once)."""
    control: bool = False
    """Its customer was in learning's control share when it was sent."""
    window: int = 0
    """How long its window is (ms): it was sent at ``closes - window``."""
    hour: int = -1
    """The customer's local hour when it was sent, for send-time learning (-1: not kept)."""
    split: str | None = None
    """The population model's split its decision was in (None: the policy splits none)."""


class Evidence(NamedTuple):
    """What a customer's scored trials say of one arm: how many (``trials``) and what they
    earned (``reward``), each weighted by how long before ``at`` it was scored."""

    kind: str
    """``channel`` or ``variant``."""
    action: str
    """The action a variant is of ('' for a channel: a customer's channels are learned
    across actions)."""
    arm: str
    """The channel, or the template."""
    trials: float
    reward: float
    at: int


class AttributeWord(NamedTuple):
    """The latest statement of an attribute (a region, a status), and when it was made."""

    name: str
    value: str
    at: int


class Spell(NamedTuple):
    """When a suppression holds: from ``start`` (inclusive) to ``until`` (exclusive)."""

    start: int
    until: int


TimeZoneWord = tuple[str, int]
"""The latest valid ``context.timezone`` a customer sent, and when: (zone name, event time),
read by unpacking. Plain, like :data:`Entry`: it is replaced at almost every event."""


@fast_init
@dataclass(frozen=True, slots=True)
class PendingAbsence:
    """An absence signal waiting: started at ``started_at`` by event ``started_by``, it
    fires at ``due`` unless an awaited event comes first."""

    due: int
    started_by: str
    started_at: int

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as the class and its values, as a named tuple is: a smaller snapshot than
        the dataclass's slot names and values, read faster."""
        return (PendingAbsence, (self.due, self.started_by, self.started_at))


PICKLED_FIELDS = (
    "cancelled_at",
    "consent",
    "cooldowns",
    "customer_id",
    "deferred",
    "last_event_at",
    "moments",
    "pending",
    "sends",
    "seq",
    "suppressions",
    "timezone",
    "windows",
    "watches",
    "attributes",
    "identifier_kinds",
    "bounced",
    "trials",
    "evidence",
)
""":class:`CustomerState`'s fields (its ``__slots__``), in the order a pickled state holds
their values: fields added later come last, so an older snapshot (fewer values) still
reads."""
LATER_DEFAULTS = ((), (), (), (), (), ())
"""The values of the fields added after 0.4.0 (``watches``, ``attributes``, then
``identifier_kinds`` and ``bounced``, then ``trials`` and ``evidence``), for a snapshot
written before them."""


@dataclass(slots=True)
class OpenMoment:
    """A journey moment that is open: worth ``value_at_open`` at ``opened_at``, decaying from
    there (:func:`operators.context.moments.value_now`)."""

    value_at_open: float
    opened_at: int
    opening_event: str
    signals: tuple[str, ...]
    triggered_by: tuple[str, ...]

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as the class and its values (see :meth:`PendingAbsence.__reduce__`)."""
        return (
            OpenMoment,
            (
                self.value_at_open,
                self.opened_at,
                self.opening_event,
                self.signals,
                self.triggered_by,
            ),
        )


class CustomerState:
    """Everything Concierge keeps about one customer.

    Bounded: a window keeps what its signal still needs (:mod:`operators.context.windows`),
    one moment per kind and group, at most :data:`operators.model.bounded.MAX_GROUPS` groups of
    anything, consent only for the purposes and channels the policy names.
    """

    __slots__ = PICKLED_FIELDS

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.windows: dict[tuple[str, Group], list[Entry]] = {}
        """(counting signal, group) -> the events it still needs, in time order."""
        self.pending: dict[str, PendingAbsence] = {}
        self.cancelled_at: dict[str, int] = {}
        """Absence signal -> the latest time an event it awaits (``unless``) was seen."""
        self.moments: dict[MomentKey, OpenMoment] = {}
        self.consent: dict[tuple[str, str], ConsentWord] = {}
        """(purpose, channel) -> the latest word."""
        self.cooldowns: dict[tuple[str, Group], int] = {}
        """(action, group) -> when it was last sent: its cooldown runs from there."""
        self.suppressions: dict[tuple[str, Group], Spell] = {}
        """(suppression, the ``same`` value or None) -> when it holds."""
        self.sends: list[Send] = []
        """Recent sends in time order."""
        self.deferred: dict[MomentKey, int] = {}
        """Moment -> when to decide it again (after quiet hours, or when a cap frees a slot)."""
        self.timezone: TimeZoneWord | None = None
        self.last_event_at: int | None = None
        self.seq = 0
        """Events handled: orders two words said at the same event time."""
        self.attributes: tuple[AttributeWord, ...] = ()
        """The latest statement of each attribute, by name (:mod:`operators.context.attributes`)."""
        self.identifier_kinds: tuple[str, ...] = ()
        """The identifier types the profile holds (:mod:`operators.context.reachability`)."""
        self.bounced: tuple[tuple[str, int], ...] = ()
        """(channel, when a send on it bounced), for the channels unreachable since."""
        self.trials: tuple[Trial, ...] = ()
        """Sent decisions whose outcomes learning still waits for, oldest first."""
        self.evidence: tuple[Evidence, ...] = ()
        """What the customer's scored trials say of each arm (:mod:`operators.learning`)."""
        self.watches: tuple[Watch, ...] = ()
        """Decisions waiting for a conversion (:mod:`operators.measurement.conversions`), oldest
        first.
        Immutable, replaced on change: most customers wait for none, and an empty list each
        would cost them 56 bytes."""

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in PICKLED_FIELDS)

    def __setstate__(self, values: tuple[Any, ...]) -> None:
        missing = len(PICKLED_FIELDS) - len(values)  # an older snapshot: see LATER_DEFAULTS
        if 0 < missing <= len(LATER_DEFAULTS):
            values = (*values, *LATER_DEFAULTS[len(LATER_DEFAULTS) - missing :])
        for name, value in zip(PICKLED_FIELDS, values, strict=True):
            setattr(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its values, rebuilt by :func:`restored_state`."""
        return (restored_state, (self.__getstate__(),))

    def next_due(self) -> int | None:
        """When the earliest pending timer fires (an absence signal, a deferred decision, or
        a trial to score just after its window closes), if any."""
        due = [p.due for p in self.pending.values()]
        due.extend(self.deferred.values())
        if self.trials:
            due.append(min(trial.closes for trial in self.trials) + 1)
        return min(due) if due else None


def restored_state(values: tuple[Any, ...]) -> CustomerState:
    """The customer state :meth:`CustomerState.__reduce__` pickled."""
    state = CustomerState(values[PICKLED_FIELDS.index("customer_id")])
    state.__setstate__(values)
    return state


FEEDBACK_WINDOW = 30 * 86_400_000
"""How long a send is remembered for feedback about it (clicked, converted) to close its
moment's group; caps may keep sends longer."""

MAX_VALUE_CHARS = 128
"""An attribute value keeps at most this many characters (a customer's state stays bounded)."""


def attribute_text(value: Any) -> str | None:
    """The text an attribute value is kept and compared as, or None for no statement (a
    missing, empty or structured value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str) and value:
        return value[:MAX_VALUE_CHARS]
    return None
