"""The policy, compiled once into immutable lookup tables for the hot path.

:mod:`operators.policy.compiler` builds them from a checked document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from operators.model.action_ids import UNKEYED, ActionIds
from operators.model.identifiers import (
    KNOWN_IDENTIFIERS,
    UNKEYED_IDENTITY,
    IdentifierRules,
    IdentityKey,
)
from operators.policy.text import PhraseMatcher

DEFAULT_IDENTIFIER_ORDER = KNOWN_IDENTIFIERS
DEFAULT_TIMEZONE = "UTC"
DEFAULT_MAX_RECORD_BYTES = 65536
DEFAULT_MAX_FUTURE_SKEW = "1h"
DEFAULT_ALLOWED_LATENESS = "1d"
DEFAULT_EVICT_IDLE_AFTER = "365d"


@dataclass(frozen=True, slots=True)
class CountingSignal:
    """Fires when ``at_least`` events of the ``on`` types (per group) fall within ``within`` ms."""

    name: str
    on: frozenset[str]
    group_by: tuple[str, ...] | None
    at_least: int
    within: int


@dataclass(frozen=True, slots=True)
class AbsenceSignal:
    """Fires ``after`` ms past an ``on`` event (any event when ``on`` is None) unless an
    ``unless`` event (any event when ``unless`` is None) comes first."""

    name: str
    on: frozenset[str] | None
    unless: frozenset[str] | None
    after: int


@dataclass(frozen=True, slots=True)
class DateSignal:
    """Fires ``before`` ms ahead of the instant an ``on`` event carries at ``at``, unless an
    ``unless`` event (any event when ``unless`` is None) comes after it; no ``unless``
    is an empty set (see :mod:`operators.context.dates`)."""

    name: str
    on: frozenset[str]
    at: tuple[str, ...]
    before: int
    unless: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class TextSignal:
    """Fires when the text at ``text_field`` of an ``on`` event names one of ``phrases``."""

    name: str
    on: frozenset[str]
    text_field: tuple[str, ...]
    phrases: tuple[str, ...]
    matcher: PhraseMatcher


@dataclass(frozen=True, slots=True)
class SuppressionSpec:
    """While active, holds back the actions it selects (every selector given must match).

    Started ``duration`` ms long by an event type, a signal or a feedback outcome.
    With ``same``, it holds back only moments whose group equals the starting
    event's value at that path (a purchase stops nudges for that product).
    """

    name: str
    categories: frozenset[str] | None
    actions: frozenset[str] | None
    channels: frozenset[str] | None
    same: tuple[str, ...] | None
    duration: int

    def selects(self, action: ActionSpec, channel: str) -> bool:
        """Whether this suppression holds back ``action`` on ``channel``."""
        return (
            (self.categories is None or action.category in self.categories)
            and (self.actions is None or action.name in self.actions)
            and (self.channels is None or channel in self.channels)
        )


@dataclass(frozen=True, slots=True)
class MomentSpec:
    """A journey moment: opened by ``sources`` with ``value``, halving every ``half_life``."""

    name: str
    sources: tuple[str, ...]
    value: float
    half_life: int


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """What to do about a moment, on which channels, and within which limits."""

    name: str
    moment: str
    channels: tuple[str, ...]
    category: str
    priority: float
    consent: str | None
    template: str
    min_value: float
    cooldown: int
    variants: tuple[str, ...] = ()
    """The templates it may be sent with: ``template`` first, then the policy's ``variants``."""


@dataclass(frozen=True, slots=True)
class SendMatch:
    """Which sends a cap or a fatigue rule is about, by its ``match``: every field given
    must match; none given: every send."""

    channel: str | None
    category: str | None
    action: str | None

    def matches(self, action: str, channel: str, category: str) -> bool:
        """Whether a send of ``action`` on ``channel`` in ``category`` is one of these."""
        return (
            (self.channel is None or channel == self.channel)
            and (self.category is None or category == self.category)
            and (self.action is None or action == self.action)
        )


