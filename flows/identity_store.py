"""The identity graph's store on disk: RocksDB, through rocksdict; and how the tools find
a profile in it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from rocksdict import (
    AccessType,
    BottommostLevelCompaction,
    CompactOptions,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
)

from operators.identity.graph import GraphError, IdentityGraph, check_store
from operators.identity.ids import is_canonical_id
from operators.model.identifiers import (
    KNOWN_IDENTIFIERS,
    IdentifierRules,
    IdentityKey,
    Rejection,
    mask,
    normalise,
)


class RocksStore:
    """A :class:`operators.identity.graph.KeyValue` in a RocksDB directory.

    ``read_only`` opens it beside a running flow (as a RocksDB secondary, which
    catches up with the writer when opened), for ``concierge identity``.
    """

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self._secondary: tempfile.TemporaryDirectory[str] | None = None
        options = Options(raw_mode=True)
        # Uncompressed: it holds only digests, ids and masked forms, which compress little,
        # and a reviewer searching its files for people's identifiers reads what is there.
        options.set_compression_type(DBCompressionType.none())
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
            self._path, self._options = path, options
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

    def purge(self) -> None:
        """Rewrite the files so that what was deleted is gone from them too: after an erasure
        (or a retention sweep) no longer needs its undo record, its profiles' digests and
        masked forms leave the disk, not just the graph."""
        self._db.flush()
        every = CompactOptions()
        every.set_bottommost_level_compaction(BottommostLevelCompaction.force())
        self._db.compact_range(None, None, every)
        # Reopened, RocksDB starts a new manifest (the list of files, with each one's first
        # and last key) and deletes the old one, whose first keys may be ids just deleted.
        self._db.close()
        self._db = Rdict(str(self._path), options=self._options)

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


class ProfileQueryError(ValueError):
    """WHO names no identifier or customer id, names a value that cannot be used, or the
    graph cannot be read under this key."""


CANONICAL_PREFIX = "cus_"
WHO_FORMS = (
    f"TYPE:VALUE (types: {', '.join(KNOWN_IDENTIFIERS)}) or a canonical customer id (cus_...)"
)


def find_profile(
    graph_dir: Path, who: str, rules: IdentifierRules, key: IdentityKey, region: str | None
) -> tuple[dict[str, Any] | None, str]:
    """The profile ``who`` (an identifier as ``TYPE:VALUE``, normalised as the engine does
    and digested under ``key``, or a canonical id) names in the graph at ``graph_dir``, and
    how to say whom was asked about (masked). :class:`FileNotFoundError` when there is no
    graph there."""
    kind, sep, value = who.partition(":")
    canonical = is_canonical_id(who)
    if not canonical and who.startswith(CANONICAL_PREFIX) and not sep:
        return None, who  # meant as a canonical id: none has that form, so none is held
    if not canonical and (not sep or kind not in KNOWN_IDENTIFIERS):
        raise ProfileQueryError(f"name the customer as {WHO_FORMS}")
    with RocksStore(graph_dir, read_only=True) as store:
        try:
            graph = IdentityGraph(store, rules, key)
        except GraphError as err:
            raise ProfileQueryError(f"{graph_dir}: {err}") from None
        if canonical:
            return graph.profile(who), who
        normal = normalise(kind, value, rules, region)
        if isinstance(normal, Rejection):
            raise ProfileQueryError(f"{kind} {mask(kind, value.strip())} is {normal.value}")
        return graph.profile_of(kind, normal), f"{kind}:{mask(kind, normal)}"


def check_graph(graph_dir: Path, key: IdentityKey) -> None:
    """:class:`GraphError` if the graph at ``graph_dir`` cannot be used under ``key`` (none
    there is fine: it is made under this key)."""
    try:
        store = RocksStore(graph_dir, read_only=True)
    except FileNotFoundError:
        return
    with store:
        check_store(store, key)
