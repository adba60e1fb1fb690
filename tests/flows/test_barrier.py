"""The journey barrier (flows/barrier.py) in replay: each answer to a tick promises only
what is true, the answers keep up with the input, and firing timers as the frontier passes
them decides what replay decides without."""

import bisect

import orjson

from flows import replay as replay_module
from flows.barrier import Ack
from flows.commands.generator import Generator
from operators.journey import Journey
from operators.model.timefmt import parse_ms

UNTIL = 2_000_000_000_000
HOUR = 3_600_000
EVERY = 10 * 60_000


def generated(path):
    lines = list(Generator(400, seed=11, bad_share=0).events(6000))
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return sorted(
        (parse_ms(orjson.loads(line)["timestamp"]), orjson.loads(line)["event_id"])
        for line in lines
    )


class Checked(list):
    """The acks, each checked as it comes against the events handled by then."""

    def __init__(self, events, handled):
        super().__init__()
        self.times = [t for t, _ in events]
        self.ids = [i for _, i in events]
        self.handled = handled

    def extend(self, acks):
        for ack in acks:
            before = bisect.bisect_left(self.times, ack.at)
            missing = [i for i in self.ids[:before] if i not in self.handled]
            assert not missing, f"{ack}: {len(missing)} events before it not handled"
            self.append(ack)


def outputs(out_dir):
    return {p.name: sorted(p.read_bytes().splitlines()) for p in out_dir.glob("*.jsonl")}


def test_an_ack_promises_only_events_handled_and_keeps_up_with_the_input(
    tmp_path, policy, monkeypatch
):
    events = generated(tmp_path / "in.jsonl")
    handled = set()
    on_event = Journey.on_event

    def noting(self, policy, event):
        handled.add(event.event_id)
        return on_event(self, policy, event)

    monkeypatch.setattr(Journey, "on_event", noting)
    acks = Checked(events, handled)
    replay_module.replay(
        policy, tmp_path / "in.jsonl", tmp_path / "b", UNTIL, barrier_every=EVERY, acks=acks
    )
    assert all(isinstance(a, Ack) and a.worker == 0 for a in acks)
    assert len(acks) >= 3
    at = [a.at for a in acks]
    assert at == sorted(at), "an answer never takes back what an earlier one promised"
    assert at[-1] > events[len(events) // 2][0]


def test_timers_fired_as_the_frontier_passes_them_decide_alike(tmp_path, policy):
    generated(tmp_path / "in.jsonl")
    plain = replay_module.replay(policy, tmp_path / "in.jsonl", tmp_path / "a", UNTIL)
    barred = replay_module.replay(
        policy, tmp_path / "in.jsonl", tmp_path / "b", UNTIL, barrier_every=EVERY, acks=[]
    )
    assert outputs(tmp_path / "b") == outputs(tmp_path / "a")
    assert barred["decisions"] == plain["decisions"]