@dataclass(frozen=True, slots=True)
class CapSpec(SendMatch):
    """At most ``max`` sends within any ``window`` ms, of the sends it matches."""

    name: str
    max: int
    window: int


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local times of day (minutes since midnight) when nothing is sent, except on
    ``except_channels`` and in ``except_categories``; ``start > end`` spans midnight. A
    channel in ``channels`` has its own window instead of the default one."""

    start: int
    end: int
    except_channels: frozenset[str]
    except_categories: frozenset[str]
    channels: Mapping[str, tuple[int, int]]
    """Channel -> its own (start, end)."""
    release_over: int
    """Deferred actions leave spread over this many ms after a window ends, each customer
    at its own stable offset (0: all at the end)."""

    def window(self, channel: str | None) -> tuple[int, int]:
        """The (start, end) of quiet hours on ``channel``."""
        if channel is None:
            return self.start, self.end
        return self.channels.get(channel, (self.start, self.end))

    def applies(self, channel: str, category: str) -> bool:
        """Whether quiet hours hold back ``category`` on ``channel``."""
        start, end = self.window(channel)
        return (
            start != end
            and channel not in self.except_channels
            and category not in self.except_categories
        )


@dataclass(frozen=True, slots=True)
class EligibilityRule:
    """Who may get an action at all (see :mod:`operators.decisions.eligibility`): of the actions it
    selects (``actions`` and ``categories``, None: all), a customer must have each ``require``
    attribute at one of its values (unknown fails) and no ``exclude`` attribute at one of its
    values (unknown passes)."""

    name: str
    actions: frozenset[str] | None
    categories: frozenset[str] | None
    require: Mapping[str, frozenset[str]]
    exclude: Mapping[str, frozenset[str]]

    def selects(self, action: ActionSpec) -> bool:
        """Whether this rule applies to ``action``."""
        return (self.actions is None or action.name in self.actions) and (
            self.categories is None or action.category in self.categories
        )


@dataclass(frozen=True, slots=True)
class FatigueRule(SendMatch):
    """A customer who ignores what we send hears from us less (see
    :mod:`operators.decisions.fatigue`):
    a matching send is ignored when ``engaged_within`` ms pass with no engagement with it;
    while the last ``ignored`` matching sends within ``within`` ms were all ignored,
    matching actions are held back."""

    name: str
    ignored: int
    within: int
    engaged_within: int


@dataclass(frozen=True, slots=True)
class Holdouts:
    """Customers deliberately not sent, to measure what sending adds (see
    :mod:`operators.measurement.holdouts`)."""

    salt: str
    global_share: float
    """The share of customers in the global control group."""
    global_categories: frozenset[str] | None
    """The categories the global control group gets none of (None: every category)."""
    action_shares: Mapping[str, float]
    """Action -> the share of the customers the global group does not hold out of it who
    are held out of this action."""


@dataclass(frozen=True, slots=True)
class ConversionSpec:
    """What counts as success after a sent or held-out action: the customer's first event of
    type ``type`` within ``within`` ms of the decision, for ``actions`` (None: every action)."""

    type: str
    within: int
    actions: frozenset[str] | None

    def measures(self, action: str) -> bool:
        """Whether this conversion counts for ``action``."""
        return self.actions is None or action in self.actions


SPLIT_BY_SIGNAL = "signal"
"""In ``learning.population.by``: the signal that opened the decision's moment."""


@dataclass(frozen=True, slots=True)
class Learning:
    """Learning from outcomes (see :mod:`operators.learning`): what an outcome is worth, how
    long after a send it may come, how fast evidence fades, how much to explore, and who is
    decided by the static policy instead."""

    rewards: Mapping[str, float]
    """Feedback outcome or conversion type -> its reward."""
    window: int
    """How long after a send (ms) its outcomes count."""
    half_life: int
    """Evidence scored this long ago (ms) weighs half."""
    explore: float
    """The share of decisions that choose at random among the allowed arms."""
    prior_reward: float
    """The reward per trial expected of an arm nothing is known of."""
    prior_trials: float
    """How many of a customer's own trials the prior weighs as."""
    control: float
    """The share of customers decided by the static policy."""
    salt: str
    channel: bool
    """Whether learning chooses the channel."""
    variant: bool
    """Whether learning chooses the template."""
    order: bool = False
    """Whether learning orders the moments of one category by expected value."""
    wait_up_to: int = 0
    """Send-time learning: how long after its moment opened an action may wait for the
    customer's likeliest local hour (0: it never waits)."""
    timing_categories: frozenset[str] | None = None
    """The categories that may wait (None: every category)."""
    population_every: int | None = None
    """Population models: how often in event time a new version is made (None: none)."""
    population_by: tuple[str, ...] = ()
    """What splits the population model: attribute names, and ``signal`` for the signal
    that opened the decision's moment (empty: one model)."""
    population: Any = None
    """The versions of the population model this process has
    (:class:`operators.learning.population.Versions`), which the flow that decides puts
    here (replay, run); None elsewhere."""

    def waits(self, category: str) -> bool:
        """Whether an action of ``category`` may wait for a likelier hour."""
        return self.wait_up_to > 0 and (
            self.timing_categories is None or category in self.timing_categories
        )


