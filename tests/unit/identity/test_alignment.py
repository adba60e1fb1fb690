"""Event-time order across input partitions (operators/identity/alignment.py)."""

import dataclasses

from operators.identity.alignment import Aligner, Progress
from operators.model.timefmt import parse_ms
from tests.conftest import make_event

IDLE = 500


def at(second):
    return f"2026-11-20T10:00:{second:02d}Z"


def event(second, event_id, late=False):
    e = make_event("product_view", at(second), event_id=event_id)
    return dataclasses.replace(e, watermark=e.time, late=late)


def read(aligner, part, *events, now=0, caught_up=False):
    for e in events:
        aligner.add(e, now)
    clock = max(e.time for e in events) if events else None
    aligner.progress(Progress(part, clock, caught_up), now)


def ids(events):
    return [e.event_id for e in events]


def test_an_event_waits_until_every_partition_has_read_past_it():
    aligner = Aligner(["a", "b"], IDLE)
    read(aligner, "a", event(1, "a1"), event(5, "a5"))
    assert aligner.release(0) == [], "b has read nothing yet"
    read(aligner, "b", event(3, "b3"))
    assert ids(aligner.release(0)) == ["a1"]
    read(aligner, "b", event(6, "b6"))
    assert ids(aligner.release(0)) == ["b3"], "a may still give more of second 5"
    read(aligner, "a", event(7, "a7"))
    assert ids(aligner.release(0)) == ["a5"]


def test_events_of_the_same_second_go_in_event_id_order_once_both_partitions_pass_it():
    aligner = Aligner(["a", "b"], IDLE)
    read(aligner, "a", event(1, "z"))
    read(aligner, "b", event(1, "m"))
    assert aligner.release(0) == [], "either partition may still give more of second 1"
    read(aligner, "a", event(2, "a2"))
    read(aligner, "b", event(2, "b2"))
    assert ids(aligner.release(0)) == ["m", "z"]


def test_a_quiet_partition_holds_the_others_back_for_max_idle_only():
    aligner = Aligner(["a", "b"], IDLE)
    read(aligner, "b", now=0, caught_up=True)
    read(aligner, "a", event(1, "a1"), event(2, "a2"), now=1_000)
    assert aligner.release(1_000 + IDLE - 1) == []
    assert aligner.next_release(1_000) == 1_000 + IDLE
    assert ids(aligner.release(1_000 + IDLE)) == ["a1"], "a's own latest second may grow"


def test_a_partition_reading_a_backlog_is_waited_for_however_long():
    aligner = Aligner(["a", "b"], IDLE)
    read(aligner, "b", event(0, "b0"), event(1, "b1"), now=0, caught_up=False)
    read(aligner, "a", event(5, "a5"), event(6, "a6"), now=0)
    assert ids(aligner.release(10**9)) == ["b0"]
    assert aligner.release(10**12) == [] and aligner.next_release(10**12) is None


def test_a_partition_that_never_reported_is_waited_for():
    aligner = Aligner(["a", "b"], IDLE)
    read(aligner, "a", event(1, "a1"), event(2, "a2"), caught_up=True)
    assert aligner.release(10**9) == []


def test_once_every_partition_has_ended_everything_goes_in_order():
    aligner = Aligner(["file"], IDLE)
    for e in (event(9, "x"), event(2, "y"), event(2, "b"), event(5, "c")):
        aligner.add(e, 0)  # replay's file says how far it has read only at its end
    assert aligner.release(10**9) == []
    aligner.progress(Progress("file", None, caught_up=True, ended=True), 0)
    assert aligner.ended
    assert ids(aligner.release(0)) == ["b", "y", "c", "x"]


def test_an_event_behind_what_was_released_goes_at_once_as_of_the_latest_time_released():
    aligner = Aligner(["a", "b"], IDLE)
    read(aligner, "a", event(5, "a5"), event(8, "a8"))
    read(aligner, "b", event(7, "b7"))
    assert ids(aligner.release(0)) == ["a5"]
    read(aligner, "b", event(3, "b3"))
    (behind,) = aligner.release(0)
    assert behind.event_id == "b3" and behind.time == parse_ms(at(3))
    assert behind.watermark == parse_ms(at(5)), "timers due before 5 fired already"


def test_a_late_event_is_ordered_where_it_was_read():
    aligner = Aligner(["a", "b"], IDLE)
    late = dataclasses.replace(event(1, "late"), watermark=parse_ms(at(6)), late=True)
    read(aligner, "a", event(4, "a4"), event(6, "a6"))
    aligner.add(late, 0)
    read(aligner, "b", event(9, "b9"))
    assert ids(aligner.release(0)) == ["a4"], "the late event waits at 6, behind a4"


