"""Snapshot age (flows/snapshots.py): read from the commits Bytewax records in the recovery
partitions, on a clock the test moves."""

import sqlite3
from contextlib import closing

from bytewax.recovery import init_db_dir

from flows.snapshots import SnapshotWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def commit(directory, part, epoch):
    """What Bytewax writes when a worker's epoch is committed."""
    with closing(sqlite3.connect(directory / f"part-{part}.sqlite3")) as db, db:
        db.execute(
            "INSERT INTO commits (part_index, commit_epoch) VALUES (?, ?) "
            "ON CONFLICT (part_index) DO UPDATE SET commit_epoch = excluded.commit_epoch",
            (part, epoch),
        )


def test_the_age_counts_from_the_last_commit_and_from_the_start_until_the_first(tmp_path):
    init_db_dir(tmp_path, 1)
    clock = Clock()
    watch = SnapshotWatch(tmp_path, range(1), clock)
    clock.now += 4
    watch.poll()
    assert not watch.committed() and watch.age() == 4, "no snapshot yet: as old as the run"
    commit(tmp_path, 0, 1)
    clock.now += 1
    watch.poll()
    assert watch.committed() and watch.age() == 0
    clock.now += 3
    watch.poll()
    assert watch.age() == 3, "the same epoch: no new snapshot"
    commit(tmp_path, 0, 2)
    watch.poll()
    assert watch.age() == 0


def test_a_restart_counts_only_what_it_commits_itself(tmp_path):
    """The epoch committed before the start is the last run's: not a snapshot of this one."""
    init_db_dir(tmp_path, 1)
    commit(tmp_path, 0, 7)
    clock = Clock()
    watch = SnapshotWatch(tmp_path, range(1), clock)
    clock.now += 2
    watch.poll()
    assert not watch.committed() and watch.age() == 2
    commit(tmp_path, 0, 8)
    watch.poll()
    assert watch.committed() and watch.age() == 0


def test_with_several_workers_a_snapshot_is_complete_once_every_partition_has_it(tmp_path):
    init_db_dir(tmp_path, 3)
    clock = Clock()
    watch = SnapshotWatch(tmp_path, range(1, 3), clock)  # this process keeps parts 1 and 2
    commit(tmp_path, 1, 1)
    watch.poll()
    assert not watch.committed()
    commit(tmp_path, 2, 1)
    commit(tmp_path, 0, 5)  # another process's partition: not read
    watch.poll()
    assert watch.committed()


def test_a_recovery_directory_not_made_yet_reads_as_no_snapshot(tmp_path):
    watch = SnapshotWatch(tmp_path / "missing", range(1), Clock())
    watch.poll()
    assert not watch.committed()