@dataclass(frozen=True, slots=True)
class Pace:
    """At most ``limit`` sends per interval of ``every`` ms of event time."""

    name: str
    limit: int
    every: int

    def interval(self, at: int) -> int:
        return at // self.every

    def start(self, interval: int) -> int:
        return interval * self.every


@dataclass(frozen=True, slots=True)
class Period:
    """A budget's period: ``every`` ms of event time from the Unix epoch, or a local day or
    week (``days`` 1 or 7, weeks from Monday) in ``zone`` (UTC if none), optionally only
    its hours from ``opens`` to ``closes`` (minutes of the local day: an agent shift)."""

    every: int | None = None
    days: int = 1
    zone: ZoneInfo | None = None
    opens: int | None = None
    closes: int | None = None

    def of(self, at: int) -> int | None:
        """The period event time ``at`` (ms) counts in; None outside the shift's hours."""
        if self.every is not None:
            return at // self.every
        local = datetime.fromtimestamp(at / 1000, self.zone or UTC)
        if self.opens is not None and self.closes is not None:
            minute = local.hour * 60 + local.minute
            if not self.opens <= minute < self.closes:
                return None
        day = local.date().toordinal()
        return day if self.days == 1 else (day - local.weekday()) // 7

    def opens_after(self, at: int) -> int:
        """When the shift's hours next open after ``at`` (ms; ``at`` itself if they are open:
        a period without hours always is)."""
        if self.of(at) is not None or self.opens is None:
            return at
        zone = self.zone or UTC
        local = datetime.fromtimestamp(at / 1000, zone)
        day = local.date()
        if local.hour * 60 + local.minute >= self.opens:
            day += timedelta(days=1)
        hour, minute = divmod(self.opens, 60)
        opening = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        return int(opening.timestamp() * 1000)

    def elapsed(self, at: int) -> float | None:
        """How much of the period ``at`` counts in has gone by at ``at``, from 0 to 1 (None:
        outside the shift's hours)."""
        if self.every is not None:
            return (at % self.every) / self.every
        local = datetime.fromtimestamp(at / 1000, self.zone or UTC)
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        if self.opens is not None and self.closes is not None:
            if not self.opens <= minute < self.closes:
                return None
            return (minute - self.opens) / (self.closes - self.opens)
        if self.days == 1:
            return minute / 1440
        return (local.weekday() * 1440 + minute) / (7 * 1440)


@dataclass(frozen=True, slots=True)
class Budget:
    """At most ``limit`` sends in each of its periods (none outside an agent shift's
    hours); ``reserve``: a share of it only the priority class (category) it names may
    use. It counts the sends on ``channel``, of ``action`` or of ``category`` (one of them;
    none: the sends the caller says)."""

    name: str
    limit: int
    period: Period
    reserve: Mapping[str, float] = field(default_factory=dict)
    channel: str | None = None
    action: str | None = None
    category: str | None = None

    def counts(self, action: str, channel: str, category: str) -> bool:
        """Whether a send of ``action`` on ``channel`` (of ``category``) counts in it."""
        return (
            (self.channel is None or self.channel == channel)
            and (self.action is None or self.action == action)
            and (self.category is None or self.category == category)
        )

    def room(self, used: int, by_class: Mapping[str, int], klass: str) -> bool:
        """Whether a send of ``klass`` fits, with ``used`` counted in the period and
        ``by_class`` of them per class: each reservation not of ``klass`` keeps what it has
        not used of its share."""
        kept = 0.0
        for reserved, share in self.reserve.items():
            if reserved != klass:
                kept += max(0.0, share * self.limit - by_class.get(reserved, 0))
        return used + 1 <= self.limit - kept


