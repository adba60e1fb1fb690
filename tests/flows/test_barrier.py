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


def population_policy():
    """The example full policy, learning a population model every :data:`EVERY`."""
    from operators.policy.load import load_policy
    from tests.conftest import ROOT

    example = (ROOT / "examples" / "policy-full.yaml").read_text()
    text = example.replace(
        "  # population: {every: 1d, by: region}", f"  population: {{every: {EVERY // 60_000}m}}"
    )
    assert text != example
    return load_policy(text, "population")


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


def test_an_ack_promises_only_events_handled_and_keeps_up_with_the_input(tmp_path, monkeypatch):
    """Under a population model (whose versions wait for the answers, so the replay cannot
    end before they have caught up with the input)."""
    events = generated(tmp_path / "in.jsonl")
    handled = set()
    on_event = Journey.on_event

    def noting(self, policy, event):
        handled.add(event.event_id)
        return on_event(self, policy, event)

    monkeypatch.setattr(Journey, "on_event", noting)
    acks = Checked(events, handled)
    replay_module.replay(
        population_policy(), tmp_path / "in.jsonl", tmp_path / "b", UNTIL, acks=acks
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


def test_a_replay_with_until_short_of_the_input_ends_under_a_population_model(tmp_path):
    """Timers due past --until never fire, so no worker owes them: the events after it are
    still decided, each with its version (the workers' answers had waited for those timers,
    and the replay for the answers, for ever)."""
    events = generated(tmp_path / "in.jsonl")
    quarter = events[len(events) // 4][0]
    summary = replay_module.replay(
        population_policy(), tmp_path / "in.jsonl", tmp_path / "a", quarter
    )
    decided = [orjson.loads(line) for line in (tmp_path / "a" / "decisions.jsonl").open("rb")]
    assert sum(summary["decisions"].values()) == len(decided)
    assert max(parse_ms(d["at"]) for d in decided) > events[len(events) // 2][0]


def test_a_new_run_answers_ticks_without_what_the_last_runs_customers_owed(policy):
    """The customers of one run (one JourneyConfig) owe their worker a timer; a tick of the
    next run in the same process and thread is answered as if they had never been."""
    from flows.barrier import Tick, tick_keys
    from flows.journey import JourneyConfig, JourneyLogic
    from operators.identity.resolution import ForCustomer
    from tests.conftest import make_event

    started = make_event("checkout_started", "2026-11-20T10:00:00Z", {"cart_id": "k-1"}, "e-1")
    tick = Tick(parse_ms("2026-11-21T00:00:00Z"), 0)
    key = tick_keys(1)[0]
    first = JourneyConfig(policy, wall_clock_timers=False, barrier=True)
    JourneyLogic(first, None).on_batch([ForCustomer("c-1", started)])
    owing, _ = JourneyLogic(first, None).on_batch([ForCustomer(key, tick)])
    assert owing[0].at < tick.at, "the checkout's timer is owed in its own run"
    second = JourneyConfig(policy, wall_clock_timers=False, barrier=True)
    answered, _ = JourneyLogic(second, None).on_batch([ForCustomer(key, tick)])
    assert answered == [Ack(0, tick.at)]


def test_a_customer_waiting_for_a_merged_context_owes_from_the_merge(policy):
    """The retired profile fired what fell due before the merge, and what it had due after
    travels in its context: until that arrives, the survivor's worker answers no further than
    the merge (else the learner could make a version while a trial it counts is in flight)."""
    from flows.barrier import Tick, tick_keys
    from flows.journey import JourneyConfig, JourneyLogic
    from operators.identity.resolution import ForCustomer
    from operators.model.handover import Adopt

    merge = parse_ms("2026-11-20T10:00:00Z")
    config = JourneyConfig(policy, wall_clock_timers=False, barrier=True)
    JourneyLogic(config, None).on_batch([ForCustomer("c-1", Adopt("m-1", "c-2", merge))])
    tick = Tick(merge + 24 * HOUR, 0)
    answered, _ = JourneyLogic(config, None).on_batch([ForCustomer(tick_keys(1)[0], tick)])
    assert answered == [Ack(0, merge)]


def test_no_request_for_capacity_comes_after_the_owner_has_answered_past_its_time(
    tmp_path, monkeypatch, policy
):
    """What an answer to a tick promises is what lets the capacity owner answer in order:
    once every worker has answered past ``t``, no request at ``t`` or before may still come,
    whichever customers wait for answers meanwhile (and each request is answered)."""
    from dataclasses import replace

    from operators.decisions import capacity
    from operators.policy.compiled import Capacity, Pace

    generated(tmp_path / "in.jsonl")
    paced = replace(policy, capacity=Capacity((Pace("push", 1, 60_000),), ()))
    promised = [0]
    asked, answered = [], []
    ask, due = capacity.Barrier.ask, capacity.Barrier.due

    def checked_ask(self, request):
        assert request.at >= promised[0], f"{request} after answering up to {promised[0]}"
        asked.append(request)
        ask(self, request)

    def noted_due(self):
        promised[0] = max(promised[0], self.answered_before() or 0)
        out = due(self)
        answered.extend(out)
        return out

    monkeypatch.setattr(capacity.Barrier, "ask", checked_ask)
    monkeypatch.setattr(capacity.Barrier, "due", noted_due)
    replay_module.replay(paced, tmp_path / "in.jsonl", tmp_path / "a", UNTIL)
    assert len(asked) > 100 and len(answered) == len(asked)
    assert any(a.send_at is not None and a.send_at > a.request.at for a in answered)


def test_a_customer_waiting_for_capacity_owes_only_what_it_decides_after_the_answer(policy):
    """Waiting for an answer to a request at ``t``, a customer owes its worker no earlier than
    ``t + 1`` (what comes after the answer is decided no earlier), and only what it will
    decide then: its held events and timers, and what the answer defers (a moment its send
    outranks, decided again at ``t + 1``). Nothing more holds the other customers back."""
    from dataclasses import replace

    from flows.barrier import Tick, tick_keys
    from flows.journey import JourneyConfig, JourneyLogic
    from flows.progress import FrontierMark
    from operators.decisions.capacity import Request
    from operators.identity.resolution import ForCustomer
    from operators.policy.compiled import Capacity, Pace
    from tests.conftest import make_event

    paced = replace(policy, capacity=Capacity((Pace("push", 1, 60_000),), ()))
    grant = {"purpose": "marketing", "channel": "*", "granted": True}

    def views(product, at):
        return [
            make_event("product_view", f"2026-11-2{day}T{at}Z", {"product_id": product})
            for day in (0, 1, 2)
        ]

    def asking(*products):
        config = JourneyConfig(paced, wall_clock_timers=False, barrier=True)
        logic = JourneyLogic(config, None)
        events = [make_event("consent_changed", "2026-11-19T09:00:00Z", grant)]
        for product in products:
            events += views(product, "10:00:00")
        out, _ = logic.on_batch([ForCustomer("c-1", e) for e in events])
        requests = [o for o in out if isinstance(o, Request)]
        return config, logic, requests[0] if requests else None

    def acked(config):
        tick = Tick(parse_ms("2030-01-01T00:00:00Z"), 0)
        (ack,), _ = JourneyLogic(config, None).on_batch([ForCustomer(tick_keys(1)[0], tick)])
        return ack.at

    config, logic, request = asking("p-1")
    due = logic._journey.state.next_due()
    assert due is not None and due > request.at + 1
    assert acked(config) == due, "a customer waiting for an answer holds no one back"
    later = make_event("product_view", "2026-11-22T10:00:05Z", {"product_id": "p-2"})
    logic.on_batch([ForCustomer("c-1", later)])
    assert acked(config) == parse_ms("2026-11-22T10:00:05Z"), "it owes what it holds"

    # two nudges held back by quiet hours fall due at one instant: one request for both,
    # and the one not granted is decided again an instant later
    config, logic, request = asking()
    night = [e for p in ("p-1", "p-2") for e in views(p, "02:00:00")]
    morning = make_event("app_opened", "2026-11-22T12:00:00Z", {})
    logic.on_batch([ForCustomer("c-1", e) for e in night])
    assert sorted(logic._journey.state.deferred.values())[0] < morning.time
    config.frontier.apply(FrontierMark(morning.time + 1, False, None, 0, "run"))
    out, _ = logic.on_batch([ForCustomer("c-1", morning)])
    (both,) = [o for o in out if isinstance(o, Request)]
    assert {c.action for c in both.candidates} == {"product_nudge"} and len(both.candidates) > 2
    assert logic._journey.queue == (morning,)
    assert acked(config) == both.at + 1, "it owes what the answer defers"
