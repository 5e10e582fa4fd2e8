"""MemoryKV: the sorted, in-memory twin of LevelDBKV, used by simulation and unit tests.

It passes the same contract suite as LevelDB (tests/contract): sorted iteration, snapshot
iterators, atomic batches. ``sync`` is accepted and ignored: memory has nothing to flush.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from contextlib import contextmanager

from protocol.errors import LocalError
from storage.kv import check_key, check_value, key_range


class _MemoryBatch:
    """Operations recorded in order and applied together when the batch commits."""

    def __init__(self) -> None:
        self.ops: list[tuple[bytes, bytes | None]] = []
        self.open = True

    def put(self, key: bytes, value: bytes) -> None:
        self._check_open()
        check_key(key)
        check_value(value)
        self.ops.append((key, value))

    def delete(self, key: bytes) -> None:
        self._check_open()
        check_key(key)
        self.ops.append((key, None))

    def _check_open(self) -> None:
        if not self.open:
            raise LocalError("write batch used after its with-block ended")


class MemoryKV:
    """A KV held in a dict plus a sorted list of its keys."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []  # sorted
        self._closed = False

    def get(self, key: bytes) -> bytes | None:
        self._check_open()
        check_key(key)
        return self._data.get(key)

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
        i = bisect.bisect_left(self._keys, lo)
        j = len(self._keys) if hi is None else bisect.bisect_left(self._keys, hi)
        pairs = [(k, self._data[k]) for k in self._keys[i:j]]  # snapshot, as LevelDB gives
        if reverse:
            pairs.reverse()
        return iter(pairs)

    @contextmanager
    def batch(self, *, sync: bool = True) -> Iterator[_MemoryBatch]:
        self._check_open()
        wb = _MemoryBatch()
        try:
            yield wb
        finally:
            wb.open = False
        self._check_open()
        for key, value in wb.ops:
            if value is None:
                self._delete(key)
            else:
                self._put(key, value)

    def put(self, key: bytes, value: bytes, *, sync: bool = True) -> None:
        self._check_open()
        check_key(key)
        check_value(value)
        self._put(key, value)

    def delete(self, key: bytes, *, sync: bool = True) -> None:
        self._check_open()
        check_key(key)
        self._delete(key)

    def close(self) -> None:
        self._closed = True

    def __len__(self) -> int:
        return len(self._keys)

    def _put(self, key: bytes, value: bytes) -> None:
        if key not in self._data:
            bisect.insort(self._keys, key)
        self._data[key] = value

    def _delete(self, key: bytes) -> None:
        if self._data.pop(key, None) is not None:
            del self._keys[bisect.bisect_left(self._keys, key)]

    def _check_open(self) -> None:
        if self._closed:
            raise LocalError("MemoryKV used after close")
