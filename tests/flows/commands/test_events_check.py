"""``validate --events`` reads a file of any size in bounded memory
(flows/commands/events_check.py): counts, never the events, and no count grows with what a
hostile file invents."""

from __future__ import annotations

import io

import orjson

from flows.commands import events_check
from flows.commands.events_check import MAX_NAMES, MAX_TYPES, Wanted, take_census
from operators.policy.load import load_policy
from tests.conftest import REFERENCE_POLICY


def _wanted():
    return Wanted.of(dict(load_policy(REFERENCE_POLICY.read_text()).document))


def test_invented_types_and_fields_are_counted_only_so_far(monkeypatch):
    lines = [
        orjson.dumps({"type": f"t-{n}", "properties": {f"k{n}": 1}}) for n in range(MAX_TYPES + 50)
    ]
    lines += [
        orjson.dumps({"type": "product_view", "properties": {f"f{n}": {"deep": {"er": 1}}}})
        for n in range(MAX_NAMES + 50)
    ]
    lines += [
        b'{"type": "' + b"x" * 3000 + b'"}',
        b"[1]",
        b'{"type": "purchase", "a": ' + b"1" * 5000,
    ]
    said = []
    monkeypatch.setattr(events_check, "PROGRESS_EVERY_S", 0.0)
    wanted = _wanted()
    census = take_census(io.BytesIO(b"\n".join(lines) + b"\n"), wanted, 4096, said.append)
    assert census.records == len(lines) and census.not_events == 3
    assert len(census.types) == MAX_TYPES + 1, "and the policy's own types, counted always"
    assert census.types["product_view"] == MAX_NAMES + 50 and "product_view" in wanted.types
    assert len(census.fields_of["product_view"]) == MAX_NAMES
    assert census.carried["product_view", "properties.product_id"] == 0
    assert said and said == sorted(said), "progress: the records read so far"
