"""Replay: the same dataflow over a JSON-lines file, with the clock driven by event time.

Output is byte-identical across runs: Bytewax hands a batch's outputs on in
key order, so the sink puts every record back in input order (the line that
caused it, then what the end of input fired, by due time) before writing.
"""

from __future__ import annotations

import gzip
import hashlib
import heapq
import itertools
import os
import pickle
import re
import shutil
import sys
import tempfile
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

from flows import measure
from flows.capacity import CAPACITY_TICK_MS, Answered, decode_answers
from flows.identity import IdentityConfig
from flows.journey import JourneyConfig, ZoneChanges
from flows.keys import with_keys
from flows.learner import MODELS_PART, decode_complete, with_population
from flows.metrics import count_bad_dates, count_ingested, type_labels
from flows.orchestrator import build_flow
from flows.progress import InputFrontier
from operators.context.dates import REASONS as DATE_REASONS
from operators.decisions.capacity import Answer
from operators.identity.alignment import Progress, alignment_time
from operators.identity.graph import PURGE_PREFIX, UNDO_PREFIX, DictStore
from operators.ingest import Ingestor, future_dead_letter
from operators.learning.population import Complete
from operators.model.encoding import (
    ACTIONS_PREFIX,
    AUDIT,
    DEAD_LETTERS,
    DECISIONS,
    GRANTS,
    MODELS,
    TRANSFERS,
    Order,
    OutRecord,
    decode_transfer,
)
from operators.model.handover import Transfer
from operators.model.records import DeadLetter, Event, Origin
from operators.model.timefmt import format_ms
from operators.policy.compiled import Policy

READ_BATCH = 2000
PROGRESS_EVERY_S = 5.0
SPILL_BYTES = 64 << 20
LOOP_POLL = timedelta(milliseconds=2)


