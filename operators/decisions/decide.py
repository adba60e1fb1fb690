"""Decide: for the moments open now, whether to act, with which action, on which channel.

Every action of every moment decided at one instant is judged against the
guardrails, channel by channel in the action's order: suppressions, consent,
caps, quiet hours. Of those that could be sent, the highest score (decayed
value times category weight) is sent (with learning's ``order``, of that one's
category, the highest expected value: the score times the estimated reward of
the channel it would go on) and the rest are ``outranked``: they are
decided again right after it, with its send counted, so the caps (not the
arbitration) say how many actions a customer gets at once. The others get their
own outcome. An action held back by quiet hours or a full
cap is decided again when they end, if its moment will still be worth it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from operators.context.consent import has_consent
from operators.context.decay import falls_below_at
from operators.context.moments import value_now
from operators.context.reachability import unreachable_because
from operators.context.sends import recent_sends, record_send
from operators.context.suppression import suppressed_by
from operators.context.timezones import timezone_of
from operators.decisions.capacity import Answer, Candidate, Refusal, Request
from operators.decisions.caps import full_cap
from operators.decisions.cooldowns import cooling_until, start_cooldown
from operators.decisions.eligibility import ineligible_by
from operators.decisions.fatigue import fatigued_by
from operators.decisions.quiet_hours import quiet_until, release_offset
from operators.learning.choice import choose_arms, chosen
from operators.learning.evidence import CHANNEL, VARIANT, open_trial, score_closed, split_of
from operators.learning.timing import TIMING, likeliest_hour, local_hour
from operators.measurement.conversions import watch_for_conversions
from operators.measurement.holdouts import GLOBAL, holdout_of
from operators.model.fast_init import fast_init
from operators.model.records import Action, Conversion, Decision, Learned, Outcome, Scored
from operators.model.state import CustomerState, MomentKey, OpenMoment
from operators.model.timefmt import format_ms, zone
from operators.policy.compiled import ActionSpec, Capacity, Policy

Output = Decision | Action | Conversion | Scored
QUIET_HOURS = "quiet_hours"


@fast_init
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
    learned: Learned | None = None
    """What learning chose, when it is to be sent (policies with ``learning``)."""

    @property
    def score(self) -> float:
        return self.value * self.action.priority


@dataclass(frozen=True, slots=True)
class Asked:
    """A decision that waits for the capacity every customer shares (see
    :mod:`operators.decisions.capacity`): what it asked, and the moments it decides, as of
    the request's time, once the answer comes (:func:`decide` with ``answer``)."""

    request: Request
    keys: tuple[MomentKey, ...]
    later: int | None = None
    """The earliest time the answer may leave a timer at (a moment it outranks is decided
    again 1 ms later; one held back by quiet hours or a cap, when they end): None if
    none."""


