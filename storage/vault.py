"""VaultStore: off-chain records, content-addressed by their SHA-256 (the cid).

The chain carries only cids; the (encrypted) record bytes stay here, in the node's own
database, and can be deleted (erasure) without touching the chain. A record larger than
:data:`protocol.limits.RECORD_BYTES_MAX` is refused with OversizeError. Reads check the
bytes against their cid, so a damaged record is reported, never served.
"""

from __future__ import annotations

from collections.abc import Iterator

from protocol import limits
from protocol.errors import LocalError, OversizeError
from protocol.hashing import sha256, short_hex
from storage import schema
from storage.errors import CorruptionError
from storage.kv import KV


class VaultStore:
    """cid -> record bytes."""

    def __init__(self, kv: KV) -> None:
        self.kv = kv

    def put(self, data: bytes) -> bytes:
        """Store *data* (synced) and return its cid; storing the same bytes twice is a no-op."""
        if type(data) is not bytes:
            raise LocalError(f"a vault record must be bytes, not {type(data).__name__}")
        if len(data) > limits.RECORD_BYTES_MAX:
            raise OversizeError(
                f"record of {len(data)} bytes over the limit {limits.RECORD_BYTES_MAX}"
            )
        cid = sha256(data)
        self.kv.put(schema.vault_key(cid), data, sync=True)
        return cid

    def get(self, cid: bytes) -> bytes | None:
        """The record with *cid*, None if absent."""
        data = self.kv.get(schema.vault_key(cid))
        if data is not None and sha256(data) != cid:
            raise CorruptionError(f"vault record {short_hex(cid)} does not match its cid")
        return data

    def delete(self, cid: bytes) -> bool:
        """Remove the record with *cid* (synced); True if it was there."""
        key = schema.vault_key(cid)
        if self.kv.get(key) is None:
            return False
        self.kv.delete(key, sync=True)
        return True

    def __contains__(self, cid: object) -> bool:
        return type(cid) is bytes and self.kv.get(schema.vault_key(cid)) is not None

    def iter_cids(self) -> Iterator[bytes]:
        """Every stored cid, in byte order."""
        for key, _ in self.kv.iterate(schema.VAULT):
            yield key[len(schema.VAULT) :]