@dataclass
class ReplayStats:
    """What a replay read and wrote: the numbers of ``summary.json``."""

    events_in: int = 0
    events_ok: int = 0
    dead_letters: int = 0
    late_events: int = 0
    """Events further behind the file's clock than ``allowed_lateness`` (kept or dead letters)."""
    actions: Counter[str] = field(default_factory=Counter)
    recent_sends: list[tuple[str, int]] = field(default_factory=list)
    """For each action sent: (its customer, the customer's actions in the 7 days up to it)."""
    decisions: Counter[str] = field(default_factory=Counter)
    audit: int = 0
    bad_dates: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Events that start a date signal without a usable date, by (signal, reason)."""
    last_event_at: int | None = None
    """The latest event time the file holds."""
    read_error: str | None = None
    """Why the file could not be read to its end (a damaged gzip stream), if it could not."""
    input_bytes: int = 0
    input_digest: Any = field(default_factory=hashlib.sha256)
    """Of every byte read (after decompression, for gzip): what ``diff`` tells two replays'
    inputs apart by."""
    gzip: bool = False

    def summary(self, policy: Policy) -> dict[str, Any]:
        return {
            "events_in": self.events_in,
            "events_ok": self.events_ok,
            "dead_letters": self.dead_letters,
            "late_events": self.late_events,
            "actions": dict(sorted(self.actions.items())),
            "decisions": dict(sorted(self.decisions.items())),
            "audit": self.audit,
            "policy_version": policy.version,
            "input": {
                "records": self.events_in,
                "bytes": self.input_bytes,
                "sha256": self.input_digest.hexdigest(),
                "gzip": self.gzip,
                "bytes_of": "decompressed" if self.gzip else "as read",
            },
        } | ({"bad_dates": self._bad_dates(policy)} if policy.date_signals else {})

    def _bad_dates(self, policy: Policy) -> dict[str, dict[str, int]]:
        """Per date signal, per reason (both at zero when all was well)."""
        return {
            signal.name: {reason: self.bad_dates[signal.name, reason] for reason in DATE_REASONS}
            for signal in policy.date_signals
        }


FILE_PART = "file"
"""The file is one input partition. It hands its events on in alignment order (time, then
event id), once it has read them all, saying after each batch how far it has got, so the
identity step resolves the whole file in that order (:mod:`operators.identity.alignment`)."""
SORT_BUFFER_EVENTS = 100_000
"""Events kept in memory while the file is read (about 2.6 KB each); beyond that, sorted
runs go to disk."""


class _EventSorter:
    """The file's events in alignment order: sorted runs of at most
    :data:`SORT_BUFFER_EVENTS`, spilled to disk (pickled) beyond the first, merged at the end."""

    def __init__(self, spill_dir: Path) -> None:
        self._dir = spill_dir
        self._buffer: list[tuple[int, str, int, Event]] = []
        self._runs: list[Path] = []
        self._count = 0

    def add(self, event: Event) -> None:
        self._count += 1
        self._buffer.append((alignment_time(event), event.event_id, self._count, event))
        if len(self._buffer) >= SORT_BUFFER_EVENTS:
            self._spill()

    def _spill(self) -> None:
        self._buffer.sort()
        fd, name = tempfile.mkstemp(prefix=".concierge-run-", dir=self._dir)
        with os.fdopen(fd, "wb") as run:
            for n in range(0, len(self._buffer), READ_BATCH):
                entries = self._buffer[n : n + READ_BATCH]
                chunk = [(*entry[:3], _flat(entry[3])) for entry in entries]
                pickle.dump(chunk, run, pickle.HIGHEST_PROTOCOL)
        self._runs.append(Path(name))
        self._buffer = []

    def sorted(self) -> Iterator[tuple[int, str, int, Event]]:
        """Every event added, in order; the runs on disk are removed once read."""
        self._buffer.sort()
        if not self._runs:
            yield from self._buffer
            return
        try:
            yield from heapq.merge(self._buffer, *(_read_run(run) for run in self._runs))
        finally:
            for run in self._runs:
                run.unlink(missing_ok=True)


def _read_run(path: Path) -> Iterator[tuple[int, str, int, Event]]:
    with path.open("rb") as run:
        while True:
            try:
                chunk = pickle.load(run)
            except EOFError:
                return
            for at, event_id, n, flat in chunk:
                yield at, event_id, n, _unflat(flat)


def _flat(event: Event) -> tuple[Any, ...]:
    """An event as plain values: pickled three times faster than the dataclasses."""
    o = event.origin
    return (
        event.event_id,
        event.type,
        event.time,
        event.identifiers,
        event.context,
        event.properties,
        (o.topic, o.partition, o.offset, o.file, o.line, o.key),
        event.received_at,
        event.watermark,
        event.rejected_identifiers,
        event.blocked_identifiers,
        event.late,
        event.profile_kinds,
        event.gained_kinds,
    )


def _unflat(flat: tuple[Any, ...]) -> Event:
    return Event(*flat[:6], Origin(*flat[6]), *flat[7:])  # type: ignore[misc]


STDIN = "-"
"""``--events -``: the events come on standard input."""
STDIN_NAME = "<stdin>"
"""What a dead letter's ``origin.file`` says of standard input."""
GZIP_MAGIC = b"\x1f\x8b"


def open_events(path: Path) -> IO[bytes]:
    """The events file for reading: standard input for ``-``, decompressed when it is
    gzip (by its first bytes, whatever its name)."""
    if str(path) == STDIN:
        return sys.stdin.buffer
    file = path.open("rb")
    if file.read(2) == GZIP_MAGIC:
        file.close()
        return gzip.open(path, "rb")
    file.seek(0)
    return file


