"""Which worker keeps a key (flows/routing.py), against real Bytewax clusters: threads of
one process, and two processes of two workers each."""

import subprocess
import sys
import textwrap

import orjson
import pytest

from flows.kafka.broker import free_port
from flows.routing import LAST, key_for_worker, worker_of

KEYS = [f"cus_{n:06x}" for n in range(300)] + ["", "a", "ünï", "x" * 50, LAST + "tick-0"]

CHILD = textwrap.dedent(
    """
    import sys, threading
    import orjson
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSource, cluster_main

    keys, per_process, addresses, process = orjson.loads(sys.argv[1])
    seen, lock = [], threading.Lock()
    flow = Dataflow("routing")
    items = op.input("in", flow, TestingSource([(k, 1) for k in keys] if process == 0 else []))
    kept = op.stateful_map("kept", items, lambda state, value: (None, value))

    def note(step, item, epoch, worker):
        with lock:
            seen.append((item[0], worker))

    op.inspect_debug("where", kept, note)
    cluster_main(flow, addresses, process, worker_count_per_proc=per_process)
    print(orjson.dumps(seen).decode())
    """
)


def where_bytewax_keeps(keys, processes, per_process):
    """Key -> the worker whose ``stateful_map`` saw it, from each process's own report."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(processes)] if processes > 1 else []
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, orjson.dumps([keys, per_process, addresses, p])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for p in range(processes)
    ]
    seen = {}
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
        # the last line: Timely says on stdout that it retries connecting to the other process
        seen.update(dict(orjson.loads(out.splitlines()[-1])))
    return seen


@pytest.mark.parametrize(("processes", "per_process"), [(1, 3), (2, 2)])
def test_each_key_lives_on_the_worker_the_rule_names(processes, per_process):
    workers = processes * per_process
    seen = where_bytewax_keeps(KEYS, processes, per_process)
    assert set(seen) == set(KEYS)
    assert {k: worker_of(k, workers) for k in KEYS} == seen
    assert set(seen.values()) == set(range(workers))


def test_a_key_is_found_for_every_worker_and_sorts_after_every_customer():
    for workers in (1, 2, 5, 8):
        keys = [key_for_worker(w, workers, LAST + "tick-") for w in range(workers)]
        assert [worker_of(k, workers) for k in keys] == list(range(workers))
        assert all(k > "cus_zzzzzzzz" for k in keys)
    with pytest.raises(ValueError, match="worker 3 is not one of 3"):
        key_for_worker(3, 3, "t")
