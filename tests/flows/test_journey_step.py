"""The per-customer step on the wall clock (flows/journey.py): when Kafka mode's timers fire,
driven by a clock the test sets rather than by sleeping."""

from bytewax.operators import StatefulBatchLogic

from flows.journey import JourneyConfig, JourneyLogic
from flows.progress import FrontierMark
from operators.identity.resolution import ForCustomer
from operators.model.records import Decision
from operators.model.timefmt import format_ms, parse_ms
from tests.conftest import make_event

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


class Clock:
    def __init__(self, at: str) -> None:
        self.now = parse_ms(at)

    def __call__(self) -> int:
        return self.now


def settled(config, at):
    """The identity step says the cluster's input is resolved up to ``at``."""
    config.frontier.apply(FrontierMark(parse_ms(at), False, None, 0, "run"))


def step(policy, clock, pack_idle_ms=None):
    config = JourneyConfig(policy, wall_clock_timers=True, clock=clock, pack_idle_ms=pack_idle_ms)
    settled(config, "2100-01-01T00:00:00Z")
    logic = JourneyLogic(config, None)
    events = [
        make_event("consent_changed", "2026-11-20T09:00:00Z", GRANT),
        make_event("checkout_started", "2026-11-20T10:00:00Z"),
    ]
    logic.on_batch([ForCustomer("cus_ana", e) for e in events])
    return config, logic


def test_a_timer_fires_when_the_wall_clock_passes_it_and_decides_as_of_its_due_time(policy):
    clock = Clock("2026-11-20T10:10:00Z")
    _, logic = step(policy, clock)
    assert format_ms(int(logic.notify_at().timestamp() * 1000)) == "2026-11-20T10:30:00Z"
    clock.now = parse_ms("2026-11-20T10:45:00Z")
    emitted, _ = logic.on_notify()
    decisions = [e.output for e in emitted if isinstance(e.output, Decision)]
    assert [(d.action, format_ms(d.at)) for d in decisions] == [
        ("cart_recovery", "2026-11-20T10:30:00Z")
    ]


def test_a_partition_of_the_cluster_still_reading_its_backlog_holds_the_timer_back(policy):
    clock = Clock("2026-11-20T10:45:00Z")
    config, logic = step(policy, clock)
    settled(config, "2026-11-20T10:20:00Z")
    assert format_ms(int(logic.notify_at().timestamp() * 1000)) == "2026-11-20T10:45:02Z"
    assert list(logic.on_notify()[0]) == []
    settled(config, "2026-11-20T10:30:00Z")
    assert list(logic.on_notify()[0]) == [], "an event at the due time may still cancel it"
    settled(config, "2026-11-20T10:30:01Z")
    assert len(list(logic.on_notify()[0])) > 0


def test_before_the_identity_step_has_said_anything_no_timer_fires(policy):
    clock = Clock("2026-11-21T10:00:00Z")
    config = JourneyConfig(policy, wall_clock_timers=True, clock=clock)
    logic = JourneyLogic(config, None)
    logic.on_batch([ForCustomer("cus_ana", make_event("checkout_started", "2026-11-20T10:00:00Z"))])
    assert list(logic.on_notify()[0]) == []


def test_a_snapshot_from_another_version_is_refused_with_a_clear_error(policy):
    import pickle

    import pytest

    from flows.journey import IncompatibleSnapshot
    from operators.journey import Journey
    from operators.model.state import CustomerState

    config = JourneyConfig(policy, wall_clock_timers=False)
    # what an older version wrote: its customer state under a module this one no longer has
    journey = pickle.dumps(Journey(CustomerState("cus_ana")), protocol=pickle.HIGHEST_PROTOCOL)
    older = journey.replace(b"operators.journey", b"operators.journal")
    with pytest.raises(IncompatibleSnapshot, match="another version"):
        JourneyLogic(config, older)


def generated_customers(policy, customers=40, events=3000):
    """Generated events, resolved to customers the way the identity step would."""
    from flows.commands.generator import Generator
    from operators.ingest import Ingestor
    from operators.model.records import Event, Origin

    ingestor = Ingestor(policy)
    by_customer = {}
    for n, raw in enumerate(Generator(customers, 3).events(events), 1):
        event = ingestor.ingest(raw, Origin(file="gen", line=n))
        if isinstance(event, Event) and event.type != "feedback":
            first = sorted(event.identifiers.items())[0]
            by_customer.setdefault(f"cus_{first[0]}_{first[1]}", []).append(event)
    return by_customer


