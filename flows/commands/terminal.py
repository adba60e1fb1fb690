"""What the commands print, made safe to read in a terminal.

Events, properties, identifiers and policy names are text from outside, and what the
commands print quotes them: an escape sequence among them would reach the terminal (a
clipboard write, a cleared screen, a title), and bidirectional controls would reorder what
is shown. Every character that is not printable text (C0 and C1 controls but newline and
tab, DEL, and Unicode's bidirectional and zero-width format characters) is printed as an
escape instead (``\\x1b``, ``\\u009b``, ``\\u202e``). JSON output stays JSON: its strings
escape C0 controls already, and DEL, C1 and format characters, which JSON leaves raw, are
written as ``\\u`` escapes, which mean the same in JSON.
"""

from __future__ import annotations

import re
import sys
from typing import Any, TextIO

_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


def escape(text: str) -> str:
    """``text`` with every character a terminal would act on written as an escape."""
    return _UNSAFE.sub(_escaped, text)


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x7F else f"\\u{code:04x}"


class SafeText:
    """A text stream that writes what it is given through :func:`escape`."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(escape(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_output() -> None:
    """Make this process's standard output and error :class:`SafeText`."""
    if not isinstance(sys.stdout, SafeText):
        sys.stdout = SafeText(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, SafeText):
        sys.stderr = SafeText(sys.stderr)  # type: ignore[assignment]


def stderr_is_a_terminal() -> bool:
    """Whether a person is likely watching stderr: progress lines are for them alone."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def counted(count: int, noun: str) -> str:
    """``1 record``, ``20,000 records``."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")
