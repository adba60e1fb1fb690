"""Customer context: the per-customer state and what changes it, in event time.

Counting windows live in :mod:`operators.windows`; folding two contexts into
one, and a context as a record, in :mod:`operators.handover`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from operators.decay import falls_below_at
from operators.guardrails import Send, zone
from operators.model import Event
from operators.policy import AbsenceSignal, ActionSpec, Policy, TextSignal

Group = str | None

MAX_GROUPS = 32
"""Groups (products, say) kept per customer for each signal's windows, each moment kind,
each action's cooldowns and each suppression: a new group pushes out the least recent."""
MAX_TRIGGERS = 16
"""Event ids a moment keeps as its explanation (the latest)."""


V = TypeVar("V")


def keep_latest(
    table: dict[tuple[str, Group], V], name: str, recency: Callable[[V], int], keep: int
) -> None:
    """Leave at most ``keep`` groups of ``name`` in ``table``: the most recent by
    ``recency(value)`` (ties: by group)."""
    keys = [key for key in table if key[0] == name]
    if len(keys) > keep:
        keys.sort(key=lambda key: (recency(table[key]), str(key[1])))
        for key in keys[: len(keys) - keep]:
            del table[key]


def make_room(
    table: dict[tuple[str, Group], V],
    name: str,
    recency: Callable[[V], int],
    expired: Callable[[V], bool] | None = None,
) -> None:
    """Before a new group of ``name`` joins ``table``: drop its groups that have
    ``expired``, then, if :data:`MAX_GROUPS` are left, the least recent."""
    if expired is not None:
        for key in [key for key, value in table.items() if key[0] == name and expired(value)]:
            del table[key]
    keep_latest(table, name, recency, MAX_GROUPS - 1)


@dataclass(frozen=True, slots=True)
class SignalFired:
    """A signal that fired at ``at``, for ``group``, because of ``triggered_by`` (event ids)."""

    signal: str
    group: Group
    at: int
    triggered_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PendingAbsence:
    """An absence signal waiting: started at ``started_at`` by event ``started_by``, it
    fires at ``due`` unless an awaited event comes first."""

    due: int
    started_by: str
    started_at: int


@dataclass(slots=True)
class OpenMoment:
    """A journey moment that is open: its value decays from ``value`` since ``opened_at``."""

    value: float
    opened_at: int
    opening_event: str
    signals: tuple[str, ...]
    triggered_by: tuple[str, ...]


class CustomerState:
    """Everything Concierge keeps about one customer.

    Bounded: a window keeps what its signal still needs (:mod:`operators.windows`),
    one moment per kind and group, at most :data:`MAX_GROUPS` groups of anything,
    consent only for the purposes and channels the policy names.
    """

    __slots__ = (
        "cancelled_at",
        "consent",
        "customer_id",
        "deferred",
        "last_event_at",
        "last_sent",
        "moments",
        "pending",
        "sends",
        "seq",
        "suppressions",
        "timezone",
        "windows",
    )

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.windows: dict[tuple[str, Group], list[tuple[int, str]]] = {}
        """(counting signal, group) -> (event time, event id) in time order."""
        self.pending: dict[str, PendingAbsence] = {}
        self.cancelled_at: dict[str, int] = {}
        """Absence signal -> the latest time an event it awaits (``unless``) was seen."""
        self.moments: dict[tuple[str, Group], OpenMoment] = {}
        self.consent: dict[tuple[str, str], tuple[bool, tuple[int, int]]] = {}
        """(purpose, channel) -> (granted, (event time, sequence)) of the latest word."""
        self.last_sent: dict[tuple[str, Group], int] = {}
        """(action, group) -> when it was last sent: its cooldown runs from there."""
        self.suppressions: dict[tuple[str, Group], tuple[int, int]] = {}
        """(suppression, the ``same`` value or None) -> (from, until) when it holds."""
        self.sends: list[Send] = []
        """Recent sends in time order: what caps count, and what feedback refers to."""
        self.deferred: dict[tuple[str, Group], int] = {}
        """(moment kind, group) -> when to decide it again (after quiet hours, or when a
        cap frees a slot)."""
        self.timezone: tuple[str, int] | None = None
        """The latest ``context.timezone`` seen, with the event time that said so."""
        self.last_event_at: int | None = None
        self.seq = 0

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, values: tuple[Any, ...]) -> None:
        for name, value in zip(self.__slots__, values, strict=True):
            setattr(self, name, value)

    def next_due(self) -> int | None:
        """When the earliest pending timer fires (an absence signal or a deferred
        decision), if any."""
        due = [p.due for p in self.pending.values()]
        due.extend(self.deferred.values())
        return min(due) if due else None