def decide(
    policy: Policy,
    state: CustomerState,
    keys: list[MomentKey],
    now: int,
    answer: Answer | None = None,
) -> list[Output | Asked]:
    """Decide the moments at ``keys`` together, as of ``now``: one action is sent, and the
    moments it outranked are decided again after it, at the same instant, so the caps
    count it and say whether another may follow.

    With ``capacity`` in the policy, a winner whose send a pace or budget counts asks for
    capacity instead: the last output is then an :class:`Asked`, and nothing of these
    moments is decided until :func:`decide` is called again with the ``answer`` (the state
    unchanged meanwhile); see :func:`_answered`."""
    outputs: list[Output | Asked] = []
    if state.trials and answer is None:
        if policy.learning is None:  # learning was turned off: nothing scores them now
            state.trials = ()
        else:
            outputs.extend(score_closed(policy.learning, state, now))
    verdicts = _verdicts(policy, state, keys, now)
    winner = next((v for v in verdicts if v.outcome is Outcome.SENT), None)
    by_expected_value = False
    if winner is not None and policy.learning is not None and policy.learning.order:
        first, winner = winner, _by_expected_value(verdicts, winner)
        by_expected_value = winner is not first
    if winner is not None and policy.capacity is not None:
        asked = capacity_request(policy, state, verdicts, winner, now)
        if asked is not None:
            request, tried = asked
            if answer is None:
                outputs.append(Asked(request, tuple(dict.fromkeys(keys)), _later(verdicts, now)))
                return outputs
            outputs.extend(_answered(policy, state, verdicts, tried, answer, now))
            return outputs
    for verdict in verdicts:
        if verdict is winner:
            outputs.extend(_send(policy, state, verdict, now, "eligible", now))
        elif verdict.outcome is Outcome.SENT:
            assert winner is not None
            outranked = f"outranked by {winner.action.name}"
            if by_expected_value:
                outranked += " (learning: a higher expected value)"
            outputs.append(_decision(policy, state, verdict, now, Outcome.OUTRANKED, outranked))
        else:
            outputs.append(_held(policy, state, verdict, now))
    if winner is not None:
        del state.moments[winner.key]
        state.deferred.pop(winner.key, None)
        again = [v.key for v in verdicts if v.outcome is Outcome.SENT and v is not winner]
        if again:
            outputs.extend(decide(policy, state, again, now))
    return outputs


def _verdicts(
    policy: Policy, state: CustomerState, keys: list[MomentKey], now: int
) -> list[Verdict]:
    """What the guardrails say of every action of the moments at ``keys`` (each moment's
    deferral taken off: it is decided now), in arbitration's order: the highest score
    first."""
    verdicts: list[Verdict] = []
    for key in dict.fromkeys(keys):
        moment = state.moments.get(key)
        if moment is None:
            continue
        state.deferred.pop(key, None)
        value = value_now(moment, policy.moments[key.moment].half_life, now)
        for action in policy.actions_by_moment.get(key.moment, ()):
            verdicts.append(_judge(policy, state, action, key, moment, value, now))
    verdicts.sort(key=lambda v: (-v.score, v.action.name, v.key.moment, v.key.group or ""))
    return verdicts


def capacity_request(
    policy: Policy, state: CustomerState, verdicts: list[Verdict], winner: Verdict, now: int
) -> tuple[Request, list[tuple[Verdict, str]]] | None:
    """What a decision at ``now`` asks of the capacity every customer shares (see
    :mod:`operators.decisions.capacity`): ``winner`` on its channel, then on its other
    channels the guardrails let through, then each other action to be sent, in
    arbitration's order, likewise; with the verdict and channel each candidate stands for.
    None when the winner's send counts against no pace and no budget: it leaves at once,
    as without capacity."""
    capacity = policy.capacity
    if capacity is None:
        return None
    assert winner.channel is not None
    first = _candidate(policy, capacity, winner, winner.channel)
    if not first.paces and not first.budgets:
        return None
    tried = [(winner, winner.channel)]
    for verdict in [winner, *(v for v in verdicts if v is not winner)]:
        if verdict.outcome is not Outcome.SENT:
            continue
        assert verdict.channel is not None
        others = [c for c in verdict.action.channels if c != verdict.channel]
        channels = [verdict.channel] if verdict is not winner else []
        for channel in others:
            if policy.reachability and unreachable_because(policy, state, channel) is not None:
                continue
            held = _held_on(
                policy,
                state,
                verdict.action,
                verdict.key,
                verdict.moment,
                verdict.value,
                channel,
                now,
            )
            if held is None:
                channels.append(channel)
        tried.extend((verdict, c) for c in channels)
    key = winner.key
    request = Request(
        now,
        state.customer_id,
        f"{key.moment}|{key.group or ''}",
        winner.action.category,
        tuple(_candidate(policy, capacity, v, c) for v, c in tried),
    )
    return request, tried


