"""This process's recovery partitions: when a snapshot was last committed, whether one is
damaged, what a killed run left of an epoch it did not finish, and the forgotten customers'
entries that must leave them.

Bytewax closes an epoch every ``--snapshot-interval``: each worker writes the state of what
changed and its input offsets into its recovery partition (``part-N.sqlite3``), then records
the epoch in the partition's ``commits`` table. A committed epoch is what a restart resumes
from, so the time since the commit last moved is how much a crash now would replay.

The partitions are SQLite databases that Bytewax opens with the SQLite compiled into its
extension. Python's ``sqlite3`` is a second copy of SQLite, and two copies must never have
one database open in one process: POSIX advisory locks belong to the process, so closing
one copy's connection drops the other's locks, and the write-ahead log's index is then
rewritten under a writer that still maps it (SIGBUS, or "database disk image is
malformed"). So, while the dataflow runs, the commits are read by a child process, whose
locks are its own; the check and the clean-ups, which this process does itself, run only
while no dataflow of this process has the files open (see :func:`check_partitions`,
:func:`drop_unfinished` and :func:`purge_forgotten`).
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("concierge.snapshots")

POLL_S = 0.5
"""How often the commits are read: the age is right to within this."""


def partition_paths(directory: Path, parts: Iterable[int]) -> list[Path]:
    return [directory / f"part-{n}.sqlite3" for n in parts]


class SnapshotWatch:
    """Follows the committed epoch of this process's recovery partitions (the lowest of
    them: a restart resumes from the epoch every partition has committed), as a child
    process reads it (:func:`follow_commits`)."""

    def __init__(
        self, directory: Path, parts: range, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._paths = partition_paths(directory, parts)
        self._clock = clock
        self._started = clock()
        self._epoch: int | None = None
        """The epoch committed when this process started (None: none yet)."""
        self._baseline = False
        """Whether the first reading, which gives that epoch, has come."""
        self._moved_at: float | None = None
        """When (``clock``) the committed epoch last moved in this process's run."""
        self._reader: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None

    def observe(self, epoch: int | None) -> None:
        """A reading of the committed epoch (None: none yet, or unreadable just now). The
        first one is what the last run left: only a later move is a snapshot of this run."""
        if not self._baseline:
            self._baseline, self._epoch = True, epoch
        elif epoch is not None and (self._epoch is None or epoch > self._epoch):
            self._epoch = epoch
            self._moved_at = self._clock()

    def age(self) -> float:
        """Seconds since a snapshot was last committed; until the first of this run, since
        the process started watching (the one before is at least that old)."""
        since = self._moved_at if self._moved_at is not None else self._started
        return max(self._clock() - since, 0.0)

    def committed(self) -> bool:
        """Whether a snapshot has been committed since this process started: its dataflow
        runs, every worker of the cluster with it."""
        return self._moved_at is not None

    def start(self) -> SnapshotWatch:
        """Start the child that reads the commits, and a thread that takes its readings."""
        self._reader = subprocess.Popen(
            [sys.executable, "-m", "flows.kafka.snapshots", *map(str, self._paths)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._thread = threading.Thread(target=self._take_readings, name="snapshots", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the child: closing its standard input is its signal to go."""
        reader, self._reader = self._reader, None
        if reader is None:
            return
        assert reader.stdin is not None
        reader.stdin.close()
        try:
            reader.wait(2)
        except subprocess.TimeoutExpired:
            reader.kill()
            reader.wait()
        if self._thread is not None:
            self._thread.join(2)

    def _take_readings(self) -> None:
        reader = self._reader
        assert reader is not None and reader.stdout is not None
        for line in reader.stdout:
            text = line.strip()
            self.observe(int(text) if text.isdigit() else None)
        if self._reader is reader:  # it went by itself: the age grows until a restart
            log.warning(
                "the snapshot watch stopped (exit %s): concierge_snapshot_age_seconds now "
                "only grows",
                reader.wait(),
            )


def committed_epoch(paths: list[Path]) -> int | None:
    """The lowest epoch committed in ``paths``; None while one has none or is unreadable.
    Never call it in a process whose dataflow has these files open (the module's note)."""
    epochs = []
    for path in paths:
        if not path.is_file():
            return None
        try:
            # Read-only, and a short transaction each time: Bytewax's writes (WAL mode)
            # are neither blocked nor held back from checkpointing.
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as db:
                row = db.execute("SELECT MIN(commit_epoch) FROM commits").fetchone()
        except sqlite3.Error:
            return None  # busy, or not made yet: read again next time
        if row is None or row[0] is None:
            return None
        epochs.append(int(row[0]))
    return min(epochs) if epochs else None


def follow_commits(paths: list[Path], every: float = POLL_S) -> None:
    """The child's work: write the committed epoch (``-`` for none) on a line of its own
    when it changes, until standard input closes (its parent stopped, or died)."""
    for sent_to_all in (signal.SIGINT, signal.SIGTERM):  # a terminal's Ctrl-C, a service
        signal.signal(sent_to_all, signal.SIG_IGN)  # manager's stop: the parent stops us
    gone = threading.Event()

    def watch_parent() -> None:
        sys.stdin.buffer.read()
        gone.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    last: object = object()
    try:
        while True:
            epoch = committed_epoch(paths)
            if epoch != last:
                sys.stdout.write(f"{'-' if epoch is None else epoch}\n")
                sys.stdout.flush()
                last = epoch
            if gone.wait(every):
                return
    except BrokenPipeError:
        os._exit(0)  # the parent went while we wrote


@dataclass(frozen=True, slots=True)
class Damage:
    """A recovery partition SQLite cannot read whole."""

    path: Path
    problem: str


def check_partitions(directory: Path, parts: Iterable[int]) -> list[Damage]:
    """SQLite's ``quick_check`` of each of this process's partitions that exists.

    Only before this process's dataflow starts (the module's note): :mod:`flows.kafka.run` calls
    it before ``cli_main``, and nothing of Bytewax's in this process has opened a partition
    by then (``init_db_dir``, which has, closed them).
    """
    found = []
    for path in partition_paths(directory, parts):
        if not path.is_file():
            continue
        try:
            with closing(sqlite3.connect(path, isolation_level=None)) as db:
                rows = [row[0] for row in db.execute("PRAGMA quick_check")]
        except sqlite3.Error as err:
            rows = [str(err)]
        if rows != ["ok"]:
            found.append(Damage(path, "; ".join(map(str, rows[:3]))))
    return found


class LayoutMismatch(ValueError):
    """The recovery partitions here were made for a cluster of another size."""


def partitions_per_worker(directory: Path, workers: int, wanted: int) -> int:
    """How many recovery partitions each of the cluster's ``workers`` keeps: ``wanted`` for a
    new recovery directory, and for one that has partitions already, as many as it was made
    with (Bytewax fixes their number when they are made). Raises :class:`LayoutMismatch`
    when that number is not a whole number per worker, or cannot be read.

    Only while no dataflow of this process has the files open (the module's note).
    """
    found = sorted(directory.glob("part-*.sqlite3"))
    for path in found:
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                row = db.execute("SELECT part_count FROM parts LIMIT 1").fetchone()
        except sqlite3.Error:
            continue  # a damaged one: another may say
        if row is None:
            continue
        (count,) = row
        if count % workers:
            raise LayoutMismatch(
                f"{directory} holds recovery partitions made for {count} partitions, which "
                f"{workers} worker(s) cannot share evenly: run the cluster with the process "
                "and worker counts it was made with (docs/kafka.md, Scale-out)"
            )
        return int(count // workers)
    if found:
        raise LayoutMismatch(
            f"none of the recovery partitions in {directory} can be read: see the Runbook, "
            "RecoveryStoreDamaged (docs/operations.md)"
        )
    return wanted


def check_share(directory: Path, mine: range) -> None:
    """Refuse to make this process's missing partitions (``mine``) in a directory where a
    run has been: they would be empty where the run's are, and Bytewax, finding every
    partition there, would resume without their customers and offsets (a cluster scaled
    down onto fewer volumes, say). Raises :class:`LayoutMismatch`.

    Only while no dataflow of this process has the files open (the module's note).
    """
    missing = [n for n in mine if not (directory / f"part-{n}.sqlite3").exists()]
    if not missing or not any(_has_run(path) for path in directory.glob("part-*.sqlite3")):
        return
    names = ", ".join(f"part-{n}" for n in missing[:3]) + (", ..." if len(missing) > 3 else "")
    raise LayoutMismatch(
        f"{directory} holds the recovery partitions of a run but not {names} of this "
        "process's: made now they would be empty, and the cluster would resume without "
        "what they held. Run the cluster with the process and worker counts it was made "
        "with, or start it from fresh recovery and state directories (docs/kafka.md, "
        "Scale-out)"
    )


def _has_run(path: Path) -> bool:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return db.execute("SELECT 1 FROM exs LIMIT 1").fetchone() is not None
    except sqlite3.Error:
        return True  # damaged: it may have been run, and check_partitions names it


class Unknowable(Exception):
    """The recovery partitions here are not the whole cluster's (one volume per process):
    the other processes' workers' frontiers are not here to read."""


def resume_epoch(directory: Path) -> int | None:
    """The epoch Bytewax will resume from, worked out as Bytewax does (the lowest of the
    latest execution's worker frontiers); None before a first execution. Raises
    :class:`Unknowable` when the partitions here are not the whole cluster's.

    Only while no dataflow of this process has the files open (the module's note).
    """
    parts: dict[int, int] = {}
    executions: list[tuple[int, int, int]] = []
    frontiers: list[tuple[int, int, int]] = []
    for path in sorted(directory.glob("*.sqlite3")):  # another process's too: only read
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            parts.update(db.execute("SELECT part_index, part_count FROM parts"))
            executions += db.execute("SELECT ex_num, worker_count, resume_epoch FROM exs")
            frontiers += db.execute("SELECT ex_num, worker_index, worker_frontier FROM fronts")
    if not executions and not frontiers:
        return None  # nothing has run yet
    counts = set(parts.values())
    if len(counts) != 1 or set(parts) != set(range(counts.pop())) or not executions:
        raise Unknowable(directory)
    latest, workers, resumed_at = max(executions)
    progress = dict.fromkeys(range(workers), resumed_at)
    for execution, worker, frontier in frontiers:
        if execution == latest and worker in progress:
            progress[worker] = max(progress[worker], frontier)
    return min(progress.values())


def drop_unfinished(directory: Path, parts: range, resume_at: int) -> int:
    """Drop the snapshots of epochs from ``resume_at`` on from this process's partitions;
    how many went.

    They are what a killed run wrote for an epoch it did not finish. Bytewax resumes from
    before them but leaves them in place, and the run that resumes does not overwrite them
    for customers it has not reached again before its own epoch passes theirs: those
    customers' next resume would then take that killed run's state, with the effect of
    events the input is read again from (a nudge repeated as a second decision), and
    Bytewax's clean-up, seeing it as the newest, deletes the state before it. With them
    gone, every step and every input partition resumes from the same epoch.

    Only while no dataflow of this process has the files open (the module's note).
    """
    dropped = 0
    for path in partition_paths(directory, parts):
        if path.is_file():
            with closing(sqlite3.connect(path, isolation_level=None)) as db:
                gone = db.execute("DELETE FROM snaps WHERE snap_epoch >= ?", (resume_at,))
                dropped += gone.rowcount
    return dropped


_FORGOTTEN = """
DELETE FROM snaps WHERE ser_change IS NULL AND NOT EXISTS (
    SELECT 1 FROM snaps AS older
    WHERE older.step_id = snaps.step_id
      AND older.state_key = snaps.state_key
      AND older.snap_epoch < snaps.snap_epoch
)
"""
"""Snapshot rows that say only "this key holds nothing" (a customer forgotten: erased,
expired or evicted) with nothing older behind them: resuming without them is resuming
with them, and they would keep the customer's id on disk for good."""


def purge_forgotten(directory: Path, parts: range) -> int:
    """Drop :data:`_FORGOTTEN` rows from this process's recovery partitions, overwriting
    what was deleted (SQLite's ``secure_delete``, then ``VACUUM`` for the pages Bytewax freed
    before). How many rows went.

    Only while no dataflow of this process has the files open (the module's note):
    :mod:`flows.kafka.run` calls it before ``cli_main`` and after ``cli_main`` has returned, when
    every worker thread has ended and dropped its connections; not after an interrupt, which
    ``cli_main`` raises before a cluster's worker threads have ended.
    """
    dropped = 0
    for path in partition_paths(directory, parts):
        if not path.is_file():
            continue
        with closing(sqlite3.connect(path, isolation_level=None)) as db:
            db.execute("PRAGMA secure_delete = ON")
            gone = db.execute(_FORGOTTEN).rowcount
            if gone:
                db.execute("VACUUM")
            dropped += gone
    return dropped


if __name__ == "__main__":
    follow_commits([Path(arg) for arg in sys.argv[1:]])
