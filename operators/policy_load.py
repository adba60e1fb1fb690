"""Read a policy: YAML 1.2 text -> schema validation -> cross-reference checks -> :class:`Policy`.

Every problem is reported, each with the path of the field and the line it is on.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

import schemas
from operators.durations import parse_duration_ms
from operators.policy import Policy, compile_policy
from operators.policy_limits import BoundedScanner, PolicyTooLarge, check_text, plain
from operators.text import phrase_words
from operators.timezones import zone

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
    """Parse, validate and compile policy ``text`` (YAML 1.2); raise :class:`PolicyError`.

    The limits of :mod:`operators.policy_limits` are checked first, so a hostile file is
    refused before it costs anything.
    """
    tree = None
    try:
        check_text(text)
        tree = _parse(text, source)
        document = plain(tree)
    except PolicyTooLarge as err:
        line = err.line if err.line is not None else _line_of(tree, err.path)
        raise PolicyError(source, [PolicyProblem(err.path, line, err.message)]) from None
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


def _parse(text: str, source: str) -> Any:
    """The YAML 1.2 tree of ``text``, read with a scanner that refuses deep nesting."""
    yaml = YAML(typ="rt")
    yaml.version = (1, 2)
    yaml.Scanner = BoundedScanner
    try:
        return yaml.load(io.StringIO(text))
    except PolicyTooLarge:
        raise
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        message = " ".join(str(part) for part in (err.context, err.problem) if part)
        raise PolicyError(source, [PolicyProblem((), line, f"not valid YAML: {message}")]) from None
    except Exception as err:  # ruamel raises several non-marked errors, e.g. on duplicate keys
        raise PolicyError(source, [PolicyProblem((), None, f"not valid YAML: {err}")]) from None


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
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        for key in sorted(set(error.instance) - set(known), key=str):
            yield (*path, key), f"unknown field {key!r}; known: {', '.join(known)}"
        return
    message = error.message
    if "propertyNames" in error.schema_path and isinstance(error.instance, str):
        yield (*path, error.instance), f"{error.instance!r} is not a valid name: {message}"
        return
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    if error.validator == "pattern" and description:
        message = f"{error.instance!r} is not {description}"
    yield path, message


def _shallowness(errors: list[jsonschema.ValidationError]) -> int:
    """Errors at the node itself (wrong type) say the branch was a poor guess."""
    return sum(1 for e in errors if not e.path and e.validator == "type")


def _safe_reference_problems(
    document: dict[str, Any],
) -> list[tuple[tuple[PathItem, ...], str]]:
    """Cross-reference problems, as far as a document that failed its schema lets us look."""
    found: list[tuple[tuple[PathItem, ...], str]] = []
    for check in (_reference_problems, _number_problems, _duration_problems):
        try:
            found.extend(check(document))
        except (KeyError, TypeError, AttributeError, ValueError, IndexError):
            continue
    return found


MAX_DURATION = parse_duration_ms("3650d")
_DURATION_FIELDS = (
    ("signals", "*", "within"),
    ("signals", "*", "after"),
    ("moments", "*", "half_life"),
    ("actions", "*", "cooldown"),
    ("caps", "*", "window"),
    ("suppressions", "*", "for"),
    ("ingest", "max_future_skew"),
    ("ingest", "allowed_lateness"),
    ("customers", "evict_idle_after"),
)
_NUMBER_FIELDS = (
    ("moments", "*", "value"),
    ("actions", "*", "min_value"),
    ("categories", "*"),
)


def _at(document: Any, pattern: tuple[str, ...]) -> Iterator[tuple[tuple[PathItem, ...], Any]]:
    """Every value at ``pattern`` (``*`` matches any key or index) with its path."""
    nodes: list[tuple[tuple[PathItem, ...], Any]] = [((), document)]
    for part in pattern:
        following: list[tuple[tuple[PathItem, ...], Any]] = []
        for path, node in nodes:
            if part == "*":
                if isinstance(node, dict):
                    following += [((*path, k), v) for k, v in node.items()]
                elif isinstance(node, list):
                    following += [((*path, i), v) for i, v in enumerate(node)]
            elif isinstance(node, dict) and part in node:
                following.append(((*path, part), node[part]))
        nodes = following
    yield from nodes


def _duration_problems(document: dict[str, Any]) -> Iterator[tuple[tuple[PathItem, ...], str]]:
    for pattern in _DURATION_FIELDS:
        for path, value in _at(document, pattern):
            try:
                too_long = parse_duration_ms(value) > MAX_DURATION
            except (ValueError, TypeError):
                continue
            if too_long:
                yield path, f"{value!r} is longer than 3650d"


def _number_problems(document: dict[str, Any]) -> Iterator[tuple[tuple[PathItem, ...], str]]:
    for pattern in _NUMBER_FIELDS:
        for path, value in _at(document, pattern):
            if isinstance(value, float) and not math.isfinite(value):
                yield path, f"{value!r} is not a finite number"
            elif isinstance(value, (int, float)) and abs(value) > 1e9:
                yield path, f"{value!r} is larger than 1e9"


Problems = Iterator[tuple[tuple[PathItem, ...], str]]
_SHAPE_ERRORS = (KeyError, TypeError, AttributeError, ValueError, IndexError)


def _each(entries: Iterable[Any], check: Callable[..., Problems]) -> Problems:
    """Run ``check`` on every entry; an entry too malformed to check (its schema errors
    are already reported) does not stop the others."""
    for entry in entries:
        try:
            found = list(check(*entry))
        except _SHAPE_ERRORS:
            continue
        yield from found


def _items(document: dict[str, Any], section: str) -> list[tuple[Any, Any]]:
    value = document.get(section)
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, list):
        return list(enumerate(value))
    return []


def _reference_problems(document: dict[str, Any]) -> Problems:
    """Names that must point at something the policy defines, and values that must make sense."""
    channels = set(_names_in(document.get("channels")))
    categories = set(_names_in(document.get("categories")))
    signals = set(_names_in(document.get("signals")))
    moments = set(_names_in(document.get("moments")))
    actions = set(_names_in(document.get("actions")))
    prefixes = ("properties.", "context.")

    defaults = document.get("defaults")
    timezone = defaults.get("timezone") if isinstance(defaults, dict) else None
    if isinstance(timezone, str) and not _is_timezone(timezone):
        yield ("defaults", "timezone"), f"unknown time zone {timezone!r}"

    def signal(name: str, spec: dict[str, Any]) -> Problems:
        for key in ("within", "after"):
            if key in spec and _is_zero(spec[key]):
                yield ("signals", name, key), "must be longer than 0"
        for key in ("group_by", "text_field"):
            if key in spec and not spec[key].startswith(prefixes):
                yield ("signals", name, key), "must start with properties. or context."
        for index, phrase in enumerate(spec.get("matches_any", [])):
            if isinstance(phrase, str) and not phrase_words(phrase):
                yield ("signals", name, "matches_any", index), f"{phrase!r} has no words to match"

    def moment(name: str, spec: dict[str, Any]) -> Problems:
        single = isinstance(spec["from"], str)
        for index, source in enumerate([spec["from"]] if single else spec["from"]):
            if source not in signals:
                path: tuple[PathItem, ...] = ("moments", name, "from")
                yield (
                    (path if single else (*path, index)),
                    (f"names no signal: {source!r} (signals: {_listing(signals)})"),
                )
        if _is_zero(spec["half_life"]):
            yield ("moments", name, "half_life"), "must be longer than 0"

    def action(name: str, spec: dict[str, Any]) -> Problems:
        if spec.get("moment") not in moments:
            yield (
                ("actions", name, "moment"),
                (f"names no moment: {spec.get('moment')!r} (moments: {_listing(moments)})"),
            )
        for index, channel in enumerate(spec.get("channels", [])):
            if channel not in channels:
                yield (
                    ("actions", name, "channels", index),
                    (f"names no channel: {channel!r} (channels: {_listing(channels)})"),
                )
        if spec.get("category") not in categories:
            yield (
                ("actions", name, "category"),
                (
                    f"names no category: {spec.get('category')!r} "
                    f"(categories: {_listing(categories)})"
                ),
            )

    def quiet_hours(key: str, values: Any) -> Problems:
        known = {"except_channels": channels, "except_categories": categories}.get(key)
        if known is None or not isinstance(values, list):
            return
        for index, value in enumerate(values):
            if value not in known:
                yield ("quiet_hours", key, index), f"names no {key[7:-1]}: {value!r}"

    def cap(index: int, spec: dict[str, Any]) -> Problems:
        match = spec.get("match", {})
        for key, known in (("channel", channels), ("category", categories), ("action", actions)):
            if key in match and match[key] not in known:
                yield ("caps", index, "match", key), f"names no {key}: {match[key]!r}"
        if _is_zero(spec["window"]):
            yield ("caps", index, "window"), "must be longer than 0"

    suppression_names: set[str] = set()

    def suppression(index: int, rule: dict[str, Any]) -> Problems:
        name = rule.get("name")
        if isinstance(name, str):
            if name in suppression_names:
                yield ("suppressions", index, "name"), f"another suppression is named {name!r}"
            suppression_names.add(name)
        when = rule.get("when", {})
        if "signal" in when and when["signal"] not in signals:
            yield (
                ("suppressions", index, "when", "signal"),
                (f"names no signal: {when['signal']!r}"),
            )
        suppress = rule.get("suppress", {})
        for key, known in (("channel", channels), ("category", categories), ("action", actions)):
            values = suppress.get(key, [])
            for value in [values] if isinstance(values, str) else values:
                if value not in known:
                    yield ("suppressions", index, "suppress", key), f"names no {key}: {value!r}"
        same = suppress.get("same")
        if same is not None and not same.startswith(prefixes):
            yield (
                ("suppressions", index, "suppress", "same"),
                ("must start with properties. or context."),
            )

    def blocked(kind: str, patterns: list[str]) -> Problems:
        for index, pattern in enumerate(patterns):
            if not pattern.strip():
                yield ("identity", "blocked", kind, index), "an empty pattern blocks nothing"

    identity = document.get("identity")
    yield from _each(_items(document, "signals"), signal)
    yield from _each(_items(document, "moments"), moment)
    yield from _each(_items(document, "actions"), action)
    yield from _each(_items(document, "quiet_hours"), quiet_hours)
    yield from _each(_items(document, "caps"), cap)
    yield from _each(_items(document, "suppressions"), suppression)
    if isinstance(identity, dict):
        yield from _each(_items(identity, "blocked"), blocked)


def _names_in(section: Any) -> list[str]:
    """The names a section defines; nothing when it is not the shape it should be."""
    if isinstance(section, dict):
        return [str(k) for k in section]
    if isinstance(section, list):
        return [v for v in section if isinstance(v, str)]
    return []


def _is_timezone(name: str) -> bool:
    return zone(name) is not None


def _is_zero(duration: str) -> bool:
    digits = duration[:-1]
    return digits.isdigit() and int(digits) == 0


def _listing(names: set[str]) -> str:
    return ", ".join(sorted(names))
