"""Which worker of a cluster a key's state lives on, as Bytewax 0.21.1 routes it.

Every stateful step (``stateful_batch`` and the operators built on it) sends an item to
worker ``siphash13(key's UTF-8 bytes + 0xff, key 0) mod W``, W being every worker of the
cluster (processes x workers per process, numbered process by process): Rust's
``DefaultHasher`` with fixed keys over the derived ``Hash`` of Bytewax's ``StateKey``
(``src/operators.rs`` and ``src/timely.rs`` at the v0.21.1 tag). The step's name is not
hashed, so a key lives on the same worker in every step, and a resume routes saved state
by the same rule.

So the flow can address each worker: :func:`key_for_worker` finds a key that lands on a
given one. One sender's items reach each worker in the order sent, and within one
activation a step calls ``on_batch`` key by key in sorted order of the keys; a key that
sorts after every customer id (:data:`LAST`) is handled after whatever came with it.
``tests/flows/test_routing.py`` checks the rule against a real cluster, so a Bytewax that
routes otherwise fails it.
"""

from __future__ import annotations

from functools import cache

from siphash24 import siphash13

_ZERO_KEY = bytes(16)
FIRST = "\x00"
"""A prefix that sorts before every key the flow's customers have."""
LAST = "\U0010ffff"
"""A prefix that sorts after every key the flow's customers have (their ids are ASCII)."""


def worker_of(key: str, workers: int) -> int:
    """The worker (0 to ``workers`` - 1) a stateful step keeps ``key`` on."""
    digest = siphash13(key.encode("utf-8") + b"\xff", key=_ZERO_KEY).digest()
    return int.from_bytes(digest, "little") % workers


@cache
def key_for_worker(worker: int, workers: int, prefix: str) -> str:
    """The first key ``prefix<n>`` (n = 0, 1, ...) that lives on ``worker``."""
    if not 0 <= worker < workers:
        raise ValueError(f"worker {worker} is not one of {workers}")
    n = 0
    while worker_of(f"{prefix}{n}", workers) != worker:
        n += 1
    return f"{prefix}{n}"
