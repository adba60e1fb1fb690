"""Decide: for the moments open now, whether to act, with which action, on which channel.

Every action of every moment decided at one instant is judged against the
guardrails, channel by channel in the action's order: suppressions, consent,
caps, quiet hours. Of those that could be sent, the highest score (decayed
value times category weight) is sent and the rest are ``outranked``; the
others get their own outcome. An action held back by quiet hours or a full
cap is decided again when they end, if its moment will still be worth it.
"""

from __future__ import annotations

from dataclasses import dataclass

from operators.context import (
    CustomerState,
    Group,
    OpenMoment,
    has_consent,
    record_send,
    record_sent,
    timezone_of,
)
from operators.decay import decayed, falls_below_at
from operators.guardrails import full_cap, quiet_until, zone
from operators.model import Action, Decision, Outcome
from operators.policy import ActionSpec, Policy
from operators.suppression import suppressed_by
from operators.timefmt import format_ms

Output = Decision | Action
MomentKey = tuple[str, Group]
QUIET_HOURS = "quiet_hours"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the guardrails say about one action of one moment, before arbitration."""

    action: ActionSpec
    key: MomentKey
    moment: OpenMoment
    value: float
    outcome: Outcome
    reason: str
    channel: str | None = None
    again_at: int | None = None
    """When to decide again (the end of quiet hours, or when a cap frees a slot)."""
    rule: str | None = None
    """What held it back: a cap, a suppression, or ``quiet_hours``."""
    until: int | None = None
    """Until when it is held back."""

    @property
    def score(self) -> float:
        return self.value * self.action.priority


def decide(policy: Policy, state: CustomerState, keys: list[MomentKey], now: int) -> list[Output]:
    """Decide the moments at ``keys`` together, as of ``now``: at most one action is sent."""
    verdicts: list[Verdict] = []
    for key in dict.fromkeys(keys):
        moment = state.moments.get(key)
        if moment is None:
            continue
        state.deferred.pop(key, None)
        spec = policy.moments[key[0]]
        value = decayed(moment.value, now - moment.opened_at, spec.half_life)
        for action in policy.actions_by_moment.get(key[0], ()):
            verdicts.append(_judge(policy, state, action, key, moment, value, now))
    verdicts.sort(key=lambda v: (-v.score, v.action.name, v.key[0], v.key[1] or ""))
    winner = next((v for v in verdicts if v.outcome is Outcome.SENT), None)
    outputs: list[Output] = []
    for verdict in verdicts:
        if verdict is winner:
            outputs.extend(_send(policy, state, verdict, now))
        elif verdict.outcome is Outcome.SENT:
            assert winner is not None
            outranked = f"outranked by {winner.action.name}"
            outputs.append(_decision(policy, state, verdict, now, Outcome.OUTRANKED, outranked))
        else:
            outputs.append(_decision(policy, state, verdict, now, verdict.outcome, verdict.reason))
            if verdict.again_at is not None and verdict.again_at > now:
                due = state.deferred.get(verdict.key, verdict.again_at)
                state.deferred[verdict.key] = min(due, verdict.again_at)
    if winner is not None:
        del state.moments[winner.key]
        state.deferred.pop(winner.key, None)
    return outputs


def _judge(
    policy: Policy,
    state: CustomerState,
    action: ActionSpec,
    key: MomentKey,
    moment: OpenMoment,
    value: float,
    now: int,
) -> Verdict:
    def verdict(
        outcome: Outcome,
        reason: str,
        channel: str | None = None,
        again_at: int | None = None,
        rule: str | None = None,
        until: int | None = None,
    ) -> Verdict:
        return Verdict(action, key, moment, value, outcome, reason, channel, again_at, rule, until)

    group = key[1]
    if value < action.min_value:
        return verdict(Outcome.STALE, f"value {value:.2f} is below min_value {action.min_value:g}")
    last = state.last_sent.get((action.name, group))
    if last is not None and now - last < action.cooldown:
        cooled = last + action.cooldown
        return verdict(Outcome.COOLDOWN, f"cooldown until {format_ms(cooled)}", until=cooled)
    blocked: list[Verdict] = []
    for channel in action.channels:
        suppression = suppressed_by(policy, state, action, channel, group, now)
        if suppression is not None:
            name, until = suppression
            blocked.append(
                verdict(
                    Outcome.SUPPRESSED,
                    f"suppressed by {name} until {format_ms(until)}",
                    channel,
                    rule=name,
                    until=until,
                )
            )
            continue
        if action.consent is not None and not has_consent(state, action.consent, channel):
            blocked.append(
                verdict(Outcome.NO_CONSENT, f"no {action.consent} consent on {channel}", channel)
            )
            continue
        full = full_cap(policy.caps, state.sends, action.name, channel, action.category, now)
        if full is not None:
            cap, frees = full
            blocked.append(verdict(Outcome.CAPPED, cap.name, channel, frees, cap.name, frees))
            continue
        quiet = policy.quiet_hours
        if quiet is not None and quiet.applies(channel, action.category):
            tz = zone(timezone_of(policy, state))
            ends = quiet_until(quiet, now, tz) if tz is not None else None
            if ends is not None:
                blocked.append(
                    verdict(Outcome.DEFERRED, "quiet hours", channel, ends, QUIET_HOURS, ends)
                )
                continue
        return verdict(Outcome.SENT, "eligible", channel)
    return _held_back(policy, blocked, action, moment, key)


def _held_back(
    policy: Policy, blocked: list[Verdict], action: ActionSpec, moment: OpenMoment, key: MomentKey
) -> Verdict:
    """No channel passed: wait for the soonest channel that only has to wait (quiet hours,
    then a cap), if the moment will still be worth it then; else the first channel's reason."""
    half_life = policy.moments[key[0]].half_life
    for outcome in (Outcome.DEFERRED, Outcome.CAPPED):
        waiting = [v for v in blocked if v.outcome is outcome]
        if not waiting:
            continue
        soonest = min(waiting, key=lambda v: (v.again_at is None, v.again_at or 0))
        again = soonest.again_at
        worth_then = again is not None and (
            decayed(moment.value, again - moment.opened_at, half_life) >= action.min_value
        )
        if outcome is Outcome.DEFERRED:
            assert again is not None
            if not worth_then:
                return _replace(
                    soonest,
                    Outcome.STALE,
                    f"quiet hours until {format_ms(again)}, when its value will be below "
                    f"min_value {action.min_value:g}",
                    None,
                )
            return _replace(
                soonest, Outcome.DEFERRED, f"quiet hours until {format_ms(again)}", again
            )
        cap = soonest.rule
        if worth_then:
            assert again is not None
            return _replace(
                soonest, Outcome.CAPPED, f"capped by {cap} until {format_ms(again)}", again
            )
        return _replace(
            soonest,
            Outcome.CAPPED,
            f"capped by {cap}; its value falls below min_value before a slot frees",
            None,
        )
    return blocked[0]


