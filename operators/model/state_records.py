"""A customer's context as a plain JSON-ready record: what a merge's transfer carries to
the surviving profile (possibly another process), readable by a person."""

from __future__ import annotations

from typing import Any

from operators.model.state import (
    AttributeWord,
    ConsentWord,
    CustomerState,
    Evidence,
    MomentKey,
    OpenMoment,
    PendingAbsence,
    Send,
    Spell,
    Trial,
    Watch,
)

STATE_FORMAT = 2


def state_to_record(state: CustomerState) -> dict[str, Any]:
    """``state`` as lists and scalars only (see :func:`state_from_record`)."""
    return {
        "format": STATE_FORMAT,
        "customer_id": state.customer_id,
        "windows": [
            [signal, group, [list(entry) for entry in entries]]
            for (signal, group), entries in state.windows.items()
        ],
        "pending": [[name, p.due, p.started_by, p.started_at] for name, p in state.pending.items()],
        "moments": [
            [
                key.moment,
                key.group,
                m.value_at_open,
                m.opened_at,
                m.opening_event,
                list(m.signals),
                list(m.triggered_by),
            ]
            for key, m in state.moments.items()
        ],
        "consent": [
            [purpose, channel, word.granted, [word.at, word.seq]]
            for (purpose, channel), word in state.consent.items()
        ],
        "last_sent": [[action, group, at] for (action, group), at in state.cooldowns.items()],
        "suppressions": [
            [name, value, spell.start, spell.until]
            for (name, value), spell in state.suppressions.items()
        ],
        "sends": [list(send) for send in state.sends],
        "deferred": [[key.moment, key.group, due] for key, due in state.deferred.items()],
        "timezone": list(state.timezone) if state.timezone is not None else None,
        "cancelled_at": [[name, at] for name, at in state.cancelled_at.items()],
        "last_event_at": state.last_event_at,
        "seq": state.seq,
        "watches": [list(watch) for watch in state.watches],
        "attributes": [list(word) for word in state.attributes],
        "identifier_kinds": list(state.identifier_kinds),
        "bounced": [list(bounce) for bounce in state.bounced],
        "trials": [
            [*trial[:6], list(trial.outcomes), trial.control, trial.window, trial.hour]
            + ([] if trial.split is None else [trial.split])
            for trial in state.trials
        ],
        "evidence": [list(evidence) for evidence in state.evidence],
    }


def state_from_record(record: dict[str, Any]) -> CustomerState:
    """The inverse of :func:`state_to_record`."""
    if record.get("format") != STATE_FORMAT:
        raise ValueError(f"unknown customer state format {record.get('format')!r}")
    state = CustomerState(record["customer_id"])
    state.windows = {
        (s, g): [(int(t), str(e)) for t, e in entries] for s, g, entries in record["windows"]
    }
    state.pending = {
        name: PendingAbsence(int(due), by, int(at)) for name, due, by, at in record["pending"]
    }
    state.moments = {
        MomentKey(name, group): OpenMoment(
            float(value), opened, opening, tuple(signals), tuple(triggers)
        )
        for name, group, value, opened, opening, signals, triggers in record["moments"]
    }
    state.consent = {
        (p, c): ConsentWord(bool(granted), int(at), int(seq))
        for p, c, granted, (at, seq) in record["consent"]
    }
    state.cooldowns = {(a, g): int(at) for a, g, at in record["last_sent"]}
    state.suppressions = {
        (n, v): Spell(int(start), int(until)) for n, v, start, until in record["suppressions"]
    }
    state.sends = [_send(fields) for fields in record["sends"]]
    state.deferred = {MomentKey(name, group): int(due) for name, group, due in record["deferred"]}
    if record["timezone"] is not None:
        name, at = record["timezone"]
        state.timezone = (str(name), int(at))
    state.cancelled_at = {name: int(at) for name, at in record["cancelled_at"]}
    state.last_event_at = record["last_event_at"]
    state.seq = record["seq"]
    state.watches = tuple(
        Watch(int(until), str(c), str(i), str(a), bool(held), int(at), bool(converted))
        for until, c, i, a, held, at, converted in record.get("watches", ())
    )
    state.attributes = tuple(
        AttributeWord(str(name), str(value), int(at))
        for name, value, at in record.get("attributes", ())
    )
    state.identifier_kinds = tuple(str(kind) for kind in record.get("identifier_kinds", ()))
    state.bounced = tuple((str(c), int(at)) for c, at in record.get("bounced", ()))
    state.trials = tuple(_trial(fields) for fields in record.get("trials", ()))
    state.evidence = tuple(
        Evidence(str(kind), str(a), str(arm), float(n), float(r), int(at))
        for kind, a, arm, n, r, at in record.get("evidence", ())
    )
    return state


def _send(fields: list[Any]) -> Send:
    """A send from its record (older records end before ``held_out``, ``bounced`` or
    ``engaged_at``)."""
    at, action_id, action, channel, category, group, *flags = fields
    held_out = len(flags) > 0 and bool(flags[0])
    bounced = len(flags) > 1 and bool(flags[1])
    engaged_at = flags[2] if len(flags) > 2 else None
    return Send(
        int(at),
        str(action_id),
        str(action),
        str(channel),
        str(category),
        group,
        held_out,
        bounced,
        int(engaged_at) if engaged_at is not None else None,
    )


def _trial(fields: list[Any]) -> Trial:
    closes, i, a, c, t, r, outcomes, control, window, hour, *split = fields
    return Trial(
        int(closes),
        str(i),
        str(a),
        str(c),
        str(t),
        float(r),
        tuple(map(str, outcomes)),
        bool(control),
        int(window),
        int(hour),
        str(split[0]) if split else None,
    )
