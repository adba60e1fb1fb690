"""The customer's time zone: the latest valid ``context.timezone`` they sent, else the
policy's default."""

from __future__ import annotations

from operators.model.records import Event
from operators.model.state import CustomerState, TimeZoneWord
from operators.model.timefmt import zone
from operators.policy.compiled import Policy


def record_timezone(state: CustomerState, event: Event) -> None:
    """Keep ``event``'s time zone if it names a real one and is the latest word."""
    name = event.context.get("timezone")
    if not isinstance(name, str) or zone(name) is None:
        return
    if state.timezone is None or event.time >= _said_at(state.timezone):
        state.timezone = (name, event.time)


def timezone_of(policy: Policy, state: CustomerState) -> str:
    """The customer's time zone, else the policy's default."""
    if state.timezone is None:
        return policy.default_timezone
    name, _ = state.timezone
    return name


def merge_timezones(survivor: CustomerState, retired: CustomerState) -> None:
    """The later word on the time zone wins (the survivor's, at the same instant)."""
    if retired.timezone is not None and (
        survivor.timezone is None or _said_at(retired.timezone) > _said_at(survivor.timezone)
    ):
        survivor.timezone = retired.timezone


def _said_at(word: TimeZoneWord) -> int:
    _, at = word
    return at