class _FilePartition(StatefulSourcePartition[Event | DeadLetter | Progress, None]):
    def __init__(
        self,
        path: Path,
        file: IO[bytes],
        policy: Policy,
        frontier: InputFrontier,
        until: int | None,
        stats: ReplayStats,
        progress: Callable[[str], None] | None,
        spill_dir: Path,
    ) -> None:
        self._file = file
        self._sorter = _EventSorter(spill_dir)
        self._sorted: Iterator[tuple[int, str, int, Event]] | None = None
        self._handed_on = 0
        self._name = STDIN_NAME if str(path) == STDIN else str(path)
        self._ingestor = Ingestor(policy)
        self._known = type_labels(policy)
        self._dated = policy if policy.date_signals else None
        self._frontier = frontier
        self._until = until
        self._stats = stats
        self._line = 0
        self._done = False
        self._progress = progress
        self._started = time.monotonic()
        self._last_report = self._started
        self._size = None if str(path) == STDIN else path.stat().st_size
        """The file's bytes (compressed, for gzip): what the reading percentage is of."""
        self._deciding_since: float | None = None
        self._spill_dir = spill_dir
        self._ahead_file: IO[bytes] | None = None
        """The records accepted past the file's bound as it was then (which may move on to
        them, or not): ``.concierge-ahead-*`` under the spill directory."""
        self._ahead_at: list[tuple[int, int, int, int]] = []
        """Each of those records' time, line, and place in that file (offset, length)."""
        self._ahead: dict[int, DeadLetter] = {}
        """By line: the events found, once the file is read, stamped too far ahead of it."""
        self._end: int | None = None
        """The latest time of the events kept."""

    def next_batch(self) -> list[Event | DeadLetter | Progress]:
        if self._done:
            return self._next_sorted()
        batch: list[Event | DeadLetter | Progress] = []
        ingestor = self._ingestor
        ingest = ingestor.ingest
        name = self._name
        readline = self._file.readline
        digest = self._stats.input_digest.update
        read = 0
        for _ in range(READ_BATCH):
            try:
                raw = readline()
            except (OSError, EOFError, zlib.error) as err:
                self._stats.read_error = f"after line {self._line}: {err}"
                raw = b""
            if not raw:
                self._finish()
                break
            digest(raw)
            read += len(raw)
            self._line += 1
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            bound = ingestor.bound
            record = ingest(raw, Origin(file=name, line=self._line))
            batch.append(record)
            if type(record) is Event and (bound is None or record.time > bound):
                self._ahead_of_input(record.time, raw)
        ok = [r for r in batch if isinstance(r, Event)]
        bad = [r.reason.value for r in batch if isinstance(r, DeadLetter)]
        for event in ok:
            self._sorter.add(event)
        self._stats.input_bytes += read
        self._stats.events_in += len(batch)
        self._stats.events_ok += len(ok)
        self._stats.dead_letters += len(bad)
        self._stats.late_events += sum(1 for e in ok if e.late) + bad.count("late_event")
        count_ingested(ok, bad, self._known)
        if self._dated is not None:
            self._stats.bad_dates.update(count_bad_dates(self._dated, ok))
        self._report()
        return [r for r in batch if isinstance(r, DeadLetter)]

    def _next_sorted(self) -> list[Event | DeadLetter | Progress]:
        """The next batch of events in alignment order, then how far they go; at the end,
        that the file has ended."""
        if self._sorted is None:
            self._sorted = self._sorter.sorted()
        entries = list(itertools.islice(self._sorted, READ_BATCH))
        if not entries:
            if self._sorted is _ENDED:
                raise StopIteration
            self._sorted = _ENDED
            return [Progress(FILE_PART, self._end, caught_up=True, ended=True)]
        batch: list[Event | DeadLetter | Progress] = [entry[3] for entry in entries]
        until = entries[-1][0]
        if self._ahead and self._end is not None:  # they come last, in time order
            batch = [self._ahead.get(entry[3].origin.line or 0, entry[3]) for entry in entries]
            until = min(until, self._end)
        batch.append(Progress(FILE_PART, until, caught_up=False))
        self._handed_on += len(entries)
        self._report_handed_on(entries[-1][0])
        return batch

    def _report_handed_on(self, until: int) -> None:
        now = time.monotonic()
        if self._deciding_since is None:
            self._deciding_since = now
        if self._progress is None or now - self._last_report < PROGRESS_EVERY_S:
            return
        self._last_report = now
        total = self._stats.events_ok
        self._progress(
            f"replay: deciding {progress_text(self._handed_on, total, now - self._deciding_since)}"
            f" ({self._handed_on:,} of {total:,} events handed on in time order, up to "
            f"{format_ms(until)})"
        )

    def _finish(self) -> None:
        self._done = True
        self._find_ahead()
        until = self._until
        self._stats.last_event_at = self._end
        self._frontier.end_at = until if until is not None else self._end

    def _ahead_of_input(self, at: int, raw: bytes) -> None:
        """Keep a record accepted past the bound the file's events agreed on as it was read,
        for :meth:`_find_ahead`. A record within it never passes the clock, which never goes
        back, so the end of event time."""
        if self._ahead_file is None:
            self._ahead_file = tempfile.TemporaryFile(  # noqa: SIM115 (closed by _find_ahead)
                prefix=".concierge-ahead-", dir=self._spill_dir
            )
        self._ahead_at.append((at, self._line, self._ahead_file.tell(), len(raw)))
        self._ahead_file.write(raw)

    def _find_ahead(self) -> None:
        """Once the whole file is read: the events stamped past the bound its events agree
        on (:attr:`Ingestor.bound`) become dead letters (``future_timestamp``) instead of
        moving the end of event time, which is the latest time of those kept."""
        ingestor = self._ingestor
        bound, self._end = ingestor.bound, ingestor.clock
        if not ingestor.told_apart:  # too few to tell: the file's last event is its end
            bound = None
        if self._ahead_file is None:
            return
        file = self._ahead_file
        for at, line, offset, length in self._ahead_at:
            if bound is None or at <= bound:
                self._end = at if self._end is None else max(self._end, at)
                continue
            file.seek(offset)
            origin = Origin(file=self._name, line=line)
            self._ahead[line] = future_dead_letter(file.read(length), origin, at, bound)
        file.close()
        self._ahead_file, self._ahead_at = None, []
        self._stats.events_ok -= len(self._ahead)
        self._stats.dead_letters += len(self._ahead)

    def _report(self) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if now - self._last_report >= PROGRESS_EVERY_S or (self._done and now - self._started > 1):
            self._last_report = now
            elapsed = max(now - self._started, 1e-9)
            rate = self._stats.events_in / elapsed
            done = (
                ""
                if self._size is None
                else f"{progress_text(self._read_bytes(), self._size, elapsed)} "
            )
            self._progress(
                f"replay: reading {done}({self._line:,} lines read, "
                f"{self._stats.events_ok:,} events, {self._stats.dead_letters:,} dead letters, "
                f"{rate:,.0f} records/s)"
            )

    def _read_bytes(self) -> int:
        """How far into the file (its compressed bytes, for gzip) reading has got."""
        raw = getattr(self._file, "fileobj", None) or self._file
        try:
            return int(raw.tell())
        except (OSError, ValueError):
            return 0

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self._file.close()
        if self._ahead_file is not None:
            self._ahead_file.close()