def lookup(path: tuple[str, ...], event: Event) -> Any:
    """The value at a ``properties.x`` / ``context.x`` path of an event, or None."""
    node: Any = event.properties if path[0] == "properties" else event.context
    for part in path[1:]:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def record_timezone(state: CustomerState, event: Event) -> None:
    """The customer's time zone is the latest valid ``context.timezone`` they sent."""
    name = event.context.get("timezone")
    if not isinstance(name, str) or zone(name) is None:
        return
    if state.timezone is None or event.time >= state.timezone[1]:
        state.timezone = (name, event.time)


def timezone_of(policy: Policy, state: CustomerState) -> str:
    """The customer's time zone, else the policy's default."""
    return state.timezone[0] if state.timezone is not None else policy.default_timezone


MAX_SENDS = 256
"""Sends kept per customer (the latest), beyond which older ones are forgotten."""
FEEDBACK_WINDOW = 30 * 86_400_000
"""How long a send is remembered for feedback about it (clicked, converted) to close its
moment's group; caps may keep sends longer."""


def record_send(
    policy: Policy,
    state: CustomerState,
    action_id: str,
    action: ActionSpec,
    channel: str,
    group: Group,
    now: int,
) -> None:
    """Remember a send (caps count it once per action id); older sends than any cap's
    window and the feedback window are dropped."""
    horizon = now - max(policy.longest_cap_window, FEEDBACK_WINDOW)
    kept = [s for s in state.sends if s[0] > horizon and s[1] != action_id]
    kept.append((now, action_id, action.name, channel, action.category, group))
    kept.sort(key=lambda s: (s[0], s[1]))
    state.sends = kept[-MAX_SENDS:]


def revoke_consent(
    policy: Policy, state: CustomerState, channel: str, purpose: str | None, at: int
) -> None:
    """An opt-out from feedback (an unsubscribe): for ``purpose`` (None: every purpose the
    policy uses) on ``channel`` (``*``: all)."""
    if channel != "*" and channel not in policy.channels:
        return
    for each in (purpose,) if purpose is not None else sorted(policy.consent_purposes):
        state.consent[(each, channel)] = (False, (at, state.seq))


def sent_on(state: CustomerState, action_id: object) -> str | None:
    """The channel a remembered send with ``action_id`` went out on."""
    for _, sent_id, _, channel, _, _ in state.sends:
        if sent_id == action_id:
            return channel
    return None


def close_moment(policy: Policy, state: CustomerState, acted_on: str) -> None:
    """Feedback that a customer acted on an action (clicked, converted) closes its moment,
    and any decision waiting for it, so no other channel repeats it."""
    group: Group = None
    name: str | None = None
    for _, sent_id, sent_action, _, _, sent_group in state.sends:
        if sent_id == acted_on:
            name, group = sent_action, sent_group
    if name is None:
        parts = acted_on.split(".")
        name = ".".join(parts[1:-1]) if len(parts) >= 3 else None
    action = policy.actions.get(name) if name is not None else None
    if action is None:
        return
    key = (action.moment, group)
    state.moments.pop(key, None)
    state.deferred.pop(key, None)


def names_a_phrase(signal: TextSignal, event: Event) -> SignalFired | None:
    """A text signal fires when its text field names one of its phrases. What the text
    says is not kept: the signal carries only the event id."""
    text = lookup(signal.text_field, event)
    if not isinstance(text, str) or not signal.matcher.matches(text):
        return None
    return SignalFired(signal.name, None, event.time, (event.event_id,))


def watch_absences(
    state: CustomerState, signals: tuple[AbsenceSignal, ...], event: Event, start: bool = True
) -> None:
    """An event cancels the absence signals awaiting it, if it happened after they started,
    and (with ``start``: not for a late event, whose moment has passed) starts those it
    begins, unless an awaited event already came after it."""
    at = event.time
    for signal in signals:
        name = signal.name
        if signal.unless is None or event.type in signal.unless:
            pending = state.pending.get(name)
            if pending is not None and at >= pending.started_at:
                del state.pending[name]
            if at > state.cancelled_at.get(name, -1):
                state.cancelled_at[name] = at
        if start and (signal.on is None or event.type in signal.on):
            pending = state.pending.get(name)
            if (pending is None or at >= pending.started_at) and state.cancelled_at.get(
                name, -1
            ) <= at:
                state.pending[name] = PendingAbsence(at + signal.after, event.event_id, at)


