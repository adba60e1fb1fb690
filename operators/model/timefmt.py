"""Event time: RFC 3339 text in, integer milliseconds since the epoch inside, UTC ``Z`` out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MS_PER_S = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

EARLIEST = 0
"""1970-01-01T00:00:00Z: event times before it are not accepted."""
LATEST = (datetime(9000, 1, 1, tzinfo=UTC) - _EPOCH) // _MS
"""9000-01-01T00:00:00Z: event times from it on are not accepted, which leaves every
duration a policy allows room to be added without leaving the calendar."""


LEAP_SECOND_DAYS = frozenset(
    {
        "1972-06-30", "1972-12-31", "1973-12-31", "1974-12-31", "1975-12-31", "1976-12-31",
        "1977-12-31", "1978-12-31", "1979-12-31", "1981-06-30", "1982-06-30", "1983-06-30",
        "1985-06-30", "1987-12-31", "1989-12-31", "1990-12-31", "1992-06-30", "1993-06-30",
        "1994-06-30", "1995-12-31", "1997-06-30", "1998-12-31", "2005-12-31", "2008-12-31",
        "2012-06-30", "2015-06-30", "2016-12-31",
    }
)  # fmt: skip
"""The UTC days that ended with a leap second (23:59:60), as the IERS announced them; none
has been announced since, and from 2035 there will be none."""


class InvalidTimestamp(ValueError):
    """A timestamp that matches no real instant (e.g. 2026-02-30) or lies outside
    1970-9000."""


def parse_ms(text: str) -> int:
    """Return the instant ``text`` names, in ms since the epoch.

    ``text`` has already matched the schema's RFC 3339 pattern; this accepts its
    lower-case ``t``/``z`` and the leap seconds there were (``2016-12-31T23:59:60Z`` is
    the next second) and rejects what the pattern cannot (impossible dates, a second 60
    anywhere else).
    """
    text = text.upper()
    leap = text[17:19] == "60"
    if leap:
        text = text[:17] + "59" + text[19:]
    if len(text) > 26 and text[19] == ".":
        text = _trim_fraction(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as err:
        raise InvalidTimestamp(str(err)) from None
    if moment.tzinfo is None:
        raise InvalidTimestamp("timestamp has no offset")
    try:
        ms = (moment - _EPOCH) // _MS
    except OverflowError:
        raise InvalidTimestamp("timestamp is outside 1970-9000") from None
    if leap:
        utc = moment.astimezone(UTC)
        if (utc.hour, utc.minute) != (23, 59) or utc.date().isoformat() not in LEAP_SECOND_DAYS:
            raise InvalidTimestamp("second 60 of a minute that had no leap second")
        ms += MS_PER_S
    if not EARLIEST <= ms < LATEST:
        raise InvalidTimestamp("timestamp is outside 1970-9000")
    return ms


def _trim_fraction(text: str) -> str:
    """Keep at most microseconds: ``fromisoformat`` refuses nanoseconds."""
    end = 20
    while end < len(text) and text[end].isdigit():
        end += 1
    return text[: min(end, 26)] + text[end:]


def format_ms(ms: int) -> str:
    """Return ``ms`` as RFC 3339 UTC with a ``Z``; milliseconds only when not zero.

    Instants past the calendar's end are written as its last millisecond.
    """
    seconds, millis = divmod(min(ms, _LAST_MS), MS_PER_S)
    # isoformat, unlike strftime, is C all the way: half the time, on every decision.
    text = (_NAIVE_EPOCH + timedelta(0, seconds)).isoformat()
    if millis:
        return f"{text}.{millis:03d}Z"
    return f"{text}Z"


_NAIVE_EPOCH = datetime(1970, 1, 1)
_LAST_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - _EPOCH) // _MS


@lru_cache(maxsize=4096)
def zone(name: str) -> ZoneInfo | None:
    """The time zone called ``name``, or None if there is no such zone (``Europe``, a
    directory of zones, is none either)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
