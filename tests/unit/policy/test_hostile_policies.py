"""Hostile policies (hypothesis): a policy is either refused with problems naming their
fields, or it loads and then runs events without raising; nothing else, and never slowly."""

from __future__ import annotations

import copy
import io
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from operators.journey import Journey
from operators.model.records import Event, Origin
from operators.model.state import CustomerState
from operators.policy.load import PolicyError, load_policy
from tests.conftest import REFERENCE_POLICY
from tests.hostile import attacks
from tests.unit.policy.test_limits import billion_laughs

FUZZ = attacks(150, HealthCheck.data_too_large)
TEXT = REFERENCE_POLICY.read_text()
DOCUMENT = load_policy(TEXT).document

hostile_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["", "0s", "3650d", "3651d", "1h", "-1", "Europe", "A" * 300, "*", "on"]),
    st.lists(st.text(max_size=5), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**64 - 1), max_size=3),
)


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*path, index))
    return found


PATHS = _paths(dict(DOCUMENT))


def _replace(document: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return document


def _delete(document: Any, path: tuple) -> Any:
    if not path:
        return {}
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    return document


@st.composite
def mutated_documents(draw: st.DrawFn) -> str:
    document = copy.deepcopy(_plain(DOCUMENT))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(document)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            document = _replace(document, path, draw(hostile_values))
        elif action == "delete" and path:
            document = _delete(document, path)
        else:
            node = document
            for part in path:
                node = node[part]
            if isinstance(node, dict):
                node[draw(st.text(min_size=1, max_size=8))] = draw(hostile_values)
            elif isinstance(node, list):
                node.append(draw(hostile_values))
    if draw(st.booleans()):  # JSON is YAML 1.2 too, but has no NaN or infinities
        return orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS).decode()
    out = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.dump(document, out)
    return out.getvalue()


def _plain(node: Any) -> Any:
    if isinstance(node, dict) or hasattr(node, "items"):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_plain(v) for v in node]
    return node


@st.composite
def mangled_text(draw: st.DrawFn) -> str:
    """The reference policy's text cut, spliced or sprinkled with YAML's special characters."""
    text = TEXT
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["cut", "insert", "repeat"]))
        if kind == "cut":
            text = text[:at]
        elif kind == "insert":
            text = (
                text[:at]
                + draw(
                    st.sampled_from(
                        [
                            "&a ",
                            "*a",
                            "*nope",
                            ": ",
                            "- ",
                            "[",
                            "{",
                            "'",
                            '"',
                            "\t",
                            "!!python/object:os.system ",
                            "<<: *a\n",
                            "\x00",
                            "\ufeff",
                            "%YAML 1.1\n",
                        ]
                    )
                )
                + text[at:]
            )
        else:
            line_start = text.rfind("\n", 0, at) + 1
            line_end = text.find("\n", at)
            line = text[line_start : line_end if line_end >= 0 else len(text)]
            text = text[:line_start] + (line + "\n") * draw(st.integers(2, 50)) + text[line_start:]
    return text


def _run_some_events(policy) -> None:
    journey = Journey(CustomerState("cus_fuzz"))
    start = 1_795_000_000_000
    kinds = ["consent_changed", "product_view", "product_view", "product_view", "help_search"]
    kinds += ["help_search", "help_search", "complaint", "checkout_started", "purchase"]
    for n, kind in enumerate(kinds):
        properties = {"product_id": "p-1", "text": "hospital", "purpose": "marketing"}
        properties["granted"] = True
        event = Event(
            f"e-{n}", kind, start + n * 60_000, {"email": "f@x.y"}, {}, properties, Origin()
        )
        for output in journey.on_event(policy, event):
            orjson.dumps(output.as_record())
    for output in journey.fire_due(policy, start + 400 * 86_400_000, inclusive=True):
        orjson.dumps(output.as_record())


def _judge(text: str) -> None:
    try:
        policy = load_policy(text, "fuzzed.yaml")
    except PolicyError as err:
        assert err.problems
        for problem in err.problems:
            assert str(problem) and problem.message
        return
    _run_some_events(policy)


@FUZZ
@given(text=mutated_documents())
def test_a_mutated_policy_is_refused_by_field_or_runs(text):
    _judge(text)


@FUZZ
@given(text=mangled_text())
def test_mangled_policy_text_is_refused_or_runs(text):
    _judge(text)


@pytest.mark.parametrize(
    "text",
    [
        billion_laughs(),
        TEXT + "\nx: &x [" + ", ".join(["*x"] * 5) + "]\n",
        "a: &a [*a]\n",
        "a: !!python/object/apply:os.system [echo pwned]\n",
        "\ufeff" + TEXT,
        TEXT.replace("channels: [email", "channels: !!set {email"),
    ],
    ids=["billion-laughs", "self-alias", "recursive-alias", "python-tag", "bom", "set-tag"],
)
def test_yaml_tricks_are_refused_or_harmless(text):
    _judge(text)