@dataclass(frozen=True, slots=True)
class Capacity:
    """The ``capacity`` section: the paces and budgets every customer shares (handed out by
    :class:`operators.decisions.capacity.Owner`)."""

    paces: tuple[Pace, ...]
    """Each named after the channel or the action whose sends it paces."""
    budgets: tuple[Budget, ...]

    def paces_of(self, action: str, channel: str) -> tuple[str, ...]:
        """The paces a send of ``action`` on ``channel`` counts against."""
        return tuple(p.name for p in self.paces if p.name in (action, channel))

    def budgets_of(self, action: str, channel: str, category: str) -> tuple[str, ...]:
        """The budgets a send of ``action`` on ``channel`` (of ``category``) counts in."""
        return tuple(b.name for b in self.budgets if b.counts(action, channel, category))


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated, compiled policy. Build it with :func:`operators.policy.load.load_policy`."""

    version: str
    channels: tuple[str, ...]
    categories: Mapping[str, float]
    counting_by_type: Mapping[str, tuple[CountingSignal, ...]]
    counting: Mapping[str, CountingSignal]
    absence_signals: tuple[AbsenceSignal, ...]
    date_signals: tuple[DateSignal, ...]
    text_signals: tuple[TextSignal, ...]
    text_by_type: Mapping[str, tuple[TextSignal, ...]]
    suppressions: Mapping[str, SuppressionSpec]
    suppressions_by_event: Mapping[str, tuple[SuppressionSpec, ...]]
    suppressions_by_signal: Mapping[str, tuple[SuppressionSpec, ...]]
    suppressions_by_feedback: Mapping[str, tuple[SuppressionSpec, ...]]
    consent_revocations: Mapping[str, tuple[tuple[str, str | None], ...]]
    """Feedback outcome -> (channel or ``from_feedback``, purpose or None: every purpose)."""
    caps: tuple[CapSpec, ...]
    longest_cap_window: int
    quiet_hours: QuietHours | None
    moments_by_signal: Mapping[str, tuple[MomentSpec, ...]]
    moments: Mapping[str, MomentSpec]
    actions_by_moment: Mapping[str, tuple[ActionSpec, ...]]
    actions: Mapping[str, ActionSpec]
    consent_purposes: frozenset[str]
    """The consent purposes some action needs: the only ones a customer's context keeps."""
    lowest_min_value: Mapping[str, float]
    """Moment kind -> the lowest ``min_value`` of its actions: below it, a moment is worth
    nothing to anyone."""
    identifier_order: tuple[str, ...]
    identifier_rules: IdentifierRules
    default_timezone: str
    event_types: frozenset[str] | None
    max_record_bytes: int
    max_future_skew: int
    allowed_lateness: int
    """Events up to this far behind their input's clock still count exactly in windows."""
    dead_letter_late: bool
    """Events later than ``allowed_lateness``: dead letters (True) or kept, uncounted (False)."""
    evict_idle_after: int
    """A customer with nothing pending and no event for this long is forgotten."""
    attributes: Mapping[str, tuple[str, ...]]
    """Attribute -> the event field that states it (``("context", "region")``)."""
    eligibility_by_action: Mapping[str, tuple[EligibilityRule, ...]]
    """Action -> the eligibility rules that apply to it, in policy order."""
    reachability: Mapping[str, frozenset[str]]
    """Channel -> the identifier types that reach it (channels not here always reach)."""
    fatigue: tuple[FatigueRule, ...]
    longest_send_memory: int
    """How long a send is remembered: the longest cap or fatigue window, or the feedback
    window (:data:`operators.model.state.FEEDBACK_WINDOW`) if longer."""
    holdouts: Holdouts | None
    conversions_by_type: Mapping[str, ConversionSpec]
    conversions_by_action: Mapping[str, tuple[ConversionSpec, ...]]
    """Action -> the conversions that count for it, in policy order."""
    learning: Learning | None
    document: Mapping[str, Any]
    """The validated policy as plain data, for the parts compiled by later stages."""
    capacity: Capacity | None = None
    action_ids: ActionIds = UNKEYED
    """How action ids are issued and checked. Not from the file: the deployment's key, which
    the edges that run the flow set (``dataclasses.replace``)."""
    identity_key: IdentityKey = UNKEYED_IDENTITY
    """How identifiers are digested. Not from the file either: the deployment's identity key,
    set by the same edges."""
