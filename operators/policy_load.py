"""Read a policy: YAML 1.2 text -> schema validation -> cross-reference checks -> :class:`Policy`.

Every problem is reported, each with the path of the field and the line it is on.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

import schemas
from operators.policy import Policy, compile_policy

PathItem = str | int


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One bad field: where it is and what is wrong with it."""

    path: tuple[PathItem, ...]
    line: int | None
    message: str

    def __str__(self) -> str:
        where = ".".join(str(part) for part in self.path) or "(policy)"
        if self.line is not None:
            where = f"{where} (line {self.line})"
        return f"{where}: {self.message}"


class PolicyError(ValueError):
    """A policy that cannot be used; ``problems`` lists every bad field."""

    def __init__(self, source: str, problems: Sequence[PolicyProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"{source}: invalid policy, {len(self.problems)} problem(s):\n{lines}")


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = schemas.load("policy")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def load_policy(text: str, source: str = "policy") -> Policy:
    """Parse, validate and compile policy ``text`` (YAML 1.2); raise :class:`PolicyError`."""
    yaml = YAML(typ="rt")
    yaml.version = (1, 2)
    try:
        tree = yaml.load(io.StringIO(text))
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        message = " ".join(str(part) for part in (err.context, err.problem) if part)
        raise PolicyError(source, [PolicyProblem((), line, f"not valid YAML: {message}")]) from None
    except Exception as err:  # ruamel raises several non-marked errors, e.g. on duplicate keys
        raise PolicyError(source, [PolicyProblem((), None, f"not valid YAML: {err}")]) from None
    document = _plain(tree)
    if not isinstance(document, dict):
        raise PolicyError(source, [PolicyProblem((), 1, "a policy is a mapping of sections")])

    problems = [
        PolicyProblem(path, _line_of(tree, path), message)
        for path, message in _schema_problems(document)
    ]
    problems += [
        PolicyProblem(path, _line_of(tree, path), message)
        for path, message in _safe_reference_problems(document)
    ]
    if problems:
        problems.sort(key=lambda p: (p.line if p.line is not None else 0, str(p.path)))
        raise PolicyError(source, problems)

    version = document.get("version") or "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]
    return compile_policy(document, version)


def _plain(node: Any) -> Any:
    """Turn ruamel's round-trip nodes into plain dicts, lists and scalars."""
    if isinstance(node, Mapping):
        return {str(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _line_of(tree: Any, path: Sequence[PathItem]) -> int | None:
    """The 1-based line of the deepest node of ``path`` found in the YAML tree."""
    line: int | None = None
    node = tree
    for part in path:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    if line is None and isinstance(tree, CommentedMap):
        line = 1
    return line


def _schema_problems(document: Any) -> Iterator[tuple[tuple[PathItem, ...], str]]:
    for error in _validator().iter_errors(document):
        yield from _explain(error)


def _explain(error: jsonschema.ValidationError) -> Iterator[tuple[tuple[PathItem, ...], str]]:
    """Report a ``oneOf``/``anyOf`` failure by the alternative that came closest."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        branches: dict[PathItem, list[jsonschema.ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.schema_path[0], []).append(sub)
        closest = min(branches.values(), key=lambda errs: (_shallowness(errs), len(errs)))
        if len(closest) and all(sub.validator != "type" or sub.path for sub in closest):
            for sub in closest:
                yield from _explain(sub)
            return
    message = error.message
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    if error.validator == "pattern" and description:
        message = f"{error.instance!r} is not {description}"
    yield tuple(error.absolute_path), message


def _shallowness(errors: list[jsonschema.ValidationError]) -> int:
    """Errors at the node itself (wrong type) say the branch was a poor guess."""
    return sum(1 for e in errors if not e.path and e.validator == "type")


def _safe_reference_problems(
    document: dict[str, Any],
) -> list[tuple[tuple[PathItem, ...], str]]:
    """Cross-reference problems, as far as a document that failed its schema lets us look."""
    found: list[tuple[tuple[PathItem, ...], str]] = []
    try:
        for problem in _reference_problems(document):
            found.append(problem)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError):
        pass
    return found


def _reference_problems(document: dict[str, Any]) -> Iterator[tuple[tuple[PathItem, ...], str]]:
    """Names that must point at something the policy defines, and values that must make sense."""
    channels = set(document["channels"])
    categories = set(document["categories"])
    signals = set(document["signals"])
    moments = set(document["moments"])
    actions = set(document["actions"])

    timezone = document.get("defaults", {}).get("timezone")
    if timezone is not None and not _is_timezone(timezone):
        yield ("defaults", "timezone"), f"unknown time zone {timezone!r}"

    for name, spec in document["signals"].items():
        for key in ("within", "after"):
            if key in spec and _is_zero(spec[key]):
                yield ("signals", name, key), "must be longer than 0"
        if "group_by" in spec and not spec["group_by"].startswith(("properties.", "context.")):
            yield ("signals", name, "group_by"), "must start with properties. or context."
        if "text_field" in spec and not spec["text_field"].startswith(("properties.", "context.")):
            yield ("signals", name, "text_field"), "must start with properties. or context."

    for name, spec in document["moments"].items():
        sources = [spec["from"]] if isinstance(spec["from"], str) else spec["from"]
        for index, source in enumerate(sources):
            if source not in signals:
                path: tuple[PathItem, ...] = ("moments", name, "from")
                if not isinstance(spec["from"], str):
                    path += (index,)
                yield path, f"names no signal: {source!r} (signals: {_listing(signals)})"
        if _is_zero(spec["half_life"]):
            yield ("moments", name, "half_life"), "must be longer than 0"

    for name, spec in document["actions"].items():
        if spec["moment"] not in moments:
            yield (
                ("actions", name, "moment"),
                f"names no moment: {spec['moment']!r} (moments: {_listing(moments)})",
            )
        for index, channel in enumerate(spec["channels"]):
            if channel not in channels:
                yield (
                    ("actions", name, "channels", index),
                    f"names no channel: {channel!r} (channels: {_listing(channels)})",
                )
        if spec["category"] not in categories:
            yield (
                ("actions", name, "category"),
                f"names no category: {spec['category']!r} (categories: {_listing(categories)})",
            )

    quiet = document.get("quiet_hours", {})
    for index, channel in enumerate(quiet.get("except_channels", [])):
        if channel not in channels:
            yield ("quiet_hours", "except_channels", index), f"names no channel: {channel!r}"
    for index, category in enumerate(quiet.get("except_categories", [])):
        if category not in categories:
            yield ("quiet_hours", "except_categories", index), f"names no category: {category!r}"

    for index, cap in enumerate(document.get("caps", [])):
        match = cap.get("match", {})
        for key, known in (("channel", channels), ("category", categories), ("action", actions)):
            if key in match and match[key] not in known:
                yield ("caps", index, "match", key), f"names no {key}: {match[key]!r}"
        if _is_zero(cap["window"]):
            yield ("caps", index, "window"), "must be longer than 0"

    for index, rule in enumerate(document.get("suppressions", [])):
        if "signal" in rule["when"] and rule["when"]["signal"] not in signals:
            yield (
                ("suppressions", index, "when", "signal"),
                (f"names no signal: {rule['when']['signal']!r}"),
            )
        suppress = rule.get("suppress", {})
        for key, known in (("channel", channels), ("category", categories), ("action", actions)):
            values = suppress.get(key, [])
            for value in [values] if isinstance(values, str) else values:
                if value not in known:
                    yield ("suppressions", index, "suppress", key), f"names no {key}: {value!r}"
        same = suppress.get("same")
        if same is not None and not same.startswith(("properties.", "context.")):
            yield (
                ("suppressions", index, "suppress", "same"),
                ("must start with properties. or context."),
            )

    identity = document.get("identity", {})
    for kind, patterns in identity.get("blocked", {}).items():
        for index, pattern in enumerate(patterns):
            if not pattern.strip():
                yield ("identity", "blocked", kind, index), "an empty pattern blocks nothing"


def _is_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _is_zero(duration: str) -> bool:
    digits = duration[:-1]
    return digits.isdigit() and int(digits) == 0


def _listing(names: set[str]) -> str:
    return ", ".join(sorted(names))
