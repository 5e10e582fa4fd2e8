"""Real blocks for tests: canonical envelopes with dummy signatures, chained headers.

Nothing here signs or verifies: creators, endorsers and signatures are fixed dummy bytes,
so these blocks suit storage, indexing and chaining tests, not identity checks. Every
transaction gets a fresh 24-byte nonce from the caller's ``random.Random``, so tx ids are
unique and reproducible from the seed.

    chain = ChainBuilder(random.Random(7))
    block, valid_writes = chain.next_block([[put("records", b"k", b"v")], []])
    commit_block(kv, blocks, state, block, valid_writes)
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from protocol import limits
from protocol.block import (
    GENESIS_PREVIOUS_HASH,
    Block,
    BlockMetadata,
    ValidationCode,
    decode_tx,
    make_header,
)
from protocol.codec import encode
from protocol.transaction import (
    Endorsement,
    Envelope,
    KVWrite,
    Proposal,
    ProposalResponse,
    RwSet,
    Transaction,
    proposal_hash,
)

NETWORK_ID = "test-net"
CONTRACT = "records"
DUMMY_CREATOR = b"dummy-creator-certificate"
DUMMY_SIGNATURE = b"\x30" * 8
DUMMY_SIGNER = b"dummy-cutter-certificate"
TIMESTAMP_MS = 1_700_000_000_000


def put(namespace: str, key: bytes, value: bytes) -> KVWrite:
    """A write of *value* to *key*."""
    return KVWrite(namespace=namespace, key=key, value=value, is_delete=False)


def delete(namespace: str, key: bytes) -> KVWrite:
    """A delete of *key*."""
    return KVWrite(namespace=namespace, key=key, value=b"", is_delete=True)


def make_tx(
    rng: random.Random,
    writes: Sequence[KVWrite] = (),
    *,
    creator: bytes = DUMMY_CREATOR,
    nonce: bytes | None = None,
    timestamp_ms: int = TIMESTAMP_MS,
) -> bytes:
    """The canonical bytes of an Envelope whose response writes *writes*."""
    proposal = Proposal(
        network_id=NETWORK_ID,
        contract=CONTRACT,
        function="put",
        args=(),
        creator=creator,
        nonce=nonce if nonce is not None else rng.randbytes(limits.NONCE_BYTES),
        timestamp_ms=timestamp_ms,
    )
    response = ProposalResponse(
        proposal_hash=proposal_hash(proposal),
        status=200,
        message="",
        result=b"",
        rw_set=RwSet(reads=(), writes=tuple(writes)),
        events=(),
    )
    endorsement = Endorsement(cert_hash=bytes(32), signature=DUMMY_SIGNATURE)
    transaction = Transaction(proposal=proposal, response=response, endorsements=(endorsement,))
    return encode(Envelope(transaction=transaction, signature=DUMMY_SIGNATURE))


def writes_of(raw_tx: bytes) -> tuple[KVWrite, ...]:
    """The writes a transaction's endorsed response carries."""
    envelope = decode_tx(raw_tx)
    if not isinstance(envelope, Envelope):
        return ()
    return envelope.transaction.response.rw_set.writes


def make_block(
    number: int,
    previous_hash: bytes,
    transactions: Sequence[bytes] = (),
    *,
    timestamp_ms: int = TIMESTAMP_MS,
) -> Block:
    """A block of *transactions* after *previous_hash*, all marked VALID."""
    txs = tuple(transactions)
    return Block(
        header=make_header(number, previous_hash, txs, timestamp_ms + number),
        transactions=txs,
        metadata=BlockMetadata(
            signer=DUMMY_SIGNER,
            signature=DUMMY_SIGNATURE,
            validation_codes=bytes([ValidationCode.VALID]) * len(txs),
        ),
    )


class ChainBuilder:
    """Builds a hash chain from genesis on, one block per call."""

    def __init__(self, rng: random.Random, *, height: int = 0, tip_hash: bytes | None = None):
        self.rng = rng
        self.height = height
        self.tip_hash = GENESIS_PREVIOUS_HASH if tip_hash is None else tip_hash

    def next_block(
        self, tx_writes: Sequence[Sequence[KVWrite]] = ((),)
    ) -> tuple[Block, list[tuple[int, tuple[KVWrite, ...]]]]:
        """The next block, one transaction per entry of *tx_writes*, and its valid_writes."""
        txs = [make_tx(self.rng, writes) for writes in tx_writes]
        block = make_block(self.height, self.tip_hash, txs)
        self.height += 1
        self.tip_hash = block.hash()
        return block, [(i, tuple(w)) for i, w in enumerate(tx_writes)]

    def blocks(self, count: int, txs_per_block: int = 2) -> list[Block]:
        """*count* next blocks of *txs_per_block* transactions with no writes."""
        return [self.next_block([()] * txs_per_block)[0] for _ in range(count)]
