"""The key layout of a node's one database, and its schema version.

Every key starts with a one-byte prefix naming its region; integers in keys are big-endian
and fixed-width, so iteration order is numeric order.

=====================  ==========================================  ============================
key                    layout                                       value
=====================  ==========================================  ============================
META                   0x00 name                                    per key (schema version: u32)
RAFT_HARD_STATE        0x01                                         term u64, commit u64, vote utf-8
RAFT_ENTRY             0x02 index u64                               term u64, data
RAFT_SNAPSHOT          0x03 "o" (log origin) / 0x03 "d" (snapshot)  index u64, term u64 [, data]
BLOCK                  0x10 number u64                              canonical Block bytes
BLOCK_HASH             0x11 header hash (32)                        number u64
TX                     0x12 tx_id (32)                              number u64, tx index u32
STATE                  0x20 len(ns) u16, ns utf-8, key              block u64, tx u32, value
VAULT                  0x30 cid (32)                                record bytes
=====================  ==========================================  ============================

A database is stamped with :data:`SCHEMA_VERSION` when first opened; a database with
another version, or with data but no version, is refused rather than misread.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from protocol.errors import ConfigError
from storage.kv import KV

if TYPE_CHECKING:
    from storage.ledger import Stores

SCHEMA_VERSION = 2  # 2: endorsements name their endorser by certificate hash

META = b"\x00"
RAFT_HARD_STATE = b"\x01"
RAFT_ENTRY = b"\x02"
RAFT_SNAPSHOT = b"\x03"
BLOCK = b"\x10"
BLOCK_HASH = b"\x11"
TX = b"\x12"
STATE = b"\x20"
VAULT = b"\x30"

PREFIXES = {
    "meta": META,
    "raft hard state": RAFT_HARD_STATE,
    "raft entries": RAFT_ENTRY,
    "raft snapshot": RAFT_SNAPSHOT,
    "blocks": BLOCK,
    "block hash index": BLOCK_HASH,
    "tx index": TX,
    "world state": STATE,
    "vault": VAULT,
}

SCHEMA_VERSION_KEY = META + b"schema_version"
RAFT_HARD_STATE_KEY = RAFT_HARD_STATE
RAFT_LOG_ORIGIN_KEY = RAFT_SNAPSHOT + b"o"
RAFT_SNAPSHOT_KEY = RAFT_SNAPSHOT + b"d"

U16 = struct.Struct(">H")
U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")


def raft_entry_key(index: int) -> bytes:
    return RAFT_ENTRY + U64.pack(index)


def block_key(number: int) -> bytes:
    return BLOCK + U64.pack(number)


def block_hash_key(block_hash: bytes) -> bytes:
    return BLOCK_HASH + block_hash


def tx_key(tx_id: bytes) -> bytes:
    return TX + tx_id


def state_prefix(namespace: str) -> bytes:
    """The prefix of every world-state key in *namespace* (and of no other namespace's)."""
    ns = namespace.encode("utf-8")
    return STATE + U16.pack(len(ns)) + ns


def state_key(namespace: str, key: bytes) -> bytes:
    return state_prefix(namespace) + key


def split_state_key(full: bytes) -> tuple[str, bytes]:
    """(namespace, key) of a full world-state key."""
    (ns_len,) = U16.unpack_from(full, len(STATE))
    ns_end = len(STATE) + U16.size + ns_len
    return full[len(STATE) + U16.size : ns_end].decode("utf-8"), full[ns_end:]


def vault_key(cid: bytes) -> bytes:
    return VAULT + cid


def check_schema(kv: KV) -> None:
    """Stamp an empty database with SCHEMA_VERSION; refuse one stamped with another version.

    Raises ConfigError for a database of another version, or one that holds data but no
    version (not a medledger database, or a damaged one).
    """
    raw = kv.get(SCHEMA_VERSION_KEY)
    if raw is None:
        if next(kv.iterate(), None) is not None:
            raise ConfigError(
                f"{_where(kv)}holds data but no schema version: not a medledger store"
            )
        kv.put(SCHEMA_VERSION_KEY, U32.pack(SCHEMA_VERSION), sync=True)
        return
    if len(raw) != U32.size:
        raise ConfigError(f"{_where(kv)}has a malformed schema version record")
    (version,) = U32.unpack(raw)
    if version != SCHEMA_VERSION:
        older = "an older" if version < SCHEMA_VERSION else "a newer"
        raise ConfigError(
            f"{_where(kv)}has schema version {version}; this medledger reads version "
            f"{SCHEMA_VERSION} only (the data was written by {older} medledger: run that one, "
            "or start a new network in another directory)"
        )


def open_store(kv: KV) -> Stores:
    """Check the schema of *kv* and open every store on it (see :class:`storage.ledger.Stores`)."""
    from storage.ledger import Stores  # the stores import this module for their prefixes

    check_schema(kv)
    return Stores.on(kv)


def _where(kv: KV) -> str:
    path = getattr(kv, "path", None)
    return f"the database at {path} " if path is not None else "the database "
