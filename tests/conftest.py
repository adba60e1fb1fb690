"""Shared fixtures: the reference policy and a way to write events."""

from __future__ import annotations

import itertools
import os
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
REFERENCE_POLICY = SPEC_POLICY if SPEC_POLICY.is_file() else ROOT / "flows" / "demo_policy.yaml"
SPEC_FULL_POLICY = SPEC_POLICY.with_name("policy-full.yaml")
FULL_POLICY = (
    SPEC_FULL_POLICY if SPEC_FULL_POLICY.is_file() else ROOT / "flows" / "policy_full.yaml"
)
"""``policy-full.yaml``: the reference policy and every section beyond it (a copy ships in
``flows/``, kept equal to the spec's but for comments of its own by
``tests/unit/policy/test_compiled.py``)."""

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
