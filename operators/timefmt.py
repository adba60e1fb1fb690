"""Event time: RFC 3339 text in, integer milliseconds since the epoch inside, UTC ``Z`` out."""

from __future__ import annotations

from datetime import UTC, datetime

MS_PER_S = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidTimestamp(ValueError):
    """A timestamp that matches no real instant (e.g. 2026-02-30)."""


def parse_ms(text: str) -> int:
    """Return the instant ``text`` names, in ms since the epoch.

    ``text`` has already matched the schema's RFC 3339 pattern; this rejects
    what the pattern cannot (impossible dates, out-of-range offsets).
    """
    if len(text) > 26 and text[19] == ".":
        text = _trim_fraction(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as err:
        raise InvalidTimestamp(str(err)) from None
    if moment.tzinfo is None:
        raise InvalidTimestamp("timestamp has no offset")
    return (moment - _EPOCH) // _MS


def _trim_fraction(text: str) -> str:
    """Keep at most microseconds: ``fromisoformat`` refuses nanoseconds."""
    end = 20
    while end < len(text) and text[end].isdigit():
        end += 1
    return text[: min(end, 26)] + text[end:]


_MS = datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC) - _EPOCH


def format_ms(ms: int) -> str:
    """Return ``ms`` as RFC 3339 UTC with a ``Z``; milliseconds only when not zero."""
    seconds, millis = divmod(ms, MS_PER_S)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if millis:
        return f"{text}.{millis:03d}Z"
    return f"{text}Z"
