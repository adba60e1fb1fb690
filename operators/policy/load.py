"""Read a policy: YAML 1.2 text -> schema validation -> cross-reference checks -> :class:`Policy`.

Every problem is reported, each with the path of the field and the line it is on.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

import schemas
from operators.policy.checks import PathItem, cross_check
from operators.policy.compiled import Policy
from operators.policy.compiler import compile_policy
from operators.policy.limits import BoundedScanner, PolicyTooLarge, check_text, plain
from operators.policy.typos import likely_typos


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One bad field: where it is and what is wrong with it."""

    path: tuple[PathItem, ...]
    line: int | None
    message: str

    def __str__(self) -> str:
        """``path (line N): message``."""
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
    """The validator of ``schemas/policy.schema.json``, the schema itself checked once."""
    schema = schemas.load("policy")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def load_policy(text: str, source: str = "policy") -> Policy:
    """Parse, validate and compile policy ``text`` (YAML 1.2); raise :class:`PolicyError`.

    The limits of :mod:`operators.policy.limits` are checked first, so a hostile file is
    refused before it costs anything.
    """
    _, document = _checked(text, source)
    return _compiled(text, document)


def load_policy_warned(text: str, source: str = "policy") -> tuple[Policy, list[PolicyProblem]]:
    """:func:`load_policy`, and what in the policy looks like a typo
    (:mod:`operators.policy.typos`), each with its line."""
    policy, warnings, _ = load_policy_located(text, source)
    return policy, warnings


Locate = Callable[[Sequence[PathItem]], int | None]
"""The line of a field of a policy's text, by its path."""


def load_policy_located(
    text: str, source: str = "policy"
) -> tuple[Policy, list[PolicyProblem], Locate]:
    """:func:`load_policy_warned`, and the line of any field of ``text``, for warnings found
    later (against an events file)."""
    tree, document = _checked(text, source)
    warnings = [
        PolicyProblem(path, _line_of(tree, path), message)
        for path, message in likely_typos(document)
    ]
    return _compiled(text, document), warnings, partial(_line_of, tree)


def _checked(text: str, source: str) -> tuple[Any, dict[str, Any]]:
    """The YAML tree of policy ``text`` and the document it holds; raise
    :class:`PolicyError` naming every problem."""
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
        for path, message in cross_check(document)
    ]
    if problems:
        problems.sort(key=lambda p: (p.line if p.line is not None else 0, str(p.path)))
        raise PolicyError(source, problems)
    return tree, document


def _compiled(text: str, document: dict[str, Any]) -> Policy:
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


PATTERNS = {
    "^[0-9]+[smhd]$": "a duration: digits then s, m, h or d",
    "^([01][0-9]|2[0-3]):[0-5][0-9]$": "a time of day, HH:MM",
    "^[A-Z]{2}$": "a region: two capital letters",
    "^[A-Za-z0-9_-]+$": "a name: letters, digits, _ and -",
}
"""What each pattern of the schema means, for a value that breaks it (the schema's descriptions
say what a field is for)."""


def _schema_problems(document: Any) -> Iterator[tuple[tuple[PathItem, ...], str]]:
    """Every way ``document`` breaks the policy schema, as (path, message)."""
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
    if error.validator == "pattern" and error.validator_value in PATTERNS:
        message = f"{error.instance!r} is not {PATTERNS[error.validator_value]}"
    yield path, message


def _shallowness(errors: list[jsonschema.ValidationError]) -> int:
    """Errors at the node itself (wrong type) say the branch was a poor guess."""
    return sum(1 for e in errors if not e.path and e.validator == "type")