def _replace(verdict: Verdict, outcome: Outcome, reason: str, again_at: int | None) -> Verdict:
    held = outcome is not Outcome.STALE
    return Verdict(
        verdict.action,
        verdict.key,
        verdict.moment,
        verdict.value,
        outcome,
        reason,
        verdict.channel,
        again_at,
        verdict.rule if held else None,
        verdict.until if held else None,
    )


def _send(policy: Policy, state: CustomerState, verdict: Verdict, now: int) -> list[Output]:
    action, moment, (name, group) = verdict.action, verdict.moment, verdict.key
    assert verdict.channel is not None
    decision = _decision(policy, state, verdict, now, Outcome.SENT, "eligible")
    the_id = decision.action_id
    assert the_id is not None
    record_sent(state, action, group, now)
    record_send(policy, state, the_id, action, verdict.channel, group, now)
    spec = policy.moments[name]
    return [
        decision,
        Action(
            action_id=the_id,
            customer_id=state.customer_id,
            action=action.name,
            channel=verdict.channel,
            category=action.category,
            priority=action.priority,
            template=action.template,
            moment=name,
            group=group,
            value=round(verdict.value, 4),
            signals=moment.signals,
            triggered_by=moment.triggered_by,
            decided_at=now,
            expires_at=falls_below_at(
                moment.value, moment.opened_at, spec.half_life, action.min_value
            ),
            policy_version=policy.version,
        ),
    ]


def _decision(
    policy: Policy,
    state: CustomerState,
    verdict: Verdict,
    now: int,
    outcome: Outcome,
    reason: str,
) -> Decision:
    action, moment, (name, group) = verdict.action, verdict.moment, verdict.key
    with_id = outcome in (Outcome.SENT, Outcome.DEFERRED)
    return Decision(
        customer_id=state.customer_id,
        at=now,
        action=action.name,
        outcome=outcome,
        reason=reason,
        moment=name,
        group=group,
        value=round(verdict.value, 4),
        signals=moment.signals,
        triggered_by=moment.triggered_by,
        policy_version=policy.version,
        action_id=(
            policy.action_ids.issue(
                state.customer_id, action.name, name, group, moment.opening_event
            )
            if with_id
            else None
        ),
        channel=verdict.channel if outcome is not Outcome.OUTRANKED else None,
        rule=verdict.rule if outcome is verdict.outcome else None,
        until=verdict.until if outcome is verdict.outcome else None,
    )