_ENDED: Iterator[tuple[int, str, int, Event]] = iter(())


def progress_text(done: int, total: int, elapsed: float) -> str:
    """How far a phase has got, in one format: ``45%, about 12 s left``; rounded down, so
    ``100%`` (with no time left to tell) means all of it."""
    if total <= 0 or done >= total:
        return "100%"
    share = done / total
    if share <= 0:
        return "0%"
    left = elapsed * (1 - share) / share
    return f"{int(share * 100)}%, about {_duration_text(left)} left"


def _duration_text(seconds: float) -> str:
    if seconds < 1:
        return "1 s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    return (
        f"{minutes} min {rest:02d} s"
        if minutes < 60
        else f"{minutes // 60} h {minutes % 60:02d} min"
    )


@dataclass
class TransferLoop:
    """The way a merged profile's context comes back into the flow in replay: the sink
    puts transfers here and the source's second partition takes them out, until the
    identity step says every merge has its context in."""

    queue: deque[bytes] = field(default_factory=deque)
    frontier: InputFrontier = field(default_factory=InputFrontier)
    models: deque[bytes] | None = None
    """The learner's whole periods of the population model on their way back in."""
    grants: deque[bytes] | None = None
    """The capacity owner's answers on their way back in."""


Looped = TypeVar("Looped")


class _LoopPartition(StatefulSourcePartition[Looped, None]):
    """Takes what the sink put on ``queue`` back into the flow, ``decode`` making each
    record the items it stands for: merged contexts, or the learner's whole periods of the
    population model. It ends once the identity step says the input has drained."""

    def __init__(
        self, queue: deque[bytes], frontier: InputFrontier, decode: Callable[[bytes], list[Looped]]
    ) -> None:
        self._queue, self._frontier, self._decode = queue, frontier, decode
        self._awake: datetime | None = None

    def next_batch(self) -> list[Looped]:
        items = [item for value in _drain(self._queue) for item in self._decode(value)]
        if not items and self._frontier.drained:
            raise StopIteration
        self._awake = None if items else datetime.now(UTC) + LOOP_POLL
        return items

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> None:
        return None


