"""Event-time order across input partitions, for the identity step.

Producers key events by the identifier they know (the web by anonymous id, the till by
loyalty card), so one person's events are spread over partitions, read at different
speeds. Which profile survives a merge, and so what is decided, must not depend on how
those partitions interleave. So the identity step resolves events in **alignment order**:
by event time, then event id (second-resolution timestamps collide often), as replay,
which sees the whole file at once, orders it.

An event waits in the :class:`Aligner` until every input partition has read past its
time (a later timestamp), has ended, or has been caught up (read to its end) while the
event waited ``max_idle`` (the approach of Kafka Streams' ``max.task.idle.ms``): a quiet
partition delays the others by at most that. A partition still reading a backlog is
waited for, however long. An event that arrives after later ones were released (more
than ``max_idle`` behind the others, or out of order within its partition) is released
at once, as of the latest time released: replay would have put it in its place.

A late event (more than ``allowed_lateness`` behind its partition's clock when read) is
ordered at that clock, where it was read, not at its old timestamp.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from operators.model.fast_init import fast_init
from operators.model.records import Event

NEVER = -(2**62)
FOREVER = 2**62


@fast_init
@dataclass(frozen=True, slots=True)
class Progress:
    """How far one input partition has read; the source sends it after its events."""

    part: str
    clock: int | None
    """The latest event time accepted on the partition (None: nothing yet)."""
    caught_up: bool
    """Read to its end, for now."""
    ended: bool = False
    """It sends nothing more (the end of a file, or ``--stop-at-end``)."""


STALE_AFTER_MS = 2_000
"""A caught-up partition that has said nothing for this long (its process stalled or
gone) is waited for again: its silence is not news that nothing came."""


@dataclass(slots=True)
class _Partition:
    clock: int | None = None
    caught_up_since: int | None = None
    """Wall-clock ms since when it has been caught up; None while it reads."""
    heard_at: int = 0
    """Wall-clock ms of its latest mark (sources repeat an unchanged one every few 100 ms)."""
    ended: bool = False

    def quiet_since(self, now: int) -> int | None:
        """Since when it has been caught up and heard from, if it is now."""
        if self.caught_up_since is None or self.heard_at < now - STALE_AFTER_MS:
            return None
        return self.caught_up_since


def alignment_time(event: Event) -> int:
    """Where an event goes in alignment order: its time, or where it was read if late."""
    return max(event.time, event.watermark) if event.late else event.time


class Aligner:
    """Holds events until every input partition has read past them, then releases them in
    (time, event id) order, each with ``watermark`` set to the latest time released."""

    def __init__(self, parts: Iterable[str], max_idle_ms: int) -> None:
        self._parts = {part: _Partition() for part in parts}
        self._max_idle = max_idle_ms
        self._heap: list[tuple[int, str, int, int, Event]] = []
        """(time, event id, arrival number, arrival wall ms, event)."""
        self._arrivals = 0
        self.released_until = NEVER
        """The latest alignment time released so far."""
        self._behind = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, event: Event, now: int) -> None:
        """Take ``event`` in (``now``: the wall clock, ms)."""
        self._arrivals += 1
        entry = (alignment_time(event), event.event_id, self._arrivals, now, event)
        heapq.heappush(self._heap, entry)

    def progress(self, mark: Progress, now: int) -> None:
        """Note how far a partition has read. A partition not named at the start (a topic
        that grew) is waited for from its first mark on."""
        part = self._parts.get(mark.part)
        if part is None:
            part = self._parts[mark.part] = _Partition()
        if mark.clock is not None and (part.clock is None or mark.clock > part.clock):
            part.clock = mark.clock
        if not mark.caught_up:
            part.caught_up_since = None
        elif part.caught_up_since is None:
            part.caught_up_since = now
        part.ended = part.ended or mark.ended
        part.heard_at = max(part.heard_at, now)

    @property
    def ended(self) -> bool:
        """Every partition has ended."""
        return all(part.ended for part in self._parts.values())

    def clock_of(self, name: str) -> int | None:
        """How far partition ``name`` has read (None: nothing yet, or no such partition)."""
        part = self._parts.get(name)
        return None if part is None else part.clock

    def ended_but(self, name: str) -> bool:
        """Every partition but ``name`` has ended (and ``name`` is one)."""
        return name in self._parts and all(
            part.ended for other, part in self._parts.items() if other != name
        )

    def release(self, now: int) -> list[Event]:
        """The events that may go on now, in alignment order."""
        waiting, reading = self._bounds(now)
        idle_before = now - self._max_idle
        out: list[Event] = []
        heap = self._heap
        while heap:
            at, _, _, arrived, event = heap[0]
            if not (at < waiting or (at < reading and arrived <= idle_before)):
                break
            heapq.heappop(heap)
            if at > self.released_until:
                self.released_until = at
            elif at < self.released_until:
                self._behind += 1
            if event.watermark != self.released_until:
                event = event.with_watermark(self.released_until)
            out.append(event)
        return out

    def take_behind(self) -> int:
        """How many events were released behind later ones since the last call."""
        behind, self._behind = self._behind, 0
        return behind

    def _bounds(self, now: int) -> tuple[int, int]:
        """Released below the first: every partition that has not ended has read past it.
        Released below the second once an event has waited ``max_idle``: the partitions
        that are not idle (caught up that long) have read past it."""
        waiting = reading = FOREVER
        idle_before = now - self._max_idle
        for part in self._parts.values():
            if part.ended:
                continue
            clock = NEVER if part.clock is None else part.clock
            waiting = min(waiting, clock)
            quiet_since = part.quiet_since(now)
            if quiet_since is None or quiet_since > idle_before:
                reading = min(reading, clock)
        return waiting, reading

    def next_release(self, now: int) -> int | None:
        """The wall-clock time (ms) at which the first waiting event may be released for a
        quiet partition, if nothing arrives before; None if it waits for input instead."""
        if not self._heap:
            return None
        at, _, _, arrived, _ = self._heap[0]
        latest = arrived
        for part in self._parts.values():
            if part.ended or (part.clock is not None and part.clock > at):
                continue
            quiet_since = part.quiet_since(now)
            if quiet_since is None:
                return None
            latest = max(latest, quiet_since)
        return latest + self._max_idle

    def settled(self, now: int, leave_out: str | None = None) -> int:
        """Every event the input will give with an alignment time before this has been
        released, as far as can be told at ``now`` (wall clock, ms): what timers may fire
        up to (exclusive). A partition still reading (or silent too long) holds it at its
        clock; a caught-up one at ``now - max_idle`` (what is produced later is
        timestamped later). ``leave_out``: a partition that gives no events (the population
        model's), whose clock holds back only what is released."""
        bound = self._heap[0][0] if self._heap else FOREVER
        for name, part in self._parts.items():
            if part.ended or name == leave_out:
                continue
            if part.quiet_since(now) is None:
                bound = min(bound, NEVER if part.clock is None else part.clock)
            else:
                bound = min(bound, now - self._max_idle)
        return bound

    def snapshot(self) -> tuple[list[Event], dict[str, tuple[int | None, bool]], int]:
        """What the recovery snapshot keeps: the waiting events in order, each partition's
        clock and end, and the latest time released (idle timings start again). A restore
        reads the ends of releases before 0.8.0 and leaves them out: see :meth:`restore`."""
        events = [entry[4] for entry in sorted(self._heap)]
        parts = {name: (part.clock, part.ended) for name, part in self._parts.items()}
        return events, parts, self.released_until

    @classmethod
    def restore(
        cls,
        snapshot: tuple[list[Event], dict[str, tuple[int | None, bool]], int],
        parts: Iterable[str],
        max_idle_ms: int,
        now: int,
        unclocked: Iterable[str] = (),
    ) -> Aligner:
        """The aligner of ``snapshot``, for a run that reads ``parts``: a partition the run
        before read and this one does not is left out (it would be waited for forever),
        and one of ``unclocked`` starts again from nothing (how far it had got was a
        promise about what that run's processes held)."""
        events, marks, released_until = snapshot
        parts = list(parts)
        aligner = cls(parts, max_idle_ms)
        for name, (clock, _) in marks.items():
            if name not in parts or name in unclocked:
                continue
            # A partition that ended in the run before (``--stop-at-end``) is read again by
            # this one, and whether it ends is this run's to say: restored as ended, it would
            # never be waited for again, and input written since would be resolved in the
            # order it is read rather than in event time.
            aligner.progress(Progress(name, clock, caught_up=False, ended=False), now)
        for event in events:
            aligner.add(event, now)
        aligner.released_until = released_until
        return aligner
