"""Customer context: the per-customer state and the signals it detects, in event time."""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass
from typing import Any

from operators.decay import decayed
from operators.model import Event
from operators.policy import AbsenceSignal, CountingSignal, Policy

Group = str | None


@dataclass(frozen=True, slots=True)
class SignalFired:
    """A signal that fired at ``at``, for ``group``, because of ``triggered_by`` (event ids)."""

    signal: str
    group: Group
    at: int
    triggered_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PendingAbsence:
    """An absence signal waiting: it fires at ``due`` unless an awaited event comes first."""

    due: int
    started_by: str


@dataclass(slots=True)
class OpenMoment:
    """A journey moment that is open: its value decays from ``value`` since ``opened_at``."""

    value: float
    opened_at: int
    opening_event: str
    signals: tuple[str, ...]
    triggered_by: tuple[str, ...]


class CustomerState:
    """Everything Concierge keeps about one customer. Bounded: windows keep only what
    their signal needs, moments one per kind and group."""

    __slots__ = (
        "cancelled_at",
        "consent",
        "customer_id",
        "last_event_at",
        "last_sent",
        "moments",
        "pending",
        "seq",
        "windows",
    )

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.windows: dict[tuple[str, Group], list[tuple[int, str]]] = {}
        self.pending: dict[str, PendingAbsence] = {}
        self.cancelled_at: dict[str, int] = {}
        """Absence signal -> the latest time an event it awaits (``unless``) was seen."""
        self.moments: dict[tuple[str, Group], OpenMoment] = {}
        self.consent: dict[tuple[str, str], tuple[bool, tuple[int, int]]] = {}
        """(purpose, channel) -> (granted, (event time, sequence)) of the latest word."""
        self.last_sent: dict[tuple[str, Group], int] = {}
        self.last_event_at: int | None = None
        self.seq = 0

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, values: tuple[Any, ...]) -> None:
        for name, value in zip(self.__slots__, values, strict=True):
            setattr(self, name, value)

    def next_due(self) -> int | None:
        """When the earliest pending absence signal fires, if any."""
        if not self.pending:
            return None
        return min(p.due for p in self.pending.values())


def lookup(path: tuple[str, ...], event: Event) -> Any:
    """The value at a ``properties.x`` / ``context.x`` path of an event, or None."""
    node: Any = event.properties if path[0] == "properties" else event.context
    for part in path[1:]:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _group_of(signal: CountingSignal, event: Event) -> Group | bool:
    """The window group an event counts in; False when the event lacks the group field."""
    if signal.group_by is None:
        return None
    value = lookup(signal.group_by, event)
    if value is None or isinstance(value, (dict, list)):
        return False
    return str(value)


def count(state: CustomerState, signal: CountingSignal, event: Event) -> SignalFired | None:
    """Count ``event`` in its window; the signal fires when the window reaches ``at_least``.

    A window keeps only the latest ``at_least`` events: that is all the signal needs.
    """
    group = _group_of(signal, event)
    if group is False:
        return None
    assert group is not True
    key = (signal.name, group)
    window = state.windows.get(key)
    if window is None:
        window = state.windows[key] = []
    entry = (event.time, event.event_id)
    if any(seen == event.event_id for _, seen in window):
        return None
    insort(window, entry)
    if len(window) > signal.at_least:
        del window[: len(window) - signal.at_least]
    if entry not in window or len(window) < signal.at_least:
        return None
    if window[-1][0] - window[0][0] > signal.within:
        return None
    return SignalFired(signal.name, group, event.time, tuple(e for _, e in window))


def watch_absences(state: CustomerState, signals: tuple[AbsenceSignal, ...], event: Event) -> None:
    """An event cancels the absence signals awaiting it and starts those it begins."""
    for signal in signals:
        if signal.unless is None or event.type in signal.unless:
            state.pending.pop(signal.name, None)
            if event.time > state.cancelled_at.get(signal.name, -1):
                state.cancelled_at[signal.name] = event.time
        if signal.on is None or event.type in signal.on:
            state.pending[signal.name] = PendingAbsence(event.time + signal.after, event.event_id)


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


def record_consent(state: CustomerState, event: Event) -> None:
    """A ``consent_changed`` event sets consent for a purpose on a channel (``*``: all)."""
    props = event.properties
    channel = props.get("channel") or "*"
    state.consent[(props["purpose"], channel)] = (bool(props["granted"]), (event.time, state.seq))


def has_consent(state: CustomerState, purpose: str, channel: str) -> bool:
    """Opt-in: granted only if the latest word on this channel (or on all) is a grant."""
    word = _latest_word(state, purpose, channel)
    return word is not None and word[0]


def _latest_word(
    state: CustomerState, purpose: str, channel: str
) -> tuple[bool, tuple[int, int]] | None:
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
            state.moments[key] = OpenMoment(
                spec.value, fired.at, event_id, (fired.signal,), fired.triggered_by
            )
        else:
            moment.value = spec.value
            moment.opened_at = fired.at
            if fired.signal not in moment.signals:
                moment.signals = (*moment.signals, fired.signal)
            moment.triggered_by = _latest_unique(moment.triggered_by, fired.triggered_by)
        opened.append(key)
    return opened


MAX_TRIGGERS = 16


