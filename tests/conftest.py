"""Shared fixtures: the reference policy and a way to write events."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from operators.model.identifiers import UNKEYED_IDENTITY
from operators.model.records import Event, Origin
from operators.model.timefmt import parse_ms
from operators.policy.compiled import Policy
from operators.policy.load import load_policy

ROOT = Path(__file__).resolve().parents[1]
SPEC_POLICY = ROOT.parent / "shared" / "spec" / "reference" / "policy.yaml"
EXAMPLES = ROOT / "examples"
REFERENCE_POLICY = SPEC_POLICY if SPEC_POLICY.is_file() else EXAMPLES / "policy.yaml"
SPEC_FULL_POLICY = SPEC_POLICY.with_name("policy-full.yaml")

OURS = {
    "# A type `limits` leaves out has a default: 100 per profile for device_id and anonymous_id "
    "(as here), 10 for the",
    "# others. Any type may have a limit of its own, higher too; a link past it is refused and "
    "audited, as over these.",
    "    variants: [product-nudge-bundle]   # further templates `learning` (below) may choose "
    "instead",
}
"""The lines ``examples/policy-full.yaml`` has within the spec's beyond it."""
BEYOND = "# ---- Beyond the spec: what this repository adds"
"""Where the sections this repository adds begin, at the end of ``examples/policy-full.yaml``
(the blank line before it is ours too)."""


def within_the_spec(text: str) -> list[str]:
    """The lines of ``examples/policy-full.yaml`` before what this repository adds."""
    head = text[: text.index(BEYOND)] if BEYOND in text else text
    return head.removesuffix("\n").splitlines()


def _spec_full_policy() -> Path:
    """The spec's ``policy-full.yaml``: beside the repository, else made from
    ``examples/policy-full.yaml`` without what this repository adds (learning, a variant,
    comments), which ``tests/docs/test_examples.py`` checks is the spec's by its digest."""
    if SPEC_FULL_POLICY.is_file():
        return SPEC_FULL_POLICY
    lines = within_the_spec((EXAMPLES / "policy-full.yaml").read_text())
    made = Path(tempfile.mkdtemp(prefix="concierge-spec-")) / "policy-full.yaml"
    made.write_text("\n".join(line for line in lines if line not in OURS) + "\n")
    return made


FULL_POLICY = _spec_full_policy()
"""``policy-full.yaml``: the reference policy and every section beyond it, as the spec has
it (``examples/policy-full.yaml`` adds learning to it)."""

_ids = itertools.count(1)


@pytest.fixture(scope="session", autouse=True)
def machine_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The commands the tests run keep this machine's action key here, not in the user's
    home; every command of the session shares it, as on one machine."""
    config = tmp_path_factory.mktemp("xdg-config")
    os.environ["XDG_CONFIG_HOME"] = str(config)
    os.environ.pop("CONCIERGE_ACTION_KEY", None)
    return config


@pytest.fixture(scope="session")
def reference_policy_path() -> Path:
    return REFERENCE_POLICY


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(REFERENCE_POLICY.read_text(), str(REFERENCE_POLICY))


def event_dict(
    event_type: str,
    at: str,
    properties: dict[str, Any] | None = None,
    event_id: str | None = None,
    **identifiers: str,
) -> dict[str, Any]:
    """An input event as a producer would write it."""
    record: dict[str, Any] = {
        "event_id": event_id or f"e-{next(_ids)}",
        "type": event_type,
        "timestamp": at,
        "identifiers": identifiers or {"email": "ana@example.com"},
    }
    if properties is not None:
        record["properties"] = properties
    return record


def make_event(
    event_type: str,
    at: str,
    properties: dict[str, Any] | None = None,
    event_id: str | None = None,
    **identifiers: str,
) -> Event:
    """A validated event, as ingest would hand it on."""
    record = event_dict(event_type, at, properties, event_id, **identifiers)
    return Event(
        record["event_id"],
        event_type,
        parse_ms(at),
        UNKEYED_IDENTITY.identify_normalised(record["identifiers"]),
        {},
        properties or {},
        Origin(file="test", line=0),
    )


def write_jsonl(path: Path, records: list[dict[str, Any] | bytes]) -> Path:
    with path.open("wb") as out:
        for record in records:
            out.write(record if isinstance(record, bytes) else orjson.dumps(record))
            out.write(b"\n")
    return path


EventFactory = Callable[..., Event]
