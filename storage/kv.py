"""The key-value interface every store is written against, and helpers shared by backends.

Modelled on py-evm's storage-behind-a-mapping: a store never sees plyvel, only a ``KV``.
Keys and values are ``bytes``; keys sort bytewise, so big-endian fixed-width integers in
keys iterate in numeric order. A batch is atomic: either all of its writes land or, if the
``with`` block raises, none do. Writes made inside a batch are not visible to reads until the
batch commits (there is no read-your-writes inside a batch, as in LevelDB).

``iterate`` takes a snapshot when it is called: writes made while iterating are not seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol

from protocol.errors import LocalError


class WriteBatch(Protocol):
    """Writes collected for one atomic commit."""

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...


class KV(Protocol):
    """An ordered byte-string key-value store with atomic batches."""

    def get(self, key: bytes) -> bytes | None: ...

    def iterate(
        self,
        prefix: bytes = b"",
        *,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs whose key has *prefix*, with ``start <= key < stop`` (full keys), in key order."""
        ...

    def batch(self, *, sync: bool = True) -> AbstractContextManager[WriteBatch]:
        """A batch committed when the ``with`` block ends normally, dropped if it raises."""
        ...

    def put(self, key: bytes, value: bytes, *, sync: bool = True) -> None: ...

    def delete(self, key: bytes, *, sync: bool = True) -> None: ...

    def close(self) -> None: ...


# A recorded write: a put (key, value) or a delete (key, None).
Write = tuple[bytes, bytes | None]


class RecordingBatch:
    """Passes writes on to *batch* and keeps them in ``ops``, to be written again later
    (:func:`replay`)."""

    def __init__(self, batch: WriteBatch) -> None:
        self._batch = batch
        self.ops: list[Write] = []

    def put(self, key: bytes, value: bytes) -> None:
        self._batch.put(key, value)
        self.ops.append((key, value))

    def delete(self, key: bytes) -> None:
        self._batch.delete(key)
        self.ops.append((key, None))


def replay(ops: list[Write], target: WriteBatch) -> None:
    """Write recorded *ops* into *target* (a batch, or anything with put and delete), in
    order."""
    for key, value in ops:
        if value is None:
            target.delete(key)
        else:
            target.put(key, value)


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key with *prefix* (None: no such key)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def key_range(
    prefix: bytes, start: bytes | None, stop: bytes | None
) -> tuple[bytes, bytes | None] | None:
    """The half-open range ``[lo, hi)`` of keys that *iterate* selects; None if it is empty."""
    check_key(prefix, "prefix")
    lo = prefix
    if start is not None:
        check_key(start, "start")
        lo = max(lo, start)
    hi = prefix_upper_bound(prefix)
    if stop is not None:
        check_key(stop, "stop")
        hi = stop if hi is None else min(hi, stop)
    if hi is not None and lo >= hi:
        return None
    return lo, hi


def check_key(key: object, what: str = "key") -> None:
    """Raise LocalError unless *key* is bytes (str keys are a classic, silent bug)."""
    if type(key) is not bytes:
        raise LocalError(f"{what} must be bytes, not {type(key).__name__}")


def check_value(value: object) -> None:
    """Raise LocalError unless *value* is bytes."""
    if type(value) is not bytes:
        raise LocalError(f"value must be bytes, not {type(value).__name__}")
