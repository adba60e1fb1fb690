"""Phrase matching for text signals: whole words, case- and accent-insensitive.

The text is folded once (accents stripped, case folded) and searched with one
compiled pattern per signal. A match only says *that* a phrase occurred:
nothing of the text itself is kept or copied anywhere.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_WORD = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """``text`` without accents and case: ``"Hôpital"`` -> ``"hopital"``."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.casefold()


def phrase_words(phrase: str) -> tuple[str, ...]:
    """The folded words of a phrase (empty if it has none)."""
    return tuple(_WORD.findall(fold(phrase)))


class PhraseMatcher:
    """Finds whether a text names any of ``phrases``.

    A phrase matches as whole words in order, separated in the text by any
    run of spaces or punctuation: ``passed away`` matches "Passed-away" and
    "passed  away" but not "passed awayness"; ``death`` does not match "deathly".
    """

    __slots__ = ("_pattern",)

    def __init__(self, phrases: Iterable[str]) -> None:
        alternatives = sorted(
            {
                r"[\W_]+".join(map(re.escape, words))
                for words in map(phrase_words, phrases)
                if words
            },
            key=lambda p: (-len(p), p),
        )
        self._pattern = (
            re.compile(r"(?<![^\W_])(?:" + "|".join(alternatives) + r")(?![^\W_])")
            if alternatives
            else None
        )

    def matches(self, text: str) -> bool:
        """True when ``text`` names one of the phrases."""
        if self._pattern is None:
            return False
        if text.isascii():
            return self._pattern.search(text.lower()) is not None
        return self._pattern.search(fold(text)) is not None
