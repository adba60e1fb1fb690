"""Replay resolves its file in alignment order (flows/replay.py): the order of the lines
does not change what is decided, and sorting through disk gives what sorting in memory
does."""

import random

import orjson

from flows import replay as replay_module
from flows.commands.generator import Generator

UNTIL = 2_000_000_000_000


def generated(path, shuffle=False):
    lines = list(Generator(300, seed=5, bad_share=0).events(3000))
    if shuffle:
        random.Random(3).shuffle(lines)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def outputs(out_dir):
    return {p.name: p.read_bytes() for p in sorted(out_dir.glob("*.jsonl")) if p.stat().st_size}


def test_the_order_of_the_lines_does_not_change_what_is_decided(tmp_path, policy):
    ordered = replay_module.replay(policy, generated(tmp_path / "a.jsonl"), tmp_path / "a", UNTIL)
    shuffled = replay_module.replay(
        policy, generated(tmp_path / "b.jsonl", shuffle=True), tmp_path / "b", UNTIL
    )
    read, read_shuffled = ordered.pop("input"), shuffled.pop("input")
    assert read["sha256"] != read_shuffled["sha256"], "another file, though the same events"
    assert ordered == shuffled
    a, b = outputs(tmp_path / "a"), outputs(tmp_path / "b")
    assert a.keys() == b.keys() and "audit.jsonl" in a
    for name in a:
        assert sorted(a[name].splitlines()) == sorted(b[name].splitlines()), name


def test_sorting_through_disk_gives_the_same_bytes_and_leaves_no_run_behind(
    tmp_path, policy, monkeypatch
):
    events = generated(tmp_path / "e.jsonl")
    replay_module.replay(policy, events, tmp_path / "memory", UNTIL)
    monkeypatch.setattr(replay_module, "SORT_BUFFER_EVENTS", 97)
    replay_module.replay(policy, events, tmp_path / "disk", UNTIL)
    assert outputs(tmp_path / "memory") == outputs(tmp_path / "disk")
    assert not list((tmp_path / "disk").glob(".concierge-run-*"))
    decisions = (tmp_path / "disk" / "decisions.jsonl").read_bytes().splitlines()
    assert len(decisions) > 100 and all(orjson.loads(d)["customer_id"] for d in decisions)


def test_an_event_spilled_to_disk_comes_back_whole():
    import dataclasses

    from flows.replay import _flat, _unflat
    from operators.model.records import Event, Origin

    event = Event(
        "e-1", "purchase", 1_700_000_000_000, {"email": "ana@example.com"}, {"timezone": "UTC"},
        {"amount": 3}, Origin("events", 2, 9, None, None, b"k"), 1.5, 1_700_000_000_500,
        (("phone", "invalid"),), (("email", "t***@test.com"),), True,
    )  # fmt: skip
    assert _unflat(_flat(event)) == event
    named = len(dataclasses.fields(Event)) - 1 + len(dataclasses.fields(Origin))
    assert len(_flat(event)) - 1 + len(_flat(event)[6]) == named, "a field is not spilled"
