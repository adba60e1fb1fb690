"""When this process last completed a recovery snapshot, read from its recovery partitions.

Bytewax closes an epoch every ``--snapshot-interval``: each worker writes the state of what
changed and its input offsets into its recovery partition (``part-N.sqlite3``), then records
the epoch in the partition's ``commits`` table. A committed epoch is what a restart resumes
from, so the time since the commit last moved is how much a crash now would replay. Nothing
in the flow's own callbacks says that: a snapshot callback runs before the write, and only
for the customers that changed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

POLL_S = 0.5
"""How often the commits are read: the age is right to within this."""


class SnapshotWatch:
    """Follows the committed epoch of this process's recovery partitions (the lowest of
    them: a restart resumes from the epoch every partition has committed)."""

    def __init__(
        self, directory: Path, parts: range, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._paths = [directory / f"part-{n}.sqlite3" for n in parts]
        self._clock = clock
        self._started = clock()
        self._epoch = self._committed()
        """The epoch committed when this process started (None: none yet)."""
        self._moved_at: float | None = None
        """When (``clock``) the committed epoch last moved in this process's run."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        """Read the committed epoch; note when it moved."""
        epoch = self._committed()
        if epoch is not None and (self._epoch is None or epoch > self._epoch):
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
        self._thread = threading.Thread(target=self._follow, name="snapshots", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _follow(self) -> None:
        while not self._stop.wait(POLL_S):
            self.poll()

    def _committed(self) -> int | None:
        epochs = []
        for path in self._paths:
            try:
                # Read-only, and a short transaction each time: Bytewax's writes (WAL mode)
                # are neither blocked nor held back from checkpointing.
                with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as db:
                    row = db.execute("SELECT MIN(commit_epoch) FROM commits").fetchone()
            except sqlite3.Error:
                return None  # not created yet, or busy: read again next time
            if row is None or row[0] is None:
                return None
            epochs.append(int(row[0]))
        return min(epochs) if epochs else None


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
    before); only while no dataflow has them open. How many rows went."""
    dropped = 0
    for path in (directory / f"part-{n}.sqlite3" for n in parts):
        if not path.is_file():
            continue
        with closing(sqlite3.connect(path, isolation_level=None)) as db:
            db.execute("PRAGMA secure_delete = ON")
            gone = db.execute(_FORGOTTEN).rowcount
            if gone:
                db.execute("VACUUM")
            dropped += gone
    return dropped
