"""This process's recovery partitions (flows/kafka/snapshots.py): the snapshot age from the commits
Bytewax records, read by a child process; the check for a damaged partition."""

import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from datetime import timedelta

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.kafka.snapshots import (
    SnapshotWatch,
    Unknowable,
    check_partitions,
    committed_epoch,
    drop_unfinished,
    partition_paths,
    resume_epoch,
)
from tests.integration.conftest import wait_for


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
    clock = Clock()
    watch = SnapshotWatch(tmp_path, range(1), clock)
    watch.observe(None)
    clock.now += 4
    watch.observe(None)
    assert not watch.committed() and watch.age() == 4, "no snapshot yet: as old as the run"
    clock.now += 1
    watch.observe(1)
    assert watch.committed() and watch.age() == 0
    clock.now += 3
    watch.observe(1)
    assert watch.age() == 3, "the same epoch: no new snapshot"
    watch.observe(2)
    assert watch.age() == 0


def test_a_restart_counts_only_what_it_commits_itself(tmp_path):
    """The epoch committed before the start is the last run's: not a snapshot of this one."""
    clock = Clock()
    watch = SnapshotWatch(tmp_path, range(1), clock)
    watch.observe(7)
    clock.now += 2
    watch.observe(7)
    assert not watch.committed() and watch.age() == 2
    watch.observe(8)
    assert watch.committed() and watch.age() == 0


def test_with_several_workers_a_snapshot_is_complete_once_every_partition_has_it(tmp_path):
    init_db_dir(tmp_path, 3)
    mine = partition_paths(tmp_path, range(1, 3))  # this process keeps parts 1 and 2
    commit(tmp_path, 1, 1)
    assert committed_epoch(mine) is None
    commit(tmp_path, 2, 1)
    commit(tmp_path, 0, 5)  # another process's partition: not read
    assert committed_epoch(mine) == 1
    commit(tmp_path, 1, 2)
    assert committed_epoch(mine) == 1, "part 2 is still at 1: a restart resumes from 1"


def test_a_recovery_directory_not_made_yet_reads_as_no_snapshot(tmp_path):
    assert committed_epoch(partition_paths(tmp_path / "missing", range(1))) is None


def test_the_commits_are_read_by_a_child_process_that_ends_with_the_watch(tmp_path):
    init_db_dir(tmp_path, 1)
    commit(tmp_path, 0, 3)
    watch = SnapshotWatch(tmp_path, range(1)).start()
    try:
        child = watch._reader
        assert child is not None and child.pid != os.getpid()
        epochs = iter(range(4, 1000))  # committed as Bytewax does, one after another

        def committed() -> bool:
            commit(tmp_path, 0, next(epochs))
            return watch.committed()

        wait_for(committed, 10, "the child to read a new commit")
    finally:
        watch.close()
    assert child.poll() is not None, "closing the watch ends its child"


def test_the_child_goes_when_its_parent_is_killed(tmp_path):
    """kill -9 of ``concierge run`` leaves no reader behind."""
    init_db_dir(tmp_path, 1)
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from pathlib import Path
                from flows.kafka.snapshots import SnapshotWatch
                watch = SnapshotWatch(Path({str(tmp_path)!r}), range(1)).start()
                print(watch._reader.pid, flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(10)
    wait_for(lambda: not _alive(child), 10, "the reader to go with its parent")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie has gone; init reaps it
    except FileNotFoundError:
        return False


def test_a_sound_partition_passes_the_check_and_a_damaged_one_is_named(tmp_path):
    init_db_dir(tmp_path, 2)
    for epoch in range(1, 200):
        commit(tmp_path, 0, epoch)
    with closing(sqlite3.connect(tmp_path / "part-1.sqlite3")) as db, db:
        db.executemany(
            "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, ?, ?)",
            [("journey", f"customer-{n}", 1, os.urandom(200)) for n in range(2000)],
        )
    assert check_partitions(tmp_path, range(2)) == []

    damaged = tmp_path / "part-1.sqlite3"
    data = bytearray(damaged.read_bytes())
    page = 4096
    data[3 * page : 6 * page] = b"\xa5" * (3 * page)  # three b-tree pages overwritten
    damaged.write_bytes(bytes(data))
    found = check_partitions(tmp_path, range(3))  # part 2 is another process's, or not made
    assert [d.path for d in found] == [damaged]
    assert found[0].problem and found[0].problem != "ok"


def test_a_killed_runs_unfinished_epoch_does_not_come_back_two_runs_later(tmp_path):
    """Bytewax resumes from before the snapshots a killed run wrote for an epoch it did not
    finish, but leaves them; a run that resumes and does not reach that customer again
    before its epochs pass theirs makes them the newest (and Bytewax's clean-up deletes the
    good one), so the next resume takes the killed run's state. Here a running sum: k is 1,
    a killed run had left k at 100, another run (killed too) handles only x, then k comes."""
    init_db_dir(tmp_path, 1)
    items = [("k", 1), TestingSource.EOF(), *[("x", 1)] * 6, TestingSource.ABORT(), ("k", 1)]
    out: list[tuple[str, int]] = []

    def run() -> None:
        flow = Dataflow("sums")
        summed = op.stateful_map(
            "sum", op.input("in", flow, TestingSource(items)), lambda s, v: ((s or 0) + v,) * 2
        )
        op.output("out", summed, TestingSink(out))
        run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(tmp_path)))

    run()
    resume_at = resume_epoch(tmp_path)
    assert resume_at is not None
    with closing(sqlite3.connect(tmp_path / "part-0.sqlite3")) as db, db:
        step, kept = db.execute(
            "SELECT step_id, ser_change FROM snaps WHERE state_key = 'k'"
        ).fetchone()
        assert pickle.loads(kept) == 1
        db.execute(
            "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, ?, ?)",
            (step, "k", resume_at + 1, pickle.dumps(100)),  # what the killed run left
        )
    assert drop_unfinished(tmp_path, range(1), resume_at) == 1
    run()  # the x's, then killed
    run()  # k again
    assert out[-1] == ("k", 2), "k resumed from its own last snapshot, not the killed run's"


def test_the_resume_epoch_is_bytewaxs_and_unknowable_from_one_process_of_a_cluster(tmp_path):
    init_db_dir(tmp_path, 2)
    assert resume_epoch(tmp_path) is None, "nothing has run yet"
    with closing(sqlite3.connect(tmp_path / "part-1.sqlite3")) as db, db:
        db.execute("INSERT INTO exs (ex_num, worker_count, resume_epoch) VALUES (0, 2, 1)")
        db.execute("INSERT INTO exs (ex_num, worker_count, resume_epoch) VALUES (1, 2, 7)")
        db.execute("INSERT INTO fronts (ex_num, worker_index, worker_frontier) VALUES (0, 0, 9)")
        db.execute("INSERT INTO fronts (ex_num, worker_index, worker_frontier) VALUES (1, 0, 12)")
    with closing(sqlite3.connect(tmp_path / "part-0.sqlite3")) as db, db:
        db.execute("INSERT INTO fronts (ex_num, worker_index, worker_frontier) VALUES (1, 1, 11)")
    assert resume_epoch(tmp_path) == 11, "the latest execution's slowest worker"
    alone = tmp_path / "volume-of-process-1"
    alone.mkdir()
    shutil.move(tmp_path / "part-1.sqlite3", alone)
    with pytest.raises(Unknowable):
        resume_epoch(alone)