def _later(verdicts: list[Verdict], now: int) -> int | None:
    """The earliest timer deciding ``verdicts`` may leave, whatever capacity answers (see
    :func:`_answered`)."""
    sent = sum(v.outcome is Outcome.SENT for v in verdicts)
    later = [now + 1] if sent > 1 else []
    later += [
        v.again_at
        for v in verdicts
        if v.outcome is not Outcome.SENT and v.again_at is not None and v.again_at > now
    ]
    return min(later, default=None)


def _answered(
    policy: Policy,
    state: CustomerState,
    verdicts: list[Verdict],
    tried: list[tuple[Verdict, str]],
    answer: Answer,
    now: int,
) -> list[Output]:
    """Decide the moments as the capacity owner's ``answer`` says: the candidate it granted
    is sent (leaving at its ``send_at``), each action refused on every channel it tried gets
    outcome ``paced_out`` or ``over_budget`` (the first refusal's), and the other actions
    to be sent are outranked by the one granted and decided again a millisecond later: one
    request per customer per instant."""
    outputs: list[Output] = []
    source: Verdict | None = None
    granted: Verdict | None = None
    send_at = now
    if answer.granted is not None:
        source, channel = tried[answer.granted]
        assert answer.send_at is not None
        send_at = answer.send_at
        # a paced send's decision says until when it is held back: when it may leave
        until = send_at if send_at > now else None
        granted = dataclasses.replace(source, channel=channel, until=until)
    refusals: dict[int, list[tuple[str, Refusal, str]]] = {}
    for refused in answer.refused:
        verdict, channel = tried[refused.candidate]
        refusals.setdefault(id(verdict), []).append((channel, refused.why, refused.rule))
    for verdict in verdicts:
        if verdict is source:
            assert granted is not None
            reason = "eligible"
            if send_at > now:
                reason += f"; paced: leaves at {format_ms(send_at)}"
            for refusal in refusals.get(id(verdict), ()):
                reason += "; " + _refusal_reason(*refusal)
            for fell in (v for v in verdicts if id(v) in refusals and v is not source):
                reasons = ", ".join(_refusal_reason(*r) for r in refusals[id(fell)])
                reason += f"; in place of {fell.action.name} ({reasons})"
            outputs.extend(_send(policy, state, granted, now, reason, send_at))
        elif id(verdict) in refusals:
            (channel, why, rule), *_ = found = refusals[id(verdict)]
            reason = "; ".join(_refusal_reason(*refusal) for refusal in found)
            held = dataclasses.replace(
                verdict, outcome=_OUTCOMES[why], channel=channel, rule=rule, until=None
            )
            outputs.append(_decision(policy, state, held, now, held.outcome, reason))
        elif verdict.outcome is Outcome.SENT:
            assert granted is not None
            outranked = f"outranked by {granted.action.name}"
            outputs.append(_decision(policy, state, verdict, now, Outcome.OUTRANKED, outranked))
            _defer(state, verdict.key, now + 1)
        else:
            outputs.append(_held(policy, state, verdict, now))
    if granted is not None:
        del state.moments[granted.key]
        state.deferred.pop(granted.key, None)
    return outputs


def _held(policy: Policy, state: CustomerState, verdict: Verdict, now: int) -> Decision:
    """The decision of a verdict not to be sent, deferring it when it says to decide again."""
    if verdict.again_at is not None and verdict.again_at > now:
        _defer(state, verdict.key, verdict.again_at)
    return _decision(policy, state, verdict, now, verdict.outcome, verdict.reason)


def _defer(state: CustomerState, key: MomentKey, at: int) -> None:
    """Decide the moment at ``key`` again at ``at``, or sooner if it already is."""
    state.deferred[key] = min(state.deferred.get(key, at), at)


_OUTCOMES = {Refusal.PACED_OUT: Outcome.PACED_OUT, Refusal.OVER_BUDGET: Outcome.OVER_BUDGET}


def _refusal_reason(channel: str, why: Refusal, rule: str) -> str:
    if why is Refusal.PACED_OUT:
        return f"paced out on {channel}: {rule} has no room before its value falls below min_value"
    return f"over budget on {channel}: {rule} is spent"