def due_absences(state: CustomerState, until: int, inclusive: bool) -> list[SignalFired]:
    """Pop the absence signals due before ``until`` (or at it, if ``inclusive``), in due order."""
    due = [
        (pending.due, name, pending)
        for name, pending in state.pending.items()
        if pending.due < until or (inclusive and pending.due == until)
    ]
    due.sort()
    fired = []
    for at, name, pending in due:
        del state.pending[name]
        fired.append(SignalFired(name, None, at, (pending.started_by,)))
    return fired


def record_consent(policy: Policy, state: CustomerState, event: Event) -> None:
    """A ``consent_changed`` event sets consent for a purpose on a channel (``*``: all).
    Words on purposes or channels the policy does not name change nothing it decides,
    and are not kept."""
    props = event.properties
    purpose = props["purpose"]
    channel = props.get("channel") or "*"
    if purpose not in policy.consent_purposes:
        return
    if channel != "*" and channel not in policy.channels:
        return
    state.consent[(purpose, channel)] = (bool(props["granted"]), (event.time, state.seq))


def has_consent(state: CustomerState, purpose: str, channel: str) -> bool:
    """Opt-in: granted only if the latest word on this channel (or on all) is a grant."""
    word = latest_word(state, purpose, channel)
    return word is not None and word[0]


def latest_word(
    state: CustomerState, purpose: str, channel: str
) -> tuple[bool, tuple[int, int]] | None:
    """The latest consent word that applies to ``purpose`` on ``channel``, if any."""
    specific = state.consent.get((purpose, channel))
    every = state.consent.get((purpose, "*"))
    if specific is None:
        return every
    if every is None or specific[1] > every[1]:
        return specific
    return every


def open_moments(
    state: CustomerState, policy: Policy, fired: SignalFired, event_id: str
) -> list[tuple[str, Group]]:
    """Open (or refresh) every moment ``fired`` feeds; return their keys."""
    opened = []
    for spec in policy.moments_by_signal.get(fired.signal, ()):
        key = (spec.name, fired.group)
        moment = state.moments.get(key)
        if moment is None:
            make_room(state.moments, spec.name, lambda moment: moment.opened_at)
            state.moments[key] = OpenMoment(
                spec.value, fired.at, event_id, (fired.signal,), fired.triggered_by[-MAX_TRIGGERS:]
            )
        else:
            moment.value = spec.value
            moment.opened_at = max(moment.opened_at, fired.at)
            if fired.signal not in moment.signals:
                moment.signals = (*moment.signals, fired.signal)
            moment.triggered_by = _latest_unique(moment.triggered_by, fired.triggered_by)
        opened.append(key)
    return opened


def _latest_unique(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    merged = list(old)
    for event_id in new:
        if event_id not in merged:
            merged.append(event_id)
    return tuple(merged[-MAX_TRIGGERS:])


def record_sent(state: CustomerState, action: ActionSpec, group: Group, now: int) -> None:
    """Start ``action``'s cooldown for ``group``; cooldowns that have run out are dropped."""
    key = (action.name, group)
    if key not in state.last_sent:
        make_room(
            state.last_sent,
            action.name,
            lambda sent: sent,
            lambda sent: sent + action.cooldown <= now,
        )
    state.last_sent[key] = now


def evict_at(policy: Policy, state: CustomerState) -> int | None:
    """When this customer may be forgotten: ``evict_idle_after`` past their last event, once
    nothing is pending. None while an absence timer is pending (it has to fire first).

    Pending means a timer, a moment still worth acting on, a window still counting, a
    cooldown or a suppression still running. Consent is not: a forgotten customer has
    none, so nothing marketing reaches them until they grant it again (opt-in).
    """
    if state.pending or state.deferred or state.last_event_at is None:
        return None
    at = state.last_event_at + policy.evict_idle_after
    for (name, _), moment in state.moments.items():
        spec = policy.moments.get(name)
        threshold = policy.lowest_min_value.get(name)
        if spec is not None and threshold is not None:
            at = max(at, falls_below_at(moment.value, moment.opened_at, spec.half_life, threshold))
    for (signal, _), window in state.windows.items():
        counting = policy.counting.get(signal)
        if counting is not None and window:
            at = max(at, window[-1][0] + counting.within)
    for (action, _), sent in state.last_sent.items():
        action_spec = policy.actions.get(action)
        if action_spec is not None:
            at = max(at, sent + action_spec.cooldown)
    for _, until in state.suppressions.values():
        at = max(at, until)
    if state.sends and policy.caps:
        at = max(at, state.sends[-1][0] + policy.longest_cap_window)
    return at
