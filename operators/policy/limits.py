"""Limits on a policy's size and shape, checked before the expensive work.

A policy is a few kilobytes of YAML. These bounds refuse, each in a fraction
of a second, the files that would otherwise take minutes or all the memory to
read: a huge file, nesting thousands of levels deep (the YAML reader slows
down with the square of the depth), aliases that expand exponentially (a
"billion laughs"), and lists of hundreds of thousands of entries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ruamel.yaml.scanner import RoundTripScanner

MAX_POLICY_BYTES = 256 * 1024
"""The largest policy file read (the reference policy is under 5 KB)."""
MAX_WORDS = 5_000
"""Keys and values written in the file, comments aside (the reference policy has ~340)."""
MAX_DEPTH = 32
"""The deepest nesting of mappings and lists (the reference policy nests 4 deep)."""
MAX_VALUES = 20_000
"""Values in the whole policy once its aliases are expanded (the reference policy has ~300)."""
MAX_ITEMS = 1_000
"""Entries in one list or mapping: phrases of a text signal, channels, actions, ..."""


class PolicyTooLarge(Exception):
    """A policy over one of the limits: ``path`` and ``line`` say where, when known."""

    def __init__(
        self, message: str, line: int | None = None, path: tuple[str | int, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.path = path


class BoundedScanner(RoundTripScanner):
    """ruamel's scanner, refusing to nest deeper than :data:`MAX_DEPTH` as it reads."""

    def fetch_flow_collection_start(self, TokenClass: Any, to_push: str) -> None:
        if len(self.flow_context) + len(self.indents) >= MAX_DEPTH:
            raise _too_deep(self.reader.get_mark().line + 1)
        super().fetch_flow_collection_start(TokenClass, to_push)

    def add_indent(self, column: int) -> bool:
        if self.indent < column and len(self.flow_context) + len(self.indents) >= MAX_DEPTH:
            raise _too_deep(self.reader.get_mark().line + 1)
        added: bool = super().add_indent(column)
        return added


def _too_deep(line: int | None = None, path: tuple[str | int, ...] = ()) -> PolicyTooLarge:
    return PolicyTooLarge(f"nested more than {MAX_DEPTH} levels deep", line, path)


_COMMENT = re.compile(r"(^|[ \t])#.*$", re.MULTILINE)
_WORD = re.compile(r"(?![-?:](?:\s|$))[^\s,\[\]{}]+")


def check_text(text: str) -> None:
    """Refuse, before parsing, a policy over :data:`MAX_POLICY_BYTES` or :data:`MAX_WORDS`
    (the YAML reader takes about a tenth of a millisecond per word)."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_POLICY_BYTES:
        raise PolicyTooLarge(
            f"the policy is {size:,} bytes; a policy is at most {MAX_POLICY_BYTES:,} bytes"
        )
    words = len(_WORD.findall(_COMMENT.sub(r"\1", text)))
    if words > MAX_WORDS:
        raise PolicyTooLarge(
            f"the policy has {words:,} keys and values; a policy has at most {MAX_WORDS:,}"
        )


def plain(tree: Any) -> Any:
    """ruamel's round-trip nodes as plain dicts, lists and scalars, aliases expanded, within
    :data:`MAX_DEPTH`, :data:`MAX_ITEMS` per collection and :data:`MAX_VALUES` in all."""
    budget = [MAX_VALUES]

    def convert(node: Any, path: tuple[str | int, ...]) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise PolicyTooLarge(
                f"the policy holds more than {MAX_VALUES:,} values once its YAML aliases "
                "are expanded",
                path=path[:1],
            )
        if isinstance(node, Mapping | list):
            if len(path) >= MAX_DEPTH:
                raise _too_deep(path=path)
            if len(node) > MAX_ITEMS:
                raise PolicyTooLarge(f"has {len(node):,} entries; at most {MAX_ITEMS:,}", path=path)
            if isinstance(node, Mapping):
                return {str(k): convert(v, (*path, str(k))) for k, v in node.items()}
            return [convert(item, (*path, n)) for n, item in enumerate(node)]
        if isinstance(node, bool) or node is None:
            return node
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        if isinstance(node, str):
            return str(node)
        return node

    return convert(tree, ())
