"""SHA-256 hashing: message hashes, transaction ids and the block data Merkle root.

The block data hash is an RFC 6962 Merkle tree hash over the transactions' canonical bytes:
leaves are ``sha256(0x00 || tx)``, inner nodes ``sha256(0x01 || left || right)``, and a list
of n > 1 leaves splits at the largest power of two below n. Domain separation between
leaves and inner nodes, and hashing each transaction as its own leaf, mean the same bytes can
never be re-cut into a different transaction list with the same root (the class of bug behind
Fabric's CVE-2023-46132), and no two lists of different lengths share a root.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

from protocol import limits

_LEAF = b"\x00"
_NODE = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def sha256(data: bytes) -> bytes:
    """The SHA-256 digest of *data*."""
    return hashlib.sha256(data).digest()


@functools.lru_cache(maxsize=4096)
def tx_id_of(nonce: bytes, creator: bytes) -> bytes:
    """The transaction id: sha256(nonce || creator certificate), as DESIGN.md fixes it.

    Remembered for the last few thousand transactions: a node asks for a transaction's id
    at ingress, forwarding, cutting, validation and commit, each time of the same objects.
    """
    return hashlib.sha256(nonce + creator).digest()


def merkle_root(items: Sequence[bytes]) -> bytes:
    """The RFC 6962 Merkle tree hash of *items* (each one leaf)."""
    if not items:
        return EMPTY_ROOT
    level = [hashlib.sha256(_LEAF + item).digest() for item in items]
    return _root_of_leaf_hashes(level)


def _root_of_leaf_hashes(hashes: list[bytes]) -> bytes:
    n = len(hashes)
    if n == 1:
        return hashes[0]
    split = 1 << ((n - 1).bit_length() - 1)  # largest power of two strictly below n
    left = _root_of_leaf_hashes(hashes[:split])
    right = _root_of_leaf_hashes(hashes[split:])
    return hashlib.sha256(_NODE + left + right).digest()


def short_hex(digest: bytes, chars: int = 16) -> str:
    """A readable prefix of a digest for tables and logs."""
    return digest.hex()[:chars]


if hashlib.sha256().digest_size != limits.HASH_BYTES:  # pragma: no cover - import-time check
    raise ImportError("protocol.limits.HASH_BYTES disagrees with SHA-256")