def test_settled_is_what_timers_may_fire_before():
    now = 10**15
    aligner = Aligner(["a", "b"], IDLE)
    read(aligner, "a", event(1, "a1"), event(5, "a5"))
    read(aligner, "b", event(3, "b3"), now=0, caught_up=True)
    aligner.progress(Progress("b", None, caught_up=True), now)  # b says so again
    assert ids(aligner.release(now)) == ["a1", "b3"], "b is quiet"
    assert aligner.settled(now) == parse_ms(at(5)), "a5 waits; a reads on"
    read(aligner, "a", event(9, "a9"))
    assert ids(aligner.release(now)) == ["a5"]
    assert aligner.settled(now) == parse_ms(at(9))
    aligner.progress(Progress("a", None, caught_up=True), now)
    assert aligner.settled(now) == parse_ms(at(9)), "a9 waits to be released"
    assert ids(aligner.release(now + IDLE)) == ["a9"]
    assert aligner.settled(now + IDLE) == now, "both quiet: what comes later is newer"


def test_a_snapshot_keeps_the_waiting_events_and_the_partitions_clocks():
    aligner = Aligner(["a", "b"], IDLE)
    read(aligner, "a", event(4, "a4"), event(6, "a6"))
    read(aligner, "b", event(5, "b5"))
    assert ids(aligner.release(0)) == ["a4"]
    restored = Aligner.restore(aligner.snapshot(), ["a", "b"], IDLE, now=0)
    assert len(restored) == 2 and restored.released_until == aligner.released_until
    read(restored, "b", event(7, "b7"))
    assert ids(restored.release(0)) == ["b5"]


def test_partitions_that_ended_in_the_run_before_are_waited_for_again_after_a_restore():
    """``run --stop-at-end`` stops with every partition ended; the run that resumes from its
    snapshot reads input written since, which must still go in event-time order."""
    aligner = Aligner(["a", "b"], IDLE)
    read(aligner, "a", event(1, "a1"))
    read(aligner, "b", event(2, "b2"))
    for part in ("a", "b"):
        aligner.progress(Progress(part, None, caught_up=True, ended=True), 0)
    assert ids(aligner.release(0)) == ["a1", "b2"] and aligner.ended
    restored = Aligner.restore(aligner.snapshot(), ["a", "b"], IDLE, now=0)
    assert not restored.ended
    read(restored, "a", event(5, "a5"), event(9, "a9"))
    assert restored.release(0) == [], "b has not read past 5 in this run yet"
    read(restored, "b", event(6, "b6"))
    assert ids(restored.release(0)) == ["a5"]


def test_a_restore_forgets_partitions_this_run_does_not_read_and_the_unclocked_ones_clocks():
    """A partition the run before read and this one does not (the population model's, once
    a policy drops it) would hold every event forever; an unclocked one (the population
    model's, whose versions a starting process has not read yet) is waited for afresh."""
    aligner = Aligner(["a", "models"], IDLE)
    read(aligner, "a", event(1, "a1"), event(2, "a2"))
    aligner.progress(Progress("models", parse_ms(at(30)), caught_up=False), 0)
    assert ids(aligner.release(0)) == ["a1"]
    dropped = Aligner.restore(aligner.snapshot(), ["a"], IDLE, now=0)
    read(dropped, "a", event(40, "a40"), event(41, "a41"))
    assert ids(dropped.release(0)) == ["a2", "a40"] and dropped.clock_of("models") is None
    again = Aligner.restore(aligner.snapshot(), ["a", "models"], IDLE, 0, unclocked=["models"])
    read(again, "a", event(5, "a5"), event(9, "a9"))
    assert again.release(0) == [], "the models partition has not said how far it is again"
    again.progress(Progress("models", parse_ms(at(30)), caught_up=False), 0)
    assert ids(again.release(0)) == ["a2", "a5"]


def test_a_caught_up_partition_that_falls_silent_is_waited_for_again():
    """Its process stalled: that it said it was caught up is old news."""
    from operators.identity.alignment import STALE_AFTER_MS

    aligner = Aligner(["a", "b"], IDLE)
    read(aligner, "b", event(2, "b2"), now=0, caught_up=True)
    read(aligner, "a", event(1, "a1"), event(3, "a3"), now=0)
    assert ids(aligner.release(IDLE)) == ["a1", "b2"]
    read(aligner, "a", event(4, "a4"), now=STALE_AFTER_MS + 1)
    assert aligner.release(STALE_AFTER_MS + IDLE + 1) == [], "b has not been heard from"
    assert aligner.settled(10**15) == parse_ms(at(2))
    read(aligner, "b", now=STALE_AFTER_MS + 2, caught_up=True)
    assert ids(aligner.release(STALE_AFTER_MS + IDLE + 2)) == ["a3"]


def test_a_released_event_differs_from_the_one_read_only_in_its_watermark():
    read_in = dataclasses.replace(event(3, "e1", late=True), rejected_identifiers=(("phone", "x"),))
    released = read_in.with_watermark(read_in.time + 7)
    assert released == dataclasses.replace(read_in, watermark=read_in.time + 7)
