"""The peer's block validator (node.validator) over real stores: blocks validated before one
shared write see each other's writes, tx ids and revocations; a discarded batch is
forgotten; and every signature is verified once per node."""

from __future__ import annotations

import contextlib

import pytest

from node.validator import BlockValidator, ValidatedBlock
from protocol.block import GENESIS_PREVIOUS_HASH, Block, BlockMetadata, make_header
from protocol.block import ValidationCode as Code
from protocol.codec import encode, replace
from protocol.transaction import Envelope, KVRead, KVWrite
from storage.ledger import Stores
from storage.memory import MemoryKV
from storage.schema import open_store
from tests.unit.endorsed_world import NOW_MS, World, make_world

QUORUM = ("northgate", "riverside", "stmarys")


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


@pytest.fixture
def stores() -> Stores:
    return open_store(MemoryKV())


def _block(number: int, previous: bytes, envelopes: list[Envelope]) -> Block:
    txs = tuple(encode(e) for e in envelopes)
    header = make_header(number, previous, txs, NOW_MS + 1000 * number)
    return Block(
        header=header,
        transactions=txs,
        metadata=BlockMetadata(signer=b"", signature=b"", validation_codes=b""),
    )


def _write(key: bytes, value: bytes = b"v") -> KVWrite:
    return KVWrite(namespace="registry", key=key, value=value, is_delete=False)


def _absent(key: bytes) -> KVRead:
    return KVRead(namespace="registry", key=key, exists=False, version_block=0, version_tx=0)


def _write_all(stores: Stores, validator: BlockValidator, blocks: list[ValidatedBlock]) -> None:
    with validator.writing(), stores.kv.batch(sync=True) as batch:
        for v in blocks:
            stores.stage_block(v.block, v.writes, batch, v.tx_ids)
    for v in blocks:
        stores.blocks.note_committed(v.block)


def _discard(validator: BlockValidator) -> None:
    """A write of the validated blocks that fails: the disk never gets them."""
    with contextlib.suppress(OSError), validator.writing():
        raise OSError("the disk refused the batch")


def test_blocks_of_one_batch_see_each_others_writes_and_tx_ids(
    world: World, stores: Stores
) -> None:
    validator = BlockValidator(stores, world.trust, world.config.orgs)
    first = world.envelope(world.transaction(QUORUM, reads=(_absent(b"k"),)))
    stale = world.envelope(world.transaction(QUORUM, reads=(_absent(b"k"),)))
    genesis = _block(0, GENESIS_PREVIOUS_HASH, [first])
    v0 = validator.validate(genesis, world.config)
    assert v0.codes == bytes([Code.VALID])
    # Not written yet: block 1 must still see block 0's write and tx id.
    v1 = validator.validate(_block(1, genesis.hash(), [stale, first]), world.config)
    assert v1.codes == bytes([Code.MVCC_READ_CONFLICT, Code.DUPLICATE_TXID])
    assert v1.reasons[0] == "a key it read has changed since"
    assert v1.writes == []
    _write_all(stores, validator, [v0, v1])
    value, version = stores.state.get("registry", b"k")  # type: ignore[misc]
    assert (value, version.block, version.tx) == (b"v", 0, 0)
    # After the write the stores answer as the overlay did (an invalid tx's id counts too).
    late = world.envelope(world.transaction(QUORUM, reads=(_absent(b"k"),)))
    again = BlockValidator(stores, world.trust, world.config.orgs).validate(
        _block(2, v1.block.hash(), [late, stale]), world.config
    )
    assert again.codes == bytes([Code.MVCC_READ_CONFLICT, Code.DUPLICATE_TXID])


def test_a_revocation_applies_to_the_next_block_and_a_discarded_batch_is_forgotten(
    world: World, stores: Stores
) -> None:
    validator = BlockValidator(stores, world.trust, world.config.orgs)
    serial_key = b"revoked/%020d" % world.creator_serial
    revoke = world.envelope(world.transaction(QUORUM, writes=(_write(serial_key, b"doctor"),)))
    genesis = _block(0, GENESIS_PREVIOUS_HASH, [revoke])
    assert validator.validate(genesis, world.config).codes == bytes([Code.VALID])
    assert world.creator_serial in validator.revoked
    later = world.envelope(world.transaction(QUORUM))
    v1 = validator.validate(_block(1, genesis.hash(), [later]), world.config)
    assert v1.codes == bytes([Code.BAD_CREATOR])
    assert v1.reasons[0] == "creator: certificate is revoked"

    _discard(validator)  # the batch never reached the disk
    assert world.creator_serial not in validator.revoked
    assert validator.validate(
        _block(0, GENESIS_PREVIOUS_HASH, [later]), world.config
    ).codes == bytes([Code.VALID])


def test_each_signature_is_verified_once_per_node(world: World, stores: Stores) -> None:
    envelope = world.envelope(world.transaction(QUORUM))
    block = _block(0, GENESIS_PREVIOUS_HASH, [envelope])
    validator = BlockValidator(stores, world.trust, world.config.orgs)
    before = world.trust.signatures_verified
    assert validator.validate(block, world.config).codes == bytes([Code.VALID])
    assert world.trust.signatures_verified - before == 4  # the creator and 3 endorsers
    _discard(validator)
    assert validator.validate(block, world.config).codes == bytes([Code.VALID])
    assert world.trust.signatures_verified - before == 4  # nothing verified twice
    # A failure is never remembered: a forged creator signature fails every time.
    forged = replace(envelope, signature=world.keys["northgate"].sign(b"other"))
    for attempt in (1, 2):
        _discard(validator)
        bad = validator.validate(_block(0, GENESIS_PREVIOUS_HASH, [forged]), world.config)
        assert bad.codes == bytes([Code.BAD_CREATOR])
        assert world.trust.signatures_verified - before == 4 + attempt
