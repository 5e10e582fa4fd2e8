"""LevelDBKV: the KV on disk, through plyvel. The only module that imports plyvel.

Synced writes (``sync=True``, the default) reach the disk before the call returns, so a
batch that returned survives a crash of the process or the machine; LevelDB's write-ahead
log makes every batch all-or-nothing on reopen. LevelDB allows one open handle per
database: a second open, from this process or another, is refused with a ConfigError.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import plyvel

from protocol.errors import ConfigError, LocalError
from storage.errors import DatabaseLockedError
from storage.kv import check_key, check_value, key_range

BLOOM_FILTER_BITS = 10  # per key: about 1% false positives
# Memtable size before it is flushed to a level-0 table. LevelDB's default of 4 MiB made its
# background compaction take about 40% of each ordering member's CPU under load: every
# table spans the Raft entries, the blocks and the random tx_id index keys, so each
# level-0 table overlaps (and rewrites) the whole of level 1. With 64 MiB, measured at 64
# closed-loop clients on 3 members, that thread's share fell below 5% and throughput rose
# from about 1,000 to 1,300-1,800/s. The cost: up to two memtables of this size in memory
# and up to this much write-ahead log to replay when the node opens its database.
WRITE_BUFFER_BYTES = 64 * 1024 * 1024


class _LevelDBBatch:
    """A plyvel write batch that checks its arguments and refuses use after its block."""

    def __init__(self, wb: plyvel.WriteBatch) -> None:
        self._wb = wb
        self.open = True

    def put(self, key: bytes, value: bytes) -> None:
        self._check_open()
        check_key(key)
        check_value(value)
        self._wb.put(key, value)

    def delete(self, key: bytes) -> None:
        self._check_open()
        check_key(key)
        self._wb.delete(key)

    def _check_open(self) -> None:
        if not self.open:
            raise LocalError("write batch used after its with-block ended")


class LevelDBKV:
    """A KV backed by one LevelDB database directory."""

    def __init__(self, path: str | Path, *, create_if_missing: bool = True) -> None:
        self.path = Path(path)
        if not create_if_missing and not (self.path / "CURRENT").is_file():
            # Checked here because LevelDB would create the directory before refusing.
            raise ConfigError(f"no LevelDB at {self.path} (and create_if_missing is off)")
        try:
            self._db = plyvel.DB(
                str(self.path),
                create_if_missing=create_if_missing,
                # Most point reads look up ids that are not there yet (is this tx_id already
                # in the chain?): a bloom filter answers those without reading every level.
                bloom_filter_bits=BLOOM_FILTER_BITS,
                write_buffer_size=WRITE_BUFFER_BYTES,
            )
        except plyvel.IOError as e:
            if _text(e).startswith("IO error: lock "):  # LevelDB's LockFile failure
                raise DatabaseLockedError(
                    f"LevelDB at {self.path} is locked: it is already open in this or "
                    "another process (is another node running on this data directory?)"
                ) from None
            raise ConfigError(f"cannot open LevelDB at {self.path}: {_text(e)}") from None
        except plyvel.Error as e:
            if not create_if_missing and "does not exist" in str(e):
                raise ConfigError(
                    f"no LevelDB at {self.path} (and create_if_missing is off)"
                ) from None
            raise ConfigError(f"cannot open LevelDB at {self.path}: {_text(e)}") from None

    def get(self, key: bytes) -> bytes | None:
        self._check_open()
        check_key(key)
        value: bytes | None = self._db.get(key)
        return value

    def iterate(
        self,
        prefix: bytes = b"",
        *,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check_open()
        bounds = key_range(prefix, start, stop)
        if bounds is None:
            return iter(())
        lo, hi = bounds
        # The raw iterator is created here, not lazily in a generator, so its implicit
        # snapshot is taken at the call. plyvel's bounded iterator is not used: in 1.5.1 a
        # reverse iteration whose start is the database's last key yields nothing.
        raw = self._db.raw_iterator()
        return _walk_backward(raw, lo, hi) if reverse else _walk_forward(raw, lo, hi)

    @contextmanager
    def batch(self, *, sync: bool = True) -> Iterator[_LevelDBBatch]:
        self._check_open()
        wb = _LevelDBBatch(self._db.write_batch(sync=sync))
        try:
            yield wb
        finally:
            wb.open = False
        self._check_open()
        wb._wb.write()

    def put(self, key: bytes, value: bytes, *, sync: bool = True) -> None:
        self._check_open()
        check_key(key)
        check_value(value)
        self._db.put(key, value, sync=sync)

    def delete(self, key: bytes, *, sync: bool = True) -> None:
        self._check_open()
        check_key(key)
        self._db.delete(key, sync=sync)

    def close(self) -> None:
        self._db.close()

    @property
    def closed(self) -> bool:
        return bool(self._db.closed)

    def _check_open(self) -> None:
        if self._db.closed:
            raise LocalError(f"LevelDB at {self.path} used after close")


def _walk_forward(
    raw: plyvel.RawIterator, lo: bytes, hi: bytes | None
) -> Iterator[tuple[bytes, bytes]]:
    try:
        raw.seek(lo)
        while raw.valid():
            key = raw.key()
            if hi is not None and key >= hi:
                return
            yield key, raw.value()
            raw.next()
    finally:
        raw.close()


def _walk_backward(
    raw: plyvel.RawIterator, lo: bytes, hi: bytes | None
) -> Iterator[tuple[bytes, bytes]]:
    try:
        if hi is None:
            raw.seek_to_last()
        else:
            raw.seek(hi)  # the first key >= hi, or invalid past the end
            if raw.valid():
                raw.prev()
            else:
                raw.seek_to_last()
        while raw.valid():
            key = raw.key()
            if key < lo:
                return
            yield key, raw.value()
            raw.prev()
    finally:
        raw.close()


def _text(e: Exception) -> str:
    raw = e.args[0] if e.args else ""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