def _candidate(policy: Policy, capacity: Capacity, verdict: Verdict, channel: str) -> Candidate:
    action = verdict.action
    return Candidate(
        action.name,
        channel,
        verdict.value,
        action.min_value,
        policy.moments[verdict.key.moment].half_life,
        capacity.paces_of(action.name, channel),
        capacity.budgets_of(action.name, channel, action.category),
    )


def _by_expected_value(verdicts: list[Verdict], first: Verdict) -> Verdict:
    """Of the verdicts to be sent in the category arbitration would send (``first``'s), the
    one with the highest expected value: its score times the estimated reward of the arm
    it would go on (the first in arbitration's order on a tie). A customer in learning's
    control share keeps arbitration's choice."""
    if first.learned is None or first.learned.control:
        return first
    rivals = [
        v
        for v in verdicts
        if v.outcome is Outcome.SENT and v.action.category == first.action.category
    ]
    return max(rivals, key=lambda v: (_expected(v), -rivals.index(v)))


def _expected(verdict: Verdict) -> float:
    learned = verdict.learned
    return verdict.score * (learned.estimate if learned is not None else 1.0)


def _judge(
    policy: Policy,
    state: CustomerState,
    action: ActionSpec,
    key: MomentKey,
    moment: OpenMoment,
    value: float,
    now: int,
) -> Verdict:
    """What the guardrails say about ``action`` for the moment at ``key``, worth ``value``
    at ``now``: stale, cooling down, sent on the first channel they let it through, or
    held back (see :func:`_held_back`). Eligibility is asked first: who may get it at all;
    channels that cannot reach the customer are not tried (unreachable if none can)."""
    if policy.eligibility_by_action:
        ineligible = ineligible_by(policy, state, action)
        if ineligible is not None:
            rule, why = ineligible
            return Verdict(
                action, key, moment, value, Outcome.INELIGIBLE, f"ineligible: {why}", rule=rule.name
            )
    if value < action.min_value:
        reason = f"value {value:.2f} is below min_value {action.min_value:g}"
        return Verdict(action, key, moment, value, Outcome.STALE, reason)
    cooled = cooling_until(state, action, key.group, now)
    if cooled is not None:
        reason = f"cooldown until {format_ms(cooled)}"
        return Verdict(action, key, moment, value, Outcome.COOLDOWN, reason, until=cooled)
    channels = action.channels
    if policy.reachability:
        unreachable = [(c, unreachable_because(policy, state, c)) for c in channels]
        channels = tuple(c for c, because in unreachable if because is None)
        if not channels:
            reason = "unreachable: " + "; ".join(str(because) for _, because in unreachable)
            return Verdict(action, key, moment, value, Outcome.UNREACHABLE, reason)
    blocked: list[Verdict] = []
    passed: list[str] = []
    for channel in channels:
        held = _held_on(policy, state, action, key, moment, value, channel, now)
        if held is None:
            if policy.learning is None:
                return Verdict(action, key, moment, value, Outcome.SENT, "eligible", channel)
            passed.append(channel)
        else:
            blocked.append(held)
    if passed:
        return _learned(policy, state, action, key, moment, value, tuple(passed), now)
    return _held_back(policy, blocked, action, moment, key)


def _learned(
    policy: Policy,
    state: CustomerState,
    action: ActionSpec,
    key: MomentKey,
    moment: OpenMoment,
    value: float,
    passed: tuple[str, ...],
    now: int,
) -> Verdict:
    """To be sent on the channel learning chooses of those that ``passed``."""
    learning = policy.learning
    assert learning is not None
    decision = f"{state.customer_id}|{action.name}|{key.moment}|{key.group}|{moment.opening_event}"
    learned = choose_arms(learning, state, action, passed, decision, now, moment.signals[0])
    channel = chosen(learned, CHANNEL, passed[0])
    if learning.waits(action.category) and not learned.control:
        later = _likelier_hour(policy, state, action, key, moment, channel, now)
        if later is not None:
            at, reason = later
            return Verdict(
                action, key, moment, value, Outcome.DEFERRED, reason, channel, at, TIMING, at
            )
    return Verdict(action, key, moment, value, Outcome.SENT, "eligible", channel, learned=learned)


