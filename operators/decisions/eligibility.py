"""Eligibility: who may get an action at all, by what events stated of them (their
attributes: :mod:`operators.context.attributes`). Checked before anything else is asked of an
action: an ineligible customer's moment stays open, so it acts once they become eligible."""

from __future__ import annotations

from operators.context.attributes import attribute_of
from operators.model.state import CustomerState
from operators.policy.compiled import ActionSpec, EligibilityRule, Policy


def ineligible_by(
    policy: Policy, state: CustomerState, action: ActionSpec
) -> tuple[EligibilityRule, str] | None:
    """The first eligibility rule ``action`` fails for this customer, with why, or None."""
    for rule in policy.eligibility_by_action.get(action.name, ()):
        why = _fails(rule, state)
        if why is not None:
            return rule, why
    return None


def _fails(rule: EligibilityRule, state: CustomerState) -> str | None:
    for name, allowed in rule.require.items():
        value = attribute_of(state, name)
        if value is None:
            return f"{name} unknown; {rule.name} requires one of {_listing(allowed)}"
        if value not in allowed:
            return f"{name} {value} is not one of {_listing(allowed)} ({rule.name})"
    for name, excluded in rule.exclude.items():
        value = attribute_of(state, name)
        if value is not None and value in excluded:
            return f"{name} {value} is excluded by {rule.name}"
    return None


def _listing(values: frozenset[str]) -> str:
    return ", ".join(sorted(values))
