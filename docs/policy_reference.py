"""Write the reference part of ``docs/policy.md`` from the policy's schema and its example.

Every section and field of ``schemas/policy.schema.json``, with its type, whether it is
required and its description, and beside each section the lines of
``examples/policy-full.yaml`` that set it, comments included. The page's text above the
marker is written by hand; everything below it comes from here, so the reference cannot
say other than the schema and the example do. ``make docs`` runs it; ``--check`` (run by
``make test``, as is ``tests/docs/test_docs.py``) fails when the page is not what it writes.

    python docs/policy_reference.py [--check]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "schemas" / "policy.schema.json"
EXAMPLE = ROOT / "examples" / "policy-full.yaml"
PAGE = ROOT / "docs" / "policy.md"
MARKER = (
    "<!-- Below this line the page is written by docs/policy_reference.py from "
    "schemas/policy.schema.json and examples/policy-full.yaml: change those, then run "
    "`make docs`. -->"
)
DURATION = "^[0-9]+[smhd]$"
TIME_OF_DAY = "^([01][0-9]|2[0-3]):[0-5][0-9]$"
NAMES = {
    "categories": "<category>",
    "quiet_hours.channels": "<channel>",
    "signals": "<signal>",
    "moments": "<moment>",
    "actions": "<action>",
    "identity.limits": "<type>",
    "identity.blocked": "<type>",
    "holdouts.actions": "<action>",
    "conversions": "<event type>",
    "attributes": "<attribute>",
    "eligibility.require": "<attribute>",
    "eligibility.exclude": "<attribute>",
    "reachability": "<channel>",
}
"""What a mapping's keys are called in the tables (by the mapping's path, lists left out)."""

Schema = dict[str, Any]


def render(schema: Schema, example: str) -> str:
    """The reference: one section per top-level key of ``schema``, in its order."""
    required = set(schema.get("required", ()))
    blocks = _example_blocks(example)
    parts = [
        MARKER,
        "",
        "## Every section and field",
        "",
        f"A policy has {len(schema['properties'])} sections; "
        + ", ".join(f"`{name}`" for name in sorted(required))
        + " are required, the others optional. In the tables a name in angle brackets "
        "stands for a key the policy chooses (`<action>`: each action's name), and `[]` for "
        "each entry of a list.",
    ]
    for name, node in schema["properties"].items():
        parts += ["", f"### `{name}`", ""]
        parts.append(
            f"{'Required' if name in required else 'Optional'} ({_type(node)}). "
            f"{_sentence(node.get('description', ''))}"
        )
        parts += _rules(node)
        rows = _rows(node, name, name)
        for title, kind_rows in _kinds(node, name):
            parts += ["", title, ""]
            parts += _table(kind_rows)
        if rows:
            parts += [""]
            parts += _table(rows)
        parts += [""]
        if name in blocks:
            parts += [f"In `{EXAMPLE.relative_to(ROOT)}`:", "", "```yaml", blocks[name], "```"]
        else:
            parts.append(f"`{EXAMPLE.relative_to(ROOT)}` leaves it out.")
    return "\n".join(parts) + "\n"


def _rows(node: Schema, path: str, shown: str) -> list[tuple[str, str, str]]:
    """(field, type, meaning) for every field under ``node``, depth first."""
    rows: list[tuple[str, str, str]] = []
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        return _rows(node["items"], path, f"{shown}[]")
    required = set(node.get("required", ()))
    for key, child in node.get("properties", {}).items():
        field = f"{shown}.{key}"
        kind = _type(child) + (", required" if key in required else "")
        rows.append((field, kind, child.get("description", "")))
        rows += _rows(child, f"{path}.{key}", field)
    named = node.get("additionalProperties")
    if isinstance(named, dict) and "oneOf" not in named:
        field = f"{shown}.{NAMES.get(path, '<name>')}"
        rows.append((field, _type(named), named.get("description", "")))
        rows += _rows(named, path, field)
    return rows


def _kinds(node: Schema, path: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """A mapping whose entries take one of several shapes (signals): a table per shape."""
    named = node.get("additionalProperties")
    if not isinstance(named, dict) or "oneOf" not in named:
        return []
    shown = f"{path}.{NAMES.get(path, '<name>')}"
    kinds = []
    for kind in named["oneOf"]:
        needs = ", ".join(f"`{k}`" for k in kind.get("required", ()))
        article = "An" if kind["title"][0] in "aeiou" else "A"
        title = f"**{article} {kind['title']}** ({needs}). {_sentence(kind.get('description', ''))}"
        kinds.append((title, _rows(kind, path, shown)))
    return kinds


def _rules(node: Schema) -> list[str]:
    """What the schema requires beyond each field on its own (one of two sets of fields)."""
    entry = node.get("items", node)
    choices = [alt["required"] for alt in entry.get("anyOf", ()) if "required" in alt]
    if not choices:
        return []
    either = " or ".join(" and ".join(f"`{k}`" for k in choice) for choice in choices)
    return ["", f"Each entry needs {either}."]


def _type(node: Schema) -> str:
    """A field's type in words."""
    if "enum" in node:
        return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    if "oneOf" in node and all("type" in alt for alt in node["oneOf"]):
        return " or ".join(_type(alt) for alt in node["oneOf"])
    kind = node.get("type")
    if isinstance(kind, list):
        return ", ".join(_WORDS[k] for k in kind[:-1]) + " or " + _WORDS[kind[-1]]
    if kind == "array":
        items = node.get("items", {})
        return f"list of {_plural(_type(items))}" if items else "list"
    if kind == "object":
        return "mapping"
    if kind == "string":
        pattern = node.get("pattern")
        if pattern == DURATION:
            return "duration"
        if pattern == TIME_OF_DAY:
            return "time of day"
        if pattern == "^[A-Z]{2}$":
            return "region code"
        return "text"
    if kind in ("integer", "number"):
        return _number(node, _WORDS[kind])
    return _WORDS.get(str(kind), str(kind))


