"""A customer's context handed over in a merge: as a record, and folded into another.

When two profiles turn out to be one person, the retired profile's context
travels to the survivor as a plain JSON-ready record (:func:`state_to_record`)
and is folded in there (:func:`merge_states`) as if one customer had done both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from operators.context import (
    MAX_GROUPS,
    MAX_SENDS,
    CustomerState,
    Group,
    OpenMoment,
    PendingAbsence,
    V,
    keep_latest,
    latest_word,
)
from operators.decay import decayed
from operators.policy import Policy
from operators.suppression import joined
from operators.windows import prune


def merge_states(policy: Policy, survivor: CustomerState, retired: CustomerState) -> None:
    """Fold a retired profile's context into its survivor's, as if one customer had done both.

    Windows merge in time order (each event once); the more valuable open moment
    of a kind and group stays; cooldowns and suppressions keep the later end;
    consent keeps the most restrictive word where both said something; sends
    count once each against the caps; pending absences keep the latest start and
    deferred decisions the earliest, so one person's activity on either profile
    counts.
    """
    for key, events in retired.windows.items():
        merged = _unique_events(sorted(set(survivor.windows.get(key, [])) | set(events)))
        signal = policy.counting.get(key[0])
        if signal is not None:
            prune(merged, signal, policy.allowed_lateness)
        survivor.windows[key] = merged
    _keep_latest_groups(survivor.windows, lambda window: window[-1][0])
    survivor.pending = _surviving_absences(survivor, retired)
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
    _keep_latest_groups(survivor.moments, lambda moment: moment.opened_at)
    for key, sent in retired.last_sent.items():
        survivor.last_sent[key] = max(sent, survivor.last_sent.get(key, sent))
    _keep_latest_groups(survivor.last_sent, lambda sent: sent)
    for key, spell in retired.suppressions.items():
        held = survivor.suppressions.get(key)
        survivor.suppressions[key] = spell if held is None else joined(held, spell)
    _keep_latest_groups(survivor.suppressions, lambda spell: spell[1])
    survivor.consent = _restrictive_consent(policy, survivor, retired)
    sends = {send[1]: send for send in survivor.sends}
    for send in retired.sends:
        sends.setdefault(send[1], send)
    survivor.sends = sorted(sends.values(), key=lambda s: (s[0], s[1]))[-MAX_SENDS:]
    for key, due in retired.deferred.items():
        survivor.deferred[key] = min(due, survivor.deferred.get(key, due))
    if retired.timezone is not None and (
        survivor.timezone is None or retired.timezone[1] > survivor.timezone[1]
    ):
        survivor.timezone = retired.timezone
    if retired.last_event_at is not None:
        survivor.last_event_at = now
    survivor.seq = max(survivor.seq, retired.seq)


def _keep_latest_groups(table: dict[tuple[str, Group], V], recency: Callable[[V], int]) -> None:
    """At most :data:`MAX_GROUPS` groups per name: the most recent by ``recency(value)``."""
    for name in {key[0] for key in table}:
        keep_latest(table, name, recency, MAX_GROUPS)


def _surviving_absences(one: CustomerState, other: CustomerState) -> dict[str, PendingAbsence]:
    """A pending absence survives unless the other profile saw what it awaits after it
    started (at the same instant, both could be the start: it survives); of two
    survivors, the later start wins."""
    kept: dict[str, PendingAbsence] = {}
    for mine, theirs in ((one, other), (other, one)):
        for name, pending in mine.pending.items():
            if theirs.cancelled_at.get(name, -1) > pending.started_at:
                continue
            if name not in kept or pending.started_at > kept[name].started_at:
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
                for w in (latest_word(one, purpose, channel), latest_word(other, purpose, channel))
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


STATE_FORMAT = 2


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
        "pending": [[name, p.due, p.started_by, p.started_at] for name, p in state.pending.items()],
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
        "suppressions": [
            [name, value, start, until]
            for (name, value), (start, until) in state.suppressions.items()
        ],
        "sends": [list(send) for send in state.sends],
        "deferred": [[name, group, due] for (name, group), due in state.deferred.items()],
        "timezone": list(state.timezone) if state.timezone is not None else None,
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
    state.pending = {
        name: PendingAbsence(int(due), by, int(at)) for name, due, by, at in record["pending"]
    }
    state.moments = {
        (name, group): OpenMoment(float(value), opened, opening, tuple(signals), tuple(triggers))
        for name, group, value, opened, opening, signals, triggers in record["moments"]
    }
    state.consent = {(p, c): (bool(g), (int(o[0]), int(o[1]))) for p, c, g, o in record["consent"]}
    state.last_sent = {(a, g): int(at) for a, g, at in record["last_sent"]}
    state.suppressions = {
        (n, v): (int(start), int(until)) for n, v, start, until in record["suppressions"]
    }
    state.sends = [
        (int(at), str(i), str(a), str(c), str(k), g) for at, i, a, c, k, g in record["sends"]
    ]
    state.deferred = {(name, group): int(due) for name, group, due in record["deferred"]}
    zone = record["timezone"]
    state.timezone = (str(zone[0]), int(zone[1])) if zone is not None else None
    state.cancelled_at = {name: int(at) for name, at in record["cancelled_at"]}
    state.last_event_at = record["last_event_at"]
    state.seq = record["seq"]
    return state
