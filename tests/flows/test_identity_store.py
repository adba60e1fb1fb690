"""The identity graph on RocksDB (flows/identity_store.py, the edge)."""

import subprocess
import sys
from pathlib import Path

from flows.identity_store import RocksStore
from operators.identity.graph import IdentityGraph
from operators.model.identifiers import UNKEYED_IDENTITY, IdentifierRules

ids = UNKEYED_IDENTITY.identify_normalised


def test_the_graph_survives_closing_and_rolls_back_on_disk(tmp_path):
    path = tmp_path / "graph"
    with RocksStore(path) as store:
        graph = IdentityGraph(store, IdentifierRules())
        ana = graph.resolve(ids({"email": "ana@example.com"}), 1, "e1").customer_id
        mark = graph.sequence
        graph.resolve(ids({"loyalty_id": "L1"}), 2, "e2")
        graph.resolve(ids({"loyalty_id": "L1", "email": "ana@example.com"}), 3, "e3")
    with RocksStore(path) as store:
        graph = IdentityGraph(store, IdentifierRules())
        assert graph.profile_of("loyalty_id", "L1")["customer_id"] == ana
        assert graph.roll_back(mark) == 2
        assert graph.profile_of("loyalty_id", "L1") is None
        assert list(store.keys_from(b"u\x00")) == [b"u\x00%016d" % 1]


def test_another_process_can_read_the_graph_while_it_is_open(tmp_path):
    path = tmp_path / "graph"
    with RocksStore(path) as store:
        IdentityGraph(store, IdentifierRules()).resolve(ids({"phone": "+34600111222"}), 1, "e1")
        reader = (
            "import sys; from pathlib import Path; from flows.identity_store import RocksStore;"
            "from operators.identity.graph import IdentityGraph;"
            "from operators.model.identifiers import IdentifierRules;"
            f"s = RocksStore(Path({str(path)!r}), read_only=True);"
            "print(IdentityGraph(s, IdentifierRules()).profile_of('phone', '+34600111222')"
            "['customer_id']); s.close()"
        )
        done = subprocess.run(
            [sys.executable, "-c", reader], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("cus_")


def test_a_graph_an_earlier_version_wrote_is_refused_in_one_line(tmp_path):
    state = tmp_path / "state"
    with RocksStore(state / "identity") as store:
        IdentityGraph(store, IdentifierRules()).resolve(ids({"email": "ana@example.com"}), 1, "e1")
        store.write({b"f": b"2"})  # as a graph of format 2 says what it is
    concierge = str(Path(sys.executable).with_name("concierge"))
    done = subprocess.run(
        [concierge, "identity", "--state-dir", str(state), "email:ana@example.com"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert "written by another version (graph format 2; this one reads graph format 3" in line
    assert "start with a fresh state directory and recovery directory" in line