def _transfers(value: bytes) -> list[Transfer]:
    return [decode_transfer(value)]


def _drain(queue: deque[bytes]) -> list[bytes]:
    items = []
    while queue:
        items.append(queue.popleft())
    return items


class ReplaySource(FixedPartitionedSource[Event | DeadLetter | Progress | Transfer, None]):
    """The lines of one JSON-lines file, ingested in order by one partition; and the
    transfers of merged contexts, which come back in through a second one."""

    def __init__(
        self,
        path: Path,
        file: IO[bytes],
        policy: Policy,
        until: int | None,
        stats: ReplayStats,
        loop: TransferLoop,
        spill_dir: Path,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self._args = (path, file, policy, loop.frontier, until, stats, progress, spill_dir)
        self._loop = loop

    def list_parts(self) -> list[str]:
        models = [MODELS_PART] if self._loop.models is not None else []
        grants = [GRANTS] if self._loop.grants is not None else []
        return [FILE_PART, "transfers", *models, *grants]

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> (
        _FilePartition
        | _LoopPartition[Transfer]
        | _LoopPartition[Complete | Progress]
        | _LoopPartition[Answer | Answered]
    ):
        loop = self._loop
        if for_part == "transfers":
            return _LoopPartition(loop.queue, loop.frontier, _transfers)
        if for_part == GRANTS:
            assert loop.grants is not None
            return _LoopPartition(loop.grants, loop.frontier, decode_answers)
        if for_part == MODELS_PART:
            assert loop.models is not None
            return _LoopPartition(loop.models, loop.frontier, decode_complete)
        return _FilePartition(*self._args)


class _SortedFile:
    """A JSON-lines file written in replay order, spilling sorted runs to disk when large."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._lines: list[bytes] = []
        self._bytes = 0
        self._runs: list[Path] = []

    def add(self, order: Order, value: bytes) -> None:
        phase, at, customer, n = order
        self._lines.append(b"%d%020d%s\x00%06d\t%s\n" % (phase, at, customer.encode(), n, value))
        self._bytes += len(value) + 40
        self.count += 1
        if self._bytes > SPILL_BYTES:
            self._spill()

    def _spill(self) -> None:
        self._lines.sort()
        fd, name = tempfile.mkstemp(prefix=".concierge-run-", dir=self.path.parent)
        with os.fdopen(fd, "wb") as run:
            run.writelines(self._lines)
        self._runs.append(Path(name))
        self._lines = []
        self._bytes = 0

    def close(self) -> None:
        self._lines.sort()
        runs = [run.open("rb") for run in self._runs]
        try:
            merged: Iterator[bytes] = heapq.merge(self._lines, *runs) if runs else iter(self._lines)
            with self.path.open("wb") as out:
                out.writelines(line[line.index(b"\t") + 1 :] for line in merged)
        finally:
            for handle, run in zip(runs, self._runs, strict=True):
                handle.close()
                run.unlink()


class _ReplayWriter(StatelessSinkPartition[OutRecord]):
    def __init__(self, out_dir: Path, stats: ReplayStats, loop: TransferLoop) -> None:
        self._out_dir = out_dir
        self._stats = stats
        self._loop = loop
        self._files: dict[str, _SortedFile] = {
            stream: _SortedFile(out_dir / f"{stream}.jsonl")
            for stream in (DECISIONS, DEAD_LETTERS, AUDIT)
        }

    def write_batch(self, items: list[OutRecord]) -> None:
        files = self._files
        for record in items:
            if record.stream == TRANSFERS:
                self._loop.queue.append(record.value)
                continue
            if record.stream == MODELS:
                assert self._loop.models is not None
                self._loop.models.append(record.value)
                continue
            if record.stream == GRANTS:
                assert self._loop.grants is not None
                self._loop.grants.append(record.value)
                continue
            sink = files.get(record.stream)
            if sink is None:
                sink = files[record.stream] = _SortedFile(self._out_dir / f"{record.stream}.jsonl")
            sink.add(record.order, record.value)
            if record.stream == DECISIONS:
                self._stats.decisions[record.tag] += 1
            elif record.stream.startswith(ACTIONS_PREFIX):
                self._stats.recent_sends.append((record.key.decode(), record.recent_sends))

    def close(self) -> None:
        for stream, sink in self._files.items():
            sink.close()
            if stream.startswith(ACTIONS_PREFIX):
                self._stats.actions[stream[len(ACTIONS_PREFIX) :]] = sink.count
            elif stream == AUDIT:
                self._stats.audit = sink.count


class ReplaySink(DynamicSink[OutRecord]):
    """Writes each stream to ``<stream>.jsonl`` in the output directory."""

    def __init__(self, out_dir: Path, stats: ReplayStats, loop: TransferLoop) -> None:
        self._out_dir = out_dir
        self._stats = stats
        self._loop = loop

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ReplayWriter:
        return _ReplayWriter(self._out_dir, self._stats, self._loop)


OUTPUT_FILES = (
    "decisions.jsonl",
    "dlq.jsonl",
    "audit.jsonl",
    "conversions.jsonl",
    "trials.jsonl",
    "summary.json",
    "policy.json",
    "timezones.json",
    "report.html",  # concierge report's default page: about the replay this one replaces
)
IDENTITY_DIR = "identity"
"""Where replay keeps its identity graph (RocksDB, as under ``run``'s ``--state-dir``)."""


def outputs_in(out_dir: Path) -> list[Path]:
    """What replay writes, replaces or removes in ``out_dir`` (those there now)."""
    found = [*out_dir.glob("actions.*.jsonl"), *out_dir.glob(".concierge-run-*")]
    found += [out_dir / name for name in (*OUTPUT_FILES, IDENTITY_DIR)]
    return [path for path in found if path.exists() or path.is_symlink()]


def _clear_outputs(out_dir: Path) -> None:
    """Remove what an earlier replay wrote here, so no stale channel file survives."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("actions.*.jsonl"):
        old.unlink()
    for name in OUTPUT_FILES:
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / IDENTITY_DIR, ignore_errors=True)
    for run in out_dir.glob(".concierge-run-*"):
        run.unlink() if run.is_file() else shutil.rmtree(run)


def replay(
    policy: Policy,
    events: Path,
    out_dir: Path,
    until: int | None = None,
    progress: Callable[[str], None] | None = None,
    barrier_every: int | None = None,
    acks: list[Any] | None = None,
) -> dict[str, Any]:
    """Run the dataflow over ``events`` and write its outputs and summary into ``out_dir``.

    ``barrier_every``: the journey barrier's period (see :mod:`flows.barrier`), its answers
    into ``acks``.

    Action ids are signed with the action key and identifiers digested with the identity key
    (see :mod:`flows.keys`), as in Kafka mode.
    """
    policy, _ = with_keys(policy)
    policy = with_population(policy)
    population = policy.learning.population if policy.learning is not None else None
    if policy.capacity is not None:
        barrier_every = CAPACITY_TICK_MS
    elif population is not None and barrier_every is None:
        barrier_every = population.every
    file = open_events(events)  # before anything here is cleared: it may fail
    _clear_outputs(out_dir)
    stats = ReplayStats(gzip=isinstance(file, gzip.GzipFile))
    loop = TransferLoop(
        models=deque() if population is not None else None,
        grants=deque() if policy.capacity is not None else None,
    )
    left: Counter[tuple[str, str]] = Counter()
    zones: ZoneChanges = {}
    config = JourneyConfig(
        policy,
        wall_clock_timers=False,
        frontier=loop.frontier,
        left_pending=left,
        zones=zones,
        barrier=barrier_every is not None,
        acks=acks,
    )
    graphs: list[DictStore] = []
    identity = IdentityConfig(
        policy.identifier_rules,
        lambda: _opened(graphs),
        [FILE_PART, MODELS_PART] if population is not None else [FILE_PART],
        key=policy.identity_key,
        frontier=loop.frontier,
        barrier_every=barrier_every,
        capacity=policy.capacity is not None,
    )
    source = ReplaySource(events, file, policy, until, stats, loop, out_dir, progress)
    flow = build_flow(config, identity, source, ReplaySink(out_dir, stats, loop))
    run_main(flow, epoch_interval=timedelta(hours=1))
    summary = stats.summary(policy)
    summary["fatigue"] = measure.fatigue(stats.recent_sends, out_dir / "audit.jsonl")
    summary["pending_at_end"] = _pending_at_end(loop.frontier.end_at, stats, left)
    if stats.read_error is not None:
        summary["read_error"] = stats.read_error
    if policy.conversions_by_type:
        (out_dir / "conversions.jsonl").touch()
        by_decision, by_customer = measure.conversions(out_dir, policy)
        summary["conversions"] = by_decision
        summary["lift"] = measure.lift_by_action(by_customer)
    if policy.learning is not None:
        (out_dir / "trials.jsonl").touch()
        summary["learning"] = measure.learning(out_dir)
    _keep_graph(graphs, out_dir / IDENTITY_DIR)
    _write_json(out_dir / "policy.json", policy.document, readable_as_yaml=True)
    _write_json(
        out_dir / "timezones.json",
        {
            "default": policy.default_timezone,
            "customers": _zone_records(zones, policy.default_timezone),
        },
    )
    _write_json(out_dir / "summary.json", summary)
    return summary


def _write_json(path: Path, value: Any, readable_as_yaml: bool = False) -> None:
    text = orjson.dumps(
        value, default=_plain, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
    )
    if readable_as_yaml:  # the policy is read back with the YAML loader (explain, report)
        text = _NOT_YAML.sub(lambda c: f"\\u{ord(c.group()):04x}", text.decode()).encode()
    path.write_bytes(text)


_NOT_YAML = re.compile("[\x7f-\x84\x86-\x9f\ufffe\uffff]")
"""Characters JSON takes as they are and YAML does not (DEL, C1 controls, two
non-characters): written as escapes, which both read alike. Inside a string only, as a
policy can have them nowhere else."""


def _plain(value: Any) -> Any:
    """A read-only mapping of the compiled policy's document, as JSON takes it."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _opened(graphs: list[DictStore]) -> DictStore:
    graphs.append(DictStore())
    return graphs[-1]


def _keep_graph(graphs: list[DictStore], path: Path) -> None:
    """Write the replay's identity graph to ``path`` (RocksDB, as ``run`` keeps it), for
    ``concierge explain`` and ``concierge identity``; undo records left out (nothing
    rolls a finished replay back: an erased profile's last copy is in them)."""
    from flows.identity_store import RocksStore

    with RocksStore(path) as store:
        for graph in graphs:
            batch: dict[bytes, bytes | None] = {}
            for key, value in graph.data.items():
                if key.startswith((UNDO_PREFIX, PURGE_PREFIX)):
                    continue
                batch[key] = value
                if len(batch) >= 10_000:
                    store.write(batch)
                    batch = {}
            store.write(batch)


def _zone_records(zones: ZoneChanges, default: str) -> dict[str, list[list[str]]]:
    """The time zones customers were decided about in, each from when, for the customers
    ever decided about outside ``default`` (any other was always in it)."""
    return {
        customer: [[format_ms(at), zone] for at, zone in changes]
        for customer, changes in sorted(zones.items())
        if any(zone != default for _, zone in changes)
    }


def _pending_at_end(
    end: int | None, stats: ReplayStats, left: Counter[tuple[str, str]]
) -> dict[str, Any]:
    """What the replay did not do: the end of event time (``--until``, else the last event),
    the last event, and per kind the customers whose timers (by signal) or decisions
    waiting for quiet hours or a cap (by moment) were still pending then; with learning, the
    trials (by action) whose window had not closed."""
    pending = {
        "at": format_ms(end) if end is not None else None,
        "last_event": format_ms(stats.last_event_at) if stats.last_event_at is not None else None,
        "timers": {name: n for (kind, name), n in sorted(left.items()) if kind == "timer"},
        "decisions": {name: n for (kind, name), n in sorted(left.items()) if kind == "decision"},
    }
    trials = {name: n for (kind, name), n in sorted(left.items()) if kind == "trial"}
    if trials:
        pending["trials"] = trials
    return pending


def stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
