"""The identity graph's store on disk: RocksDB, through rocksdict."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType

from rocksdict import AccessType, Options, Rdict, WriteBatch


class RocksStore:
    """A :class:`operators.identity_graph.KeyValue` in a RocksDB directory.

    ``read_only`` opens it beside a running flow (as a RocksDB secondary, which
    catches up with the writer when opened), for ``concierge identity``.
    """

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self._secondary: tempfile.TemporaryDirectory[str] | None = None
        options = Options(raw_mode=True)
        if read_only:
            if not (path / "CURRENT").exists():
                raise FileNotFoundError(f"no identity graph in {path}")
            self._secondary = tempfile.TemporaryDirectory(prefix="concierge-identity-")
            options.set_max_open_files(-1)
            self._db = Rdict(
                str(path), options=options, access_type=AccessType.secondary(self._secondary.name)
            )
            self._db.try_catch_up_with_primary()
        else:
            path.mkdir(parents=True, exist_ok=True)
            options.create_if_missing(True)
            self._db = Rdict(str(path), options=options)

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return value if isinstance(value, bytes) else None

    def write(self, changes: Mapping[bytes, bytes | None]) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self._db.write(batch)

    def keys_from(self, prefix: bytes) -> Iterator[bytes]:
        for key in self._db.keys(from_key=prefix):
            if not key.startswith(prefix):
                return
            yield key

    def close(self) -> None:
        self._db.close()
        if self._secondary is not None:
            self._secondary.cleanup()

    def __enter__(self) -> RocksStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
