"""Merging: what two customers' contexts become when their profiles turn out to be one
person.

The retired profile's context is folded into the survivor's as if one customer had
done both; each part of the context has its own rule, in the module that owns it.
How the context gets there is :mod:`operators.model.handover`'s business.
"""

from __future__ import annotations

from operators.context.absences import merge_absences
from operators.context.attributes import merge_attributes
from operators.context.consent import merge_consent
from operators.context.moments import merge_moments
from operators.context.reachability import merge_reachability
from operators.context.sends import merge_sends
from operators.context.suppression import merge_suppressions
from operators.context.timezones import merge_timezones
from operators.context.windows import merge_windows
from operators.decisions.cooldowns import merge_cooldowns
from operators.learning.evidence import merge_learning
from operators.measurement.conversions import merge_watches
from operators.model.state import CustomerState
from operators.policy.compiled import Policy


def merge_states(policy: Policy, survivor: CustomerState, retired: CustomerState) -> None:
    """Fold ``retired`` into ``survivor``.

    Windows merge in time order (each event once); the more valuable open moment
    of a kind and group stays; cooldowns and suppressions keep the later end;
    consent keeps the most restrictive word where both said something; sends
    count once each against the caps, and decisions wait for conversions once each;
    pending absences keep the latest start and deferred decisions the earliest, so one
    person's activity on either profile counts; learning's trials wait once each and its
    evidence adds up.
    """
    merge_windows(policy, survivor, retired)
    merge_absences(survivor, retired)
    merge_moments(policy, survivor, retired)
    merge_cooldowns(survivor, retired)
    merge_suppressions(survivor, retired)
    merge_consent(policy, survivor, retired)
    merge_sends(survivor, retired)
    merge_watches(survivor, retired)
    _merge_deferrals(survivor, retired)
    merge_timezones(survivor, retired)
    merge_attributes(survivor, retired)
    merge_reachability(survivor, retired)
    merge_learning(policy.learning, survivor, retired)
    if retired.last_event_at is not None:
        survivor.last_event_at = max(survivor.last_event_at or 0, retired.last_event_at)
    survivor.seq = max(survivor.seq, retired.seq)


def _merge_deferrals(survivor: CustomerState, retired: CustomerState) -> None:
    """A decision deferred on either profile is taken again at the earlier time."""
    for key, due in retired.deferred.items():
        survivor.deferred[key] = min(due, survivor.deferred.get(key, due))
