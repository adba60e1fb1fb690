"""The customer's time zone: the latest valid ``context.timezone`` they sent, else the
policy's default."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from operators.model import Event
from operators.policy import Policy
from operators.state import CustomerState, TimeZoneWord


@lru_cache(maxsize=4096)
def zone(name: str) -> ZoneInfo | None:
    """The time zone called ``name``, or None if there is no such zone (``Europe``, a
    directory of zones, is none either)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def record_timezone(state: CustomerState, event: Event) -> None:
    """Keep ``event``'s time zone if it names a real one and is the latest word."""
    name = event.context.get("timezone")
    if not isinstance(name, str) or zone(name) is None:
        return
    if state.timezone is None or event.time >= state.timezone.at:
        state.timezone = TimeZoneWord(name, event.time)


def timezone_of(policy: Policy, state: CustomerState) -> str:
    """The customer's time zone, else the policy's default."""
    return state.timezone.name if state.timezone is not None else policy.default_timezone


def merge_timezones(survivor: CustomerState, retired: CustomerState) -> None:
    """The later word on the time zone wins (the survivor's, at the same instant)."""
    if retired.timezone is not None and (
        survivor.timezone is None or retired.timezone.at > survivor.timezone.at
    ):
        survivor.timezone = retired.timezone