def _likelier_hour(
    policy: Policy,
    state: CustomerState,
    action: ActionSpec,
    key: MomentKey,
    moment: OpenMoment,
    channel: str,
    now: int,
) -> tuple[int, str] | None:
    """When ``action`` should wait for: the start of the customer's likelier local hour (see
    :mod:`operators.learning.timing`), with the reason; None to send now."""
    learning = policy.learning
    assert learning is not None
    tz = zone(timezone_of(policy, state))
    if tz is None:
        return None
    half_life = policy.moments[key.moment].half_life
    quiet = policy.quiet_hours
    later = likeliest_hour(
        learning,
        state,
        tz,
        now,
        moment.opened_at + learning.wait_up_to,
        lambda at: value_now(moment, half_life, at),
        action.min_value,
        lambda at: (
            quiet is not None
            and quiet.applies(channel, action.category)
            and quiet_until(quiet, at, tz, channel) is not None
        ),
    )
    if later is None:
        return None
    at, expected, current = later
    local = datetime.fromtimestamp(at / 1000, tz)
    reason = (
        f"learning: likelier hour {local:%H:%M} local until {format_ms(at)} "
        f"(expected value {expected:.2f} then against {current:.2f} now)"
    )
    return at, reason


def _held_on(
    policy: Policy,
    state: CustomerState,
    action: ActionSpec,
    key: MomentKey,
    moment: OpenMoment,
    value: float,
    channel: str,
    now: int,
) -> Verdict | None:
    """What holds ``action`` back on ``channel`` at ``now`` (a suppression, no consent, a
    full cap, quiet hours), or None if nothing does."""
    suppression = suppressed_by(policy, state, action, channel, key.group, now)
    if suppression is not None:
        name, until = suppression
        reason = f"suppressed by {name} until {format_ms(until)}"
        return Verdict(
            action, key, moment, value, Outcome.SUPPRESSED, reason, channel, None, name, until
        )
    if policy.fatigue:
        fatigue = fatigued_by(policy, state, action, channel, now)
        if fatigue is not None:
            rule, until = fatigue
            ignored = f"last {rule.ignored} sends" if rule.ignored > 1 else "last send"
            reason = f"suppressed by {rule.name} until {format_ms(until)}: {ignored} ignored"
            return Verdict(
                action,
                key,
                moment,
                value,
                Outcome.SUPPRESSED,
                reason,
                channel,
                None,
                rule.name,
                until,
            )
    if action.consent is not None and not has_consent(state, action.consent, channel):
        reason = f"no {action.consent} consent on {channel}"
        return Verdict(action, key, moment, value, Outcome.NO_CONSENT, reason, channel)
    full = full_cap(policy.caps, state.sends, action.name, channel, action.category, now)
    if full is not None:
        cap, frees = full
        return Verdict(
            action, key, moment, value, Outcome.CAPPED, cap.name, channel, frees, cap.name, frees
        )
    quiet = policy.quiet_hours
    if quiet is not None and quiet.applies(channel, action.category):
        tz = zone(timezone_of(policy, state))
        ends = quiet_until(quiet, now, tz, channel) if tz is not None else None
        if ends is not None:
            ends += release_offset(quiet, state.customer_id)
            return Verdict(
                action,
                key,
                moment,
                value,
                Outcome.DEFERRED,
                "quiet hours",
                channel,
                ends,
                QUIET_HOURS,
                ends,
            )
    return None


DROPPED_WHEN_CAPPED = "its value falls below min_value before a slot frees"
"""What the reason of a capped decision says when it will not be decided again (its
``until`` is when the cap frees a slot)."""