_WORDS = {"string": "text", "integer": "integer", "number": "number", "boolean": "boolean"}


def _number(node: Schema, word: str) -> str:
    low, high = node.get("minimum"), node.get("maximum")
    above, below = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
    if low is not None and below is not None:
        return f"{word} in [{low}, {below})"
    if low is not None and high is not None:
        return f"{word}, {low:,} to {high:,}"
    if low is not None:
        return f"{word}, {low} or more"
    if above is not None:
        return f"{word} over {above}"
    return word


def _plural(kind: str) -> str:
    if kind.startswith("one of "):
        return "values, each " + kind
    if kind in ("text", "duration", "time of day"):
        return kind if kind == "text" else kind + "s"
    return kind + "s" if " " not in kind else kind


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _table(rows: list[tuple[str, str, str]]) -> list[str]:
    lines = ["| field | type | meaning |", "| --- | --- | --- |"]
    for field, kind, meaning in rows:
        lines.append(f"| `{field}` | {kind} | {_cell(_sentence(meaning))} |")
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


TOP_LEVEL = re.compile(r"^([A-Za-z_]+):")


def _example_blocks(text: str) -> dict[str, str]:
    """Each top-level key's lines in the example: from the key to the next blank line or
    key, so the comments written right under a section stay with it."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        key = TOP_LEVEL.match(line)
        if key:
            current = blocks.setdefault(key.group(1), [])
        elif not line.strip():
            current = None
        if current is not None:
            current.append(line)
    return {key: "\n".join(lines) for key, lines in blocks.items()}


def page(current: str) -> str:
    """``current`` with everything from the marker on written afresh."""
    head, found, _ = current.partition(MARKER)
    if not found:
        raise SystemExit(f"{PAGE}: no marker line; put it where the reference starts")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return head + render(schema, EXAMPLE.read_text(encoding="utf-8"))


def main(argv: list[str]) -> int:
    current = PAGE.read_text(encoding="utf-8")
    wanted = page(current)
    if "--check" in argv:
        if wanted != current:
            print(
                f"{PAGE.relative_to(ROOT)} is not what docs/policy_reference.py writes from "
                "the schema and the example: run `make docs` and commit it",
                file=sys.stderr,
            )
            return 1
        return 0
    if wanted != current:
        PAGE.write_text(wanted, encoding="utf-8")
        print(f"wrote {PAGE.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
