"""Blocks: a signed, hash-chained header, the ordered transactions and their validation codes.

``header.data_hash`` is the Merkle root (:func:`protocol.hashing.merkle_root`) over the
transactions' canonical bytes and ``header.tx_count`` their number; ``header.previous_hash``
is the hash of the previous header (32 zero bytes for the genesis block). The node that cut
the block signs the header's canonical bytes; the signature lives in the metadata with one
validation code per transaction, set by validation and identical on every peer.
"""

from __future__ import annotations

from protocol import limits
from protocol.codec import decode, encode, field, message
from protocol.config import ConfigEnvelope
from protocol.errors import DecodeError, FieldError
from protocol.hashing import merkle_root, sha256
from protocol.transaction import Envelope

GENESIS_PREVIOUS_HASH = bytes(limits.HASH_BYTES)


class ValidationCode:
    """One byte per transaction in ``BlockMetadata.validation_codes``."""

    VALID = 0
    BAD_CONFIG_UPDATE = 1  # a configuration update that does not follow from the current one
    BAD_CREATOR = 2  # creator certificate invalid, expired or revoked, or signature bad
    WRONG_NETWORK = 3  # the proposal names another network
    ENDORSEMENT_POLICY_FAILURE = 4  # fewer than q valid endorsements of its response
    DUPLICATE_TXID = 5  # the tx_id is already in the chain or earlier in this block
    MVCC_READ_CONFLICT = 6  # a key it read has changed since (or earlier in this block)
    BAD_RWSET = 7  # reads or writes outside the contract's own namespace
    NOT_VALIDATED = 255


_CODE_NAMES = {
    value: name
    for name, value in vars(ValidationCode).items()
    if name.isupper() and isinstance(value, int)
}
_CODE_MEANINGS = {
    ValidationCode.VALID: "valid: its writes are in the world state",
    ValidationCode.BAD_CONFIG_UPDATE: (
        "a configuration update that does not follow from the current one"
    ),
    ValidationCode.BAD_CREATOR: (
        "the creator's certificate is invalid, expired or revoked, or its signature is bad"
    ),
    ValidationCode.WRONG_NETWORK: "the proposal names another network",
    ValidationCode.ENDORSEMENT_POLICY_FAILURE: "too few valid endorsements of its response",
    ValidationCode.DUPLICATE_TXID: "its tx_id was already used",
    ValidationCode.MVCC_READ_CONFLICT: "a key it read changed before it committed; run it again",
    ValidationCode.BAD_RWSET: "it reads or writes outside its contract's namespace",
    ValidationCode.NOT_VALIDATED: "not validated",
}


def code_of(block: Block, index: int) -> int:
    """The validation code of transaction *index* of *block* (NOT_VALIDATED if it has none)."""
    codes = block.metadata.validation_codes
    return codes[index] if index < len(codes) else ValidationCode.NOT_VALIDATED


def code_name(code: int) -> str:
    """The name of a validation code (``VALID``, ``MVCC_READ_CONFLICT``, ...)."""
    return _CODE_NAMES.get(code, f"UNKNOWN_{code}")


def code_meaning(code: int) -> str:
    """What a validation code means, in a phrase."""
    return _CODE_MEANINGS.get(code, "an unknown validation code")


@message("block_header")
class BlockHeader:
    """What the cutting node signs and the next block's previous_hash commits to."""

    number: int = field(min=0)
    previous_hash: bytes = field(exact_len=limits.HASH_BYTES)
    data_hash: bytes = field(exact_len=limits.HASH_BYTES)
    tx_count: int = field(min=0, max=limits.BLOCK_TXS_MAX)
    timestamp_ms: int = field(min=0)

    def hash(self) -> bytes:
        """sha256 of the header's canonical bytes: the block hash."""
        return sha256(encode(self))


@message("block_metadata")
class BlockMetadata:
    """The cutter's certificate and header signature, and per-transaction validation codes."""

    signer: bytes = field(max_len=limits.CERTIFICATE_BYTES_MAX)
    signature: bytes = field(max_len=limits.SIGNATURE_BYTES_MAX)
    validation_codes: bytes = field(max_len=limits.BLOCK_TXS_MAX)


@message("block")
class Block:
    """A block as stored and shipped: header, transactions (canonical bytes) and metadata."""

    header: BlockHeader
    transactions: tuple[bytes, ...] = field(
        max_len=limits.BLOCK_TXS_MAX, item_max_len=limits.ENVELOPE_BYTES_MAX
    )
    metadata: BlockMetadata

    def check(self) -> None:
        size = sum(map(len, self.transactions))
        if size > limits.BLOCK_BYTES_MAX:
            raise FieldError(
                "block", "transactions", f"{size} bytes over the limit {limits.BLOCK_BYTES_MAX}"
            )

    @property
    def number(self) -> int:
        return self.header.number

    def hash(self) -> bytes:
        """The block hash (the header hash)."""
        return self.header.hash()


def data_hash_of(transactions: tuple[bytes, ...] | list[bytes]) -> bytes:
    """The header data hash for these transactions."""
    return merkle_root(transactions)


def make_header(
    number: int, previous_hash: bytes, transactions: tuple[bytes, ...], timestamp_ms: int
) -> BlockHeader:
    """The header that commits to *transactions* after the block *previous_hash*."""
    return BlockHeader(
        number=number,
        previous_hash=previous_hash,
        data_hash=data_hash_of(transactions),
        tx_count=len(transactions),
        timestamp_ms=timestamp_ms,
    )


def decode_tx(raw: bytes) -> Envelope | ConfigEnvelope:
    """Decode one transaction of a block: an Envelope or a ConfigEnvelope."""
    msg: object = decode(raw, max_bytes=limits.ENVELOPE_BYTES_MAX)
    if not isinstance(msg, (Envelope, ConfigEnvelope)):
        raise DecodeError(f"a block transaction cannot be a {type(msg).TAG}")  # type: ignore[attr-defined]
    return msg


def tx_ids_of(block: Block) -> list[bytes]:
    """The transaction ids of a block's transactions, in order."""
    return [decode_tx(raw).tx_id for raw in block.transactions]


def data_problems(block: Block) -> list[str]:
    """What is wrong with a block's data against its own header (empty if nothing)."""
    problems = []
    if block.header.tx_count != len(block.transactions):
        problems.append(
            f"header counts {block.header.tx_count} transactions,"
            f" block has {len(block.transactions)}"
        )
    if block.header.data_hash != data_hash_of(block.transactions):
        problems.append("data hash does not match the transactions")
    if len(block.metadata.validation_codes) not in (0, len(block.transactions)):
        problems.append("validation codes do not match the transaction count")
    return problems