def test_a_customer_packed_when_idle_decides_as_one_kept_alive(policy):
    """Kafka mode packs a customer idle for PACK_IDLE_MS of wall-clock time and revives them
    on their next event or timer: nothing they decide, nor when they wake, changes; nor
    after a restart from the packed snapshot."""
    clock = Clock("2026-11-10T00:00:00Z")
    kept_config = JourneyConfig(policy, wall_clock_timers=True, clock=clock, pack_idle_ms=None)
    config = JourneyConfig(policy, wall_clock_timers=True, clock=clock)
    settled(config, "2100-01-01T00:00:00Z")
    settled(kept_config, "2100-01-01T00:00:00Z")
    restarted = decided = fired = packs = 0
    for customer, events in generated_customers(policy).items():
        kept, packed = JourneyLogic(kept_config, None), JourneyLogic(config, None)
        for n in range(0, len(events), 3):
            batch = [ForCustomer(customer, e) for e in events[n : n + 3]]
            clock.now = batch[-1].item.time
            if packed._journey is None and n and (n // 3) % 2:
                packed = JourneyLogic(config, packed.snapshot())  # as a restart would
                restarted += 1
            out = kept.on_batch(batch)
            assert out == packed.on_batch(batch)
            decided += len(out[0])
            wake = int(packed.notify_at().timestamp() * 1000)
            assert wake <= clock.now + config.pack_idle_ms, "it wakes to pack"
            clock.now += 3_600_000
            out = kept.on_notify()
            assert out == packed.on_notify()
            fired += len(out[0])
            if out[0] and out[1] is StatefulBatchLogic.RETAIN:  # a timer fired: live 10 s more
                clock.now += 3_600_000
                out = kept.on_notify()
                assert out == packed.on_notify()
                fired += len(out[0])
            if out[1] is StatefulBatchLogic.RETAIN and not out[0]:
                assert packed._journey is None, "idle for an hour: packed"
                packs += 1
                assert kept.notify_at() == packed.notify_at(), "a packed customer wakes on time"
            elif out[1] is StatefulBatchLogic.DISCARD:
                break
    assert restarted > 50 and decided > 50 and fired > 10 and packs > 100, (
        restarted,
        decided,
        fired,
        packs,
    )


def test_a_customer_in_the_middle_of_a_session_stays_live(policy):
    clock = Clock("2026-11-20T10:10:00Z")
    _, logic = step(policy, clock, pack_idle_ms=10_000)
    assert format_ms(int(logic.notify_at().timestamp() * 1000)) == "2026-11-20T10:10:10Z"
    clock.now += 5_000
    logic.on_batch([ForCustomer("cus_ana", make_event("page_view", "2026-11-20T10:10:05Z"))])
    clock.now += 6_000
    logic.on_notify()
    assert logic._journey is not None, "touched 6 s ago: still live"
    assert logic.snapshot().startswith(b"\x80"), "a live customer's snapshot is its pickle"
    clock.now += 5_000
    logic.on_notify()
    assert logic._journey is None and logic.snapshot().startswith(b"cj2")


def test_a_packed_snapshot_from_another_version_is_refused_as_the_flow_starts(policy, monkeypatch):
    import pickle
    import zlib

    import pytest

    import flows.journey
    from flows.journey import IncompatibleSnapshot, pack
    from operators.journey import Journey
    from operators.model.state import CustomerState

    monkeypatch.setattr(flows.journey, "_resumed_one", False)
    config = JourneyConfig(policy, wall_clock_timers=False)
    blob = pickle.dumps(Journey(CustomerState("cus_ana")), protocol=pickle.HIGHEST_PROTOCOL)
    older = pack(Journey(CustomerState("cus_ana")), policy)
    older = older[:24] + zlib.compress(blob.replace(b"operators.journey", b"operators.journal"))
    with pytest.raises(IncompatibleSnapshot, match="another version"):
        JourneyLogic(config, older)


def test_a_snapshot_of_the_journey_alone_resumes(policy):
    """A live customer's snapshot is their pickled journey alone (as every snapshot was
    before customers were packed); it resumes."""
    import pickle

    clock = Clock("2026-11-20T10:10:00Z")
    config, logic = step(policy, clock)
    journey_alone = pickle.dumps(logic._journey, protocol=pickle.HIGHEST_PROTOCOL)
    resumed = JourneyLogic(config, journey_alone)
    assert resumed.notify_at() == logic.notify_at()
    clock.now = parse_ms("2026-11-20T10:45:00Z")
    assert resumed.on_notify() == logic.on_notify()


def pending(logic):
    """What one customer really has pending: (signal timers, deferred decisions)."""
    from flows.journey import unpack

    journey = logic._journey if logic._journey is not None else unpack(logic._packed)
    return len(journey.state.pending), len(journey.state.deferred)


def gauge():
    from flows.metrics import DEFERRED_DECISIONS, SIGNAL_TIMERS

    return int(SIGNAL_TIMERS._value.get()), int(DEFERRED_DECISIONS._value.get())


def restart_gauge():
    """A new process: the timers-pending gauge starts at zero."""
    from flows.metrics import DEFERRED_DECISIONS, SIGNAL_TIMERS

    SIGNAL_TIMERS.set(0)
    DEFERRED_DECISIONS.set(0)


def as_packed_by_050(packed):
    """A customer as 0.5.0 packed them: the head without the counts of what is pending."""
    import struct

    _, due, eviction, held, _, _ = struct.unpack_from("<3sqq?HH", packed)
    return struct.pack("<3sqq?", b"cj1", due, eviction, held) + packed[24:]


def test_timers_pending_is_what_the_customers_have_pending_through_packs_and_restarts(
    policy, monkeypatch
):
    """The gauge, moved by each callback, equals the sum over every customer of their signal
    timers and deferred decisions: as events start and cancel timers, as timers fire, as
    customers are packed, forgotten, and resumed after a restart (from live, packed and
    0.5.0-packed snapshots)."""
    import flows.journey

    monkeypatch.setattr(flows.journey, "_resumed_one", True)
    clock = Clock("2026-11-10T00:00:00Z")
    config = JourneyConfig(policy, wall_clock_timers=True, clock=clock, pack_idle_ms=600_000)
    settled(config, "2100-01-01T00:00:00Z")
    restart_gauge()
    customers = generated_customers(policy, customers=60, events=4000)
    events = sorted(
        (e.time, customer, n, e) for customer, es in customers.items() for n, e in enumerate(es)
    )
    logics: dict[str, JourneyLogic] = {}
    restarts = packed = 0
    peak = (0, 0)
    for n in range(0, len(events), 50):
        by_customer: dict[str, list[ForCustomer]] = {}
        for at, customer, _, event in events[n : n + 50]:
            by_customer.setdefault(customer, []).append(ForCustomer(customer, event))
            clock.now = max(clock.now, at)
        for customer, batch in by_customer.items():
            logic = logics.setdefault(customer, JourneyLogic(config, None))
            if logic.on_batch(batch)[1] is StatefulBatchLogic.DISCARD:
                del logics[customer]
        clock.now += 1_200_000
        for customer, logic in list(logics.items()):
            if logic.on_notify()[1] is StatefulBatchLogic.DISCARD:
                del logics[customer]
        if (n // 50) % 10 == 9:
            restart_gauge()
            snapshots = {c: logic.snapshot() for c, logic in logics.items()}
            if restarts % 2:
                snapshots = {
                    c: as_packed_by_050(s) if s.startswith(b"cj2") else s
                    for c, s in snapshots.items()
                }
            packed += sum(s.startswith((b"cj1", b"cj2")) for s in snapshots.values())
            logics = {c: JourneyLogic(config, s) for c, s in snapshots.items()}
            restarts += 1
        counts = [pending(logic) for logic in logics.values()]
        truth = (sum(s for s, _ in counts), sum(d for _, d in counts))
        assert gauge() == truth
        peak = (max(peak[0], truth[0]), max(peak[1], truth[1]))
    assert restarts > 5 and packed > 50 and peak[0] > 50 and peak[1] > 0, (restarts, packed, peak)
