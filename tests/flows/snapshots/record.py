"""Record what a release's recovery snapshots hold, for tests/flows/test_old_snapshots.py.

Run with that release's code, in its repository: ``python tests/flows/snapshots/record.py
OUT``. It starts the embedded broker, writes 4,000 generated events (seed 11, 200 customers)
keyed as producers key, runs ``concierge run --stop-at-end`` over them under the full policy
with every idle customer packed at once (``--pack-idle-ms 0``), and writes every row Bytewax
kept in the recovery partitions, ``(step_id, state_key, ser_change)``, pickled and
zlib-compressed. It reads the partitions after ``run`` has ended, from this process: never
while a flow holds them (SQLite's locks belong to the process).
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parents[3]))

from flows.commands.generator import Generator
from flows.kafka.broker import EmbeddedBroker
from tests.conftest import FULL_POLICY
from tests.integration.conftest import CONCIERGE, Topics, _default_key


def _key(record: bytes) -> bytes | None:
    try:
        return _default_key(orjson.loads(record))
    except orjson.JSONDecodeError:
        return None  # a broken record: the flow dead-letters it


def main(out: Path) -> None:
    work = Path(tempfile.mkdtemp())
    with EmbeddedBroker() as broker:
        topics = Topics(broker, "snap.")
        records = list(Generator(customers=200, seed=11).events(4000))
        topics.produce(records, keys=[_key(record) for record in records])
        subprocess.run(
            [
                *(CONCIERGE, "run", "--policy", str(FULL_POLICY), "--brokers", broker.bootstrap),
                *("--topic-prefix", "snap.", "--metrics-port", "0", "-X", "log_level=0"),
                *("--recovery-dir", str(work / "recovery"), "--state-dir", str(work / "state")),
                *("--stop-at-end", "--pack-idle-ms", "0"),
            ],
            check=True,
            timeout=300,
            env={**os.environ, "CONCIERGE_IDENTITY_KEY": "a fixture identity key, shared"},
        )
    rows = []
    for partition in sorted((work / "recovery").glob("*.sqlite3")):
        database = sqlite3.connect(partition)
        rows += database.execute("SELECT step_id, state_key, ser_change FROM snaps").fetchall()
        database.close()
    out.write_bytes(zlib.compress(pickle.dumps(rows), 9))
    print(f"{len(rows)} rows to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
