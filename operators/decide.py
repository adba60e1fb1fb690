"""Decide: for an open moment, whether to act now, with which action, on which channel."""

from __future__ import annotations

import hashlib

from operators.context import (
    CustomerState,
    Group,
    OpenMoment,
    has_consent,
    record_sent,
    suppressed_by,
)
from operators.decay import decayed, falls_below_at
from operators.model import Action, Decision, Outcome
from operators.policy import ActionSpec, Policy
from operators.timefmt import format_ms

Output = Decision | Action


def action_id(customer_id: str, action: str, moment: str, group: Group, opening_event: str) -> str:
    """The idempotency key of an action: the same customer, action, moment, group and
    opening event always give the same key, so a replay after a crash repeats it."""
    material = f"{customer_id}|{action}|{moment}|{group or ''}|{opening_event}"
    digest = hashlib.blake2b(material.encode(), digest_size=8).hexdigest()
    return f"{customer_id}.{action}.{digest}"


def decide(policy: Policy, state: CustomerState, key: tuple[str, Group], now: int) -> list[Output]:
    """Decide every action of the moment at ``key`` as of ``now``; sending one consumes it."""
    moment = state.moments.get(key)
    if moment is None:
        return []
    name, group = key
    spec = policy.moments[name]
    value = decayed(moment.value, now - moment.opened_at, spec.half_life)
    candidates = sorted(policy.actions_by_moment.get(name, ()), key=lambda a: (-a.priority, a.name))
    outputs: list[Output] = []
    sent: str | None = None
    for action in candidates:
        if sent is not None:
            outputs.append(
                _decision(
                    policy,
                    state,
                    action,
                    moment,
                    key,
                    now,
                    value,
                    Outcome.OUTRANKED,
                    f"outranked by {sent}",
                )
            )
            continue
        outcome, reason = _check(policy, state, action, group, value, now)
        if outcome is not Outcome.SENT:
            outputs.append(
                _decision(policy, state, action, moment, key, now, value, outcome, reason)
            )
            continue
        channel = action.channels[0]
        the_id = action_id(state.customer_id, action.name, name, group, moment.opening_event)
        outputs.append(
            _decision(
                policy, state, action, moment, key, now, value, outcome, reason, the_id, channel
            )
        )
        outputs.append(
            Action(
                action_id=the_id,
                customer_id=state.customer_id,
                action=action.name,
                channel=channel,
                category=action.category,
                priority=action.priority,
                template=action.template,
                moment=name,
                group=group,
                value=round(value, 4),
                signals=moment.signals,
                triggered_by=moment.triggered_by,
                decided_at=now,
                expires_at=falls_below_at(
                    moment.value, moment.opened_at, spec.half_life, action.min_value
                ),
                policy_version=policy.version,
            )
        )
        record_sent(state, action, group, now)
        sent = action.name
    if sent is not None:
        del state.moments[key]
    return outputs


def _check(
    policy: Policy,
    state: CustomerState,
    action: ActionSpec,
    group: Group,
    value: float,
    now: int,
) -> tuple[Outcome, str]:
    if value < action.min_value:
        return Outcome.STALE, f"value {value:.2f} is below min_value {action.min_value:g}"
    channel = action.channels[0]
    suppression = suppressed_by(policy, state, action, channel, group, now)
    if suppression is not None:
        name, until = suppression
        return Outcome.SUPPRESSED, f"suppressed by {name} until {format_ms(until)}"
    last = state.last_sent.get((action.name, group))
    if last is not None and now - last < action.cooldown:
        return Outcome.COOLDOWN, f"cooldown until {format_ms(last + action.cooldown)}"
    if action.consent is not None and not has_consent(state, action.consent, channel):
        return Outcome.NO_CONSENT, f"no {action.consent} consent on {channel}"
    return Outcome.SENT, "eligible"


def _decision(
    policy: Policy,
    state: CustomerState,
    action: ActionSpec,
    moment: OpenMoment,
    key: tuple[str, Group],
    now: int,
    value: float,
    outcome: Outcome,
    reason: str,
    the_id: str | None = None,
    channel: str | None = None,
) -> Decision:
    return Decision(
        customer_id=state.customer_id,
        at=now,
        action=action.name,
        outcome=outcome,
        reason=reason,
        moment=key[0],
        group=key[1],
        value=round(value, 4),
        signals=moment.signals,
        triggered_by=moment.triggered_by,
        policy_version=policy.version,
        action_id=the_id,
        channel=channel,
    )