def _latest_unique(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    merged = list(old)
    for event_id in new:
        if event_id not in merged:
            merged.append(event_id)
    return tuple(merged[-MAX_TRIGGERS:])


def merge_states(policy: Policy, survivor: CustomerState, retired: CustomerState) -> None:
    """Fold a retired profile's context into its survivor's, as if one customer had done both.

    Windows merge in time order (each event once); the more valuable open moment
    of a kind and group stays; cooldowns keep the latest send; consent keeps the
    most restrictive word where both said something; pending absences keep the
    latest start, so one person's activity on either profile counts.
    """
    for key, events in retired.windows.items():
        merged = sorted(set(survivor.windows.get(key, [])) | set(events))
        signal = policy.counting.get(key[0])
        keep = signal.at_least if signal is not None else len(merged)
        survivor.windows[key] = _unique_events(merged)[-keep:]
    survivor.pending = _surviving_absences(policy, survivor, retired)
    for name, at in retired.cancelled_at.items():
        survivor.cancelled_at[name] = max(at, survivor.cancelled_at.get(name, at))
    now = max(survivor.last_event_at or 0, retired.last_event_at or 0)
    for key, moment in retired.moments.items():
        mine_moment = survivor.moments.get(key)
        spec = policy.moments.get(key[0])
        if (
            mine_moment is None
            or spec is None
            or _worth(moment, spec.half_life, now) > _worth(mine_moment, spec.half_life, now)
        ):
            survivor.moments[key] = moment
    for key, sent in retired.last_sent.items():
        survivor.last_sent[key] = max(sent, survivor.last_sent.get(key, sent))
    survivor.consent = _restrictive_consent(policy, survivor, retired)
    if retired.last_event_at is not None:
        survivor.last_event_at = now
    survivor.seq = max(survivor.seq, retired.seq)


def _surviving_absences(
    policy: Policy, one: CustomerState, other: CustomerState
) -> dict[str, PendingAbsence]:
    """A pending absence survives unless the other profile saw what it awaits after it
    started; of two survivors, the later start wins."""
    after = {signal.name: signal.after for signal in policy.absence_signals}
    kept: dict[str, PendingAbsence] = {}
    for mine, theirs in ((one, other), (other, one)):
        for name, pending in mine.pending.items():
            started = pending.due - after.get(name, 0)
            if theirs.cancelled_at.get(name, -1) >= started:
                continue
            if name not in kept or pending.due > kept[name].due:
                kept[name] = pending
    return kept


def _restrictive_consent(
    policy: Policy, one: CustomerState, other: CustomerState
) -> dict[tuple[str, str], tuple[bool, tuple[int, int]]]:
    """Per purpose and channel, a grant only if every profile that said something granted."""
    merged: dict[tuple[str, str], tuple[bool, tuple[int, int]]] = {}
    purposes = {purpose for purpose, _ in one.consent} | {purpose for purpose, _ in other.consent}
    for purpose in purposes:
        for channel in policy.channels:
            words = [
                w
                for w in (
                    _latest_word(one, purpose, channel),
                    _latest_word(other, purpose, channel),
                )
                if w is not None
            ]
            if words:
                merged[(purpose, channel)] = (
                    all(granted for granted, _ in words),
                    max(order for _, order in words),
                )
    return merged


def _unique_events(entries: list[tuple[int, str]]) -> list[tuple[int, str]]:
    seen: set[str] = set()
    unique = []
    for at, event_id in entries:
        if event_id not in seen:
            seen.add(event_id)
            unique.append((at, event_id))
    return unique


def _worth(moment: OpenMoment, half_life: int, now: int) -> float:
    return decayed(moment.value, now - moment.opened_at, half_life)


STATE_FORMAT = 1


def state_to_record(state: CustomerState) -> dict[str, Any]:
    """A customer's context as plain JSON-ready data: safe to send between processes
    (a merge moves it to the surviving profile) and readable by a person."""
    return {
        "format": STATE_FORMAT,
        "customer_id": state.customer_id,
        "windows": [
            [signal, group, [list(e) for e in events]]
            for (signal, group), events in state.windows.items()
        ],
        "pending": [[name, p.due, p.started_by] for name, p in state.pending.items()],
        "moments": [
            [
                name,
                group,
                m.value,
                m.opened_at,
                m.opening_event,
                list(m.signals),
                list(m.triggered_by),
            ]
            for (name, group), m in state.moments.items()
        ],
        "consent": [
            [purpose, channel, granted, list(order)]
            for (purpose, channel), (granted, order) in state.consent.items()
        ],
        "last_sent": [[action, group, at] for (action, group), at in state.last_sent.items()],
        "cancelled_at": [[name, at] for name, at in state.cancelled_at.items()],
        "last_event_at": state.last_event_at,
        "seq": state.seq,
    }


def state_from_record(record: dict[str, Any]) -> CustomerState:
    """The inverse of :func:`state_to_record`."""
    if record.get("format") != STATE_FORMAT:
        raise ValueError(f"unknown customer state format {record.get('format')!r}")
    state = CustomerState(record["customer_id"])
    state.windows = {
        (s, g): [(int(t), str(e)) for t, e in events] for s, g, events in record["windows"]
    }
    state.pending = {name: PendingAbsence(due, by) for name, due, by in record["pending"]}
    state.moments = {
        (name, group): OpenMoment(float(value), opened, opening, tuple(signals), tuple(triggers))
        for name, group, value, opened, opening, signals, triggers in record["moments"]
    }
    state.consent = {(p, c): (bool(g), (int(o[0]), int(o[1]))) for p, c, g, o in record["consent"]}
    state.last_sent = {(a, g): int(at) for a, g, at in record["last_sent"]}
    state.cancelled_at = {name: int(at) for name, at in record["cancelled_at"]}
    state.last_event_at = record["last_event_at"]
    state.seq = record["seq"]
    return state
