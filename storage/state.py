"""WorldState: the current value of every contract key, with the version that wrote it.

A key lives in a namespace (the contract's name) and carries the ``Version(block, tx)`` of
the transaction that last wrote it; MVCC validation compares read versions against these.
Writes are applied only through a batch, so a block and its state changes commit together
(:func:`storage.ledger.commit_block`). A delete removes the key; reading it again gives None.

:meth:`WorldState.state_hash` digests the whole state in key order, so two nodes that
applied the same blocks can compare states with one hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from protocol.errors import LocalError
from protocol.transaction import KVWrite
from storage import schema
from storage.errors import CorruptionError
from storage.kv import KV, WriteBatch

_VERSION_BYTES = schema.U64.size + schema.U32.size
_STATE_HASH_DOMAIN = b"medledger/world-state/v1"


@dataclass(frozen=True, slots=True, order=True)
class Version:
    """The block number and index in block of the transaction that wrote a key."""

    block: int
    tx: int

    def __post_init__(self) -> None:
        if type(self.block) is not int or type(self.tx) is not int:
            raise LocalError("Version block and tx must be ints")
        if not 0 <= self.block < 2**64 or not 0 <= self.tx < 2**32:
            raise LocalError(f"Version({self.block}, {self.tx}) out of range")

    def pack(self) -> bytes:
        return schema.U64.pack(self.block) + schema.U32.pack(self.tx)


class WorldState:
    """Versioned key-value state per namespace, on one KV."""

    def __init__(self, kv: KV) -> None:
        self.kv = kv

    def get(self, namespace: str, key: bytes) -> tuple[bytes, Version] | None:
        """(value, version) of *key* in *namespace*, None if absent."""
        raw = self.kv.get(schema.state_key(namespace, key))
        return None if raw is None else _unpack(raw)

    def range(
        self, namespace: str, start: bytes = b"", stop: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes, Version]]:
        """(key, value, version) for keys of *namespace* in ``[start, stop)``, in key order."""
        prefix = schema.state_prefix(namespace)
        pairs = self.kv.iterate(
            prefix, start=prefix + start, stop=None if stop is None else prefix + stop
        )
        for full, raw in pairs:
            value, version = _unpack(raw)
            yield full[len(prefix) :], value, version

    def apply(self, writes: Iterable[KVWrite], version: Version, batch: WriteBatch) -> None:
        """Stage *writes* of one transaction at *version* into *batch* (deletes remove keys)."""
        for write in writes:
            key = schema.state_key(write.namespace, write.key)
            if write.is_delete:
                batch.delete(key)
            else:
                batch.put(key, version.pack() + write.value)

    def state_hash(self) -> bytes:
        """sha256 over every (namespace, key, version, value) in key order, length-prefixed."""
        digest = hashlib.sha256(_STATE_HASH_DOMAIN)
        for full, raw in self.kv.iterate(schema.STATE):
            namespace, key = schema.split_state_key(full)
            ns = namespace.encode("utf-8")
            value = raw[_VERSION_BYTES:]
            digest.update(schema.U16.pack(len(ns)) + ns)
            digest.update(schema.U32.pack(len(key)) + key)
            digest.update(raw[:_VERSION_BYTES])
            digest.update(schema.U32.pack(len(value)) + value)
        return digest.digest()


def _unpack(raw: bytes) -> tuple[bytes, Version]:
    if len(raw) < _VERSION_BYTES:
        raise CorruptionError("world-state record shorter than its version")
    (block,) = schema.U64.unpack_from(raw)
    (tx,) = schema.U32.unpack_from(raw, schema.U64.size)
    return raw[_VERSION_BYTES:], Version(block, tx)
