"""The identity step resumes only beside the graph its snapshots were taken with
(flows/identity.py): a lost, older, other or too-new ``--state-dir`` is refused."""

import pytest

from flows.identity import KEPT_SNAPSHOTS, GraphMismatch, IdentityConfig, IdentityLogic
from operators.identity.graph import DictStore, IdentityGraph
from operators.model.identifiers import UNKEYED_IDENTITY, IdentifierRules

ids = UNKEYED_IDENTITY.identify_normalised


def step(store: DictStore, resume=None) -> IdentityLogic:
    config = IdentityConfig(IdentifierRules(), lambda: store, ["events#0"], recoverable=True)
    return IdentityLogic(config, resume)


def resolve(store: DictStore, count: int, start: int = 0) -> None:
    graph = IdentityGraph(store, IdentifierRules())
    for n in range(start, start + count):
        graph.resolve(ids({"email": f"c{n}@example.com"}), n, f"e{n}")


def test_the_graph_the_snapshot_was_taken_with_resumes_and_rolls_back():
    store = DictStore()
    logic = step(store)
    resolve(store, 3)
    taken = logic.snapshot()
    resolve(store, 2, start=3)  # after the snapshot: undone on resume
    step(store, taken)
    assert IdentityGraph(store, IdentifierRules()).sequence == taken[0] == 3


def test_an_empty_graph_beside_snapshots_is_refused():
    store = DictStore()
    logic = step(store)
    resolve(store, 3)
    snapshot = logic.snapshot()
    with pytest.raises(GraphMismatch, match="graph under --state-dir is empty"):
        step(DictStore(), snapshot)


def test_an_older_copy_of_the_graph_is_refused():
    store = DictStore()
    logic = step(store)
    resolve(store, 2)
    older = DictStore()
    older.data = dict(store.data)  # a copy of --state-dir taken then
    resolve(store, 3, start=2)
    snapshot = logic.snapshot()
    with pytest.raises(GraphMismatch, match="behind the snapshots: it has 2 operations"):
        step(older, snapshot)


def test_another_runs_graph_is_refused():
    ours, theirs = DictStore(), DictStore()
    logic = step(ours)
    resolve(ours, 2)
    snapshot = logic.snapshot()
    step(theirs)
    resolve(theirs, 5)
    with pytest.raises(GraphMismatch, match="not the one the snapshots were taken with"):
        step(theirs, snapshot)


def test_a_graph_ahead_past_what_it_can_undo_is_refused():
    store = DictStore()
    logic = step(store)
    resolve(store, 1)
    first = logic.snapshot()
    for n in range(
        1, KEPT_SNAPSHOTS + 2
    ):  # later snapshots let the graph forget the first's undo records
        resolve(store, 1, start=n)
        logic.snapshot()
    with pytest.raises(GraphMismatch, match="ahead of the snapshots past what it can undo"):
        step(store, first)