def _held_back(
    policy: Policy, blocked: list[Verdict], action: ActionSpec, moment: OpenMoment, key: MomentKey
) -> Verdict:
    """No channel passed: wait for the soonest channel that only has to wait (quiet hours,
    then a cap), if the moment will still be worth it then; else the first channel's reason."""
    half_life = policy.moments[key.moment].half_life
    for outcome in (Outcome.DEFERRED, Outcome.CAPPED):
        waiting = [v for v in blocked if v.outcome is outcome]
        if not waiting:
            continue
        soonest = min(waiting, key=lambda v: (v.again_at is None, v.again_at or 0))
        again = soonest.again_at
        worth_then = again is not None and (value_now(moment, half_life, again) >= action.min_value)
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
            f"capped by {cap}; {DROPPED_WHEN_CAPPED}",
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


def _send(
    policy: Policy, state: CustomerState, verdict: Verdict, now: int, reason: str, send_at: int
) -> list[Output]:
    """Send the winner, or hold it out: a held-out decision changes the customer's state
    exactly as a send does (the moment is consumed, the cooldown starts, caps count it),
    so both groups live the same journey; only the channel hears nothing. ``send_at``: when
    capacity lets it leave (its caps and cooldown count it as of ``now``)."""
    action, moment, (name, group) = verdict.action, verdict.moment, verdict.key
    assert verdict.channel is not None
    holdout = holdout_of(policy.holdouts, state.customer_id, action)
    if holdout is None:
        decision = _decision(policy, state, verdict, now, Outcome.SENT, reason)
    else:
        decision = _held_out(policy, state, verdict, now, holdout)
    the_id = decision.action_id
    assert the_id is not None
    start_cooldown(state, action, group, now)
    record_send(policy, state, the_id, action, verdict.channel, group, now, holdout is not None)
    watch_for_conversions(policy, state, decision)
    if holdout is not None:
        return [decision]
    template = chosen(verdict.learned, VARIANT, action.template)
    scored: list[Output] = []
    learning = policy.learning
    if learning is not None:
        control = verdict.learned is not None and verdict.learned.control
        hour = -1
        if learning.wait_up_to:
            tz = zone(timezone_of(policy, state))
            hour = local_hour(now, tz) if tz is not None else -1
        scored.extend(
            open_trial(
                learning,
                state,
                the_id,
                action.name,
                verdict.channel,
                template,
                now,
                control,
                hour,
                split_of(learning, state, moment.signals[0]),
            )
        )
    spec = policy.moments[name]
    return [
        *scored,
        decision,
        Action(
            action_id=the_id,
            customer_id=state.customer_id,
            action=action.name,
            channel=verdict.channel,
            category=action.category,
            priority=action.priority,
            template=template,
            moment=name,
            group=group,
            value=round(verdict.value, 4),
            signals=moment.signals,
            triggered_by=moment.triggered_by,
            decided_at=now,
            expires_at=falls_below_at(
                moment.value_at_open, moment.opened_at, spec.half_life, action.min_value
            ),
            policy_version=policy.version,
            send_at=send_at if send_at > now else None,
            recent_sends=recent_sends(state, now),
        ),
    ]


def _held_out(
    policy: Policy, state: CustomerState, verdict: Verdict, now: int, holdout: str
) -> Decision:
    """The decision of a winner a holdout keeps from the channel: all a sent one carries,
    with outcome ``held_out`` and the holdout as its rule."""
    if holdout == GLOBAL:
        rule, reason = "holdouts.global", "held out: in the global control group"
    else:
        rule, reason = f"holdouts.actions.{holdout}", f"held out of {holdout}"
    sent = _decision(policy, state, verdict, now, Outcome.SENT, reason)
    return dataclasses.replace(sent, outcome=Outcome.HELD_OUT, rule=rule)


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
        learning=verdict.learned if outcome is Outcome.SENT else None,
    )
