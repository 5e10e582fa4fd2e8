"""BlockStore contract, on both backends: the hash chain and its indexes.

Proves appends only at the height and on the tip hash (a refused block leaves every key of
the KV untouched), lookups by number, hash and tx id (first location wins for a duplicate),
staged appends that advance the height only after their batch commits, recovery of height
and tip from the KV alone, and corruption reported rather than served.
"""

from __future__ import annotations

import random

import pytest

from protocol.block import GENESIS_PREVIOUS_HASH, tx_ids_of
from protocol.codec import encode
from protocol.errors import InvariantViolation, LocalError, RemoteError
from storage import schema
from storage.blocks import BlockStore
from storage.errors import BlockOrderError, CorruptionError
from storage.kv import KV
from tests.contract.blocks_factory import ChainBuilder, make_block, make_tx
from tests.contract.conftest import Backend


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


def test_an_empty_store(kv: KV) -> None:
    blocks = BlockStore(kv)
    assert blocks.height == 0
    assert blocks.tip_hash is None
    assert blocks.get(0) is None
    assert blocks.get_raw(0) is None
    assert blocks.get_by_hash(GENESIS_PREVIOUS_HASH) is None
    assert list(blocks.iter_blocks()) == []


def test_append_and_look_up(kv: KV, rng: random.Random) -> None:
    blocks = BlockStore(kv)
    chain = ChainBuilder(rng).blocks(4, txs_per_block=3)
    for block in chain:
        blocks.append(block)
    assert blocks.height == 4
    assert blocks.tip_hash == chain[-1].hash()
    for block in chain:
        assert blocks.get(block.number) == block
        assert blocks.get_raw(block.number) == encode(block)
        assert blocks.get_by_hash(block.hash()) == block
        for index, tx_id in enumerate(tx_ids_of(block)):
            assert blocks.locate_tx(tx_id) == (block.number, index)
    assert blocks.get(4) is None
    assert blocks.get(-1) is None
    assert blocks.locate_tx(bytes(32)) is None
    assert list(blocks.iter_blocks()) == chain
    assert list(blocks.iter_blocks(2)) == chain[2:]
    assert list(blocks.iter_blocks(9)) == []


def test_empty_blocks_are_fine(kv: KV, rng: random.Random) -> None:
    blocks = BlockStore(kv)
    block = ChainBuilder(rng).next_block([])[0]
    blocks.append(block)
    assert blocks.get(0) == block


@pytest.mark.parametrize("number", [1, 5])
def test_refuses_a_genesis_with_the_wrong_number(kv: KV, rng: random.Random, number: int) -> None:
    blocks = BlockStore(kv)
    with pytest.raises(BlockOrderError, match="height 0"):
        blocks.append(make_block(number, GENESIS_PREVIOUS_HASH, [make_tx(rng)]))
    assert list(kv.iterate()) == []
    assert blocks.height == 0


def test_refuses_a_genesis_on_a_nonzero_previous_hash(kv: KV, rng: random.Random) -> None:
    blocks = BlockStore(kv)
    with pytest.raises(BlockOrderError, match="previous hash"):
        blocks.append(make_block(0, b"\x01" * 32, [make_tx(rng)]))
    assert list(kv.iterate()) == []


def test_refused_blocks_leave_the_store_unchanged(kv: KV, rng: random.Random) -> None:
    blocks = BlockStore(kv)
    chain = ChainBuilder(rng).blocks(3)
    for block in chain[:2]:
        blocks.append(block)
    before = list(kv.iterate())
    tip = blocks.tip_hash
    refused = [
        chain[0],  # again
        chain[1],  # again
        make_block(3, chain[1].hash(), [make_tx(rng)]),  # a gap
        make_block(2, chain[0].hash(), [make_tx(rng)]),  # a fork: wrong previous hash
        make_block(2, GENESIS_PREVIOUS_HASH, [make_tx(rng)]),
    ]
    for block in refused:
        with pytest.raises(BlockOrderError):
            blocks.append(block)
        with kv.batch() as batch, pytest.raises(BlockOrderError):
            blocks.append(block, batch)
    assert list(kv.iterate()) == before
    assert (blocks.height, blocks.tip_hash) == (2, tip)
    blocks.append(chain[2])
    assert blocks.height == 3


def test_a_block_with_an_undecodable_transaction_writes_nothing(kv: KV) -> None:
    blocks = BlockStore(kv)
    with pytest.raises(RemoteError):
        blocks.append(make_block(0, GENESIS_PREVIOUS_HASH, [b"not msgpack \xc1"]))
    assert list(kv.iterate()) == []
    assert blocks.height == 0


def test_a_duplicate_tx_id_keeps_its_first_location(kv: KV, rng: random.Random) -> None:
    blocks = BlockStore(kv)
    nonce = rng.randbytes(24)
    twice = make_tx(rng, nonce=nonce)
    other = make_tx(rng)
    genesis = make_block(0, GENESIS_PREVIOUS_HASH, [other, twice, twice])
    blocks.append(genesis)
    (tx_id,) = set(tx_ids_of(genesis)) - {tx_ids_of(genesis)[0]}
    assert blocks.locate_tx(tx_id) == (0, 1)
    again = make_block(1, genesis.hash(), [make_tx(rng), make_tx(rng, nonce=nonce)])
    blocks.append(again)  # not an error here: validation marks the duplicate
    assert blocks.locate_tx(tx_id) == (0, 1)
    assert blocks.get(1) == again


def test_a_duplicate_tx_id_in_blocks_staged_together_keeps_its_first_location(
    kv: KV, rng: random.Random
) -> None:
    blocks = BlockStore(kv)
    nonce = rng.randbytes(24)
    genesis = make_block(0, GENESIS_PREVIOUS_HASH, [make_tx(rng), make_tx(rng, nonce=nonce)])
    again = make_block(1, genesis.hash(), [make_tx(rng, nonce=nonce)])
    with kv.batch() as batch:
        blocks.append(genesis, batch)
        blocks.append(again, batch)
    blocks.note_committed(genesis)
    blocks.note_committed(again)
    assert blocks.locate_tx(tx_ids_of(again)[0]) == (0, 1)


def test_staged_append_advances_only_after_commit(kv: KV, rng: random.Random) -> None:
    blocks = BlockStore(kv)
    genesis, second = ChainBuilder(rng).blocks(2)
    with kv.batch() as batch:
        blocks.append(genesis, batch)
        assert blocks.height == 0
        assert blocks.tip_hash is None
        with pytest.raises(InvariantViolation, match="before its batch committed"):
            blocks.note_committed(genesis)
    assert blocks.height == 0  # committed but not yet noted
    blocks.note_committed(genesis)
    assert (blocks.height, blocks.tip_hash) == (1, genesis.hash())
    with pytest.raises(InvariantViolation, match="not the next staged block"):
        blocks.note_committed(genesis)
    blocks.append(second)
    assert blocks.get(1) == second


def test_blocks_staged_together_chain_on_each_other(kv: KV, rng: random.Random) -> None:
    blocks = BlockStore(kv)
    genesis, second, third = ChainBuilder(rng).blocks(3)
    with kv.batch() as batch:
        blocks.append(genesis, batch)
        with pytest.raises(BlockOrderError):
            blocks.append(third, batch)  # must follow the staged genesis, not the empty store
        blocks.append(second, batch)
        assert (blocks.height, blocks.next_number) == (0, 2)
    with pytest.raises(InvariantViolation, match="not the next staged block"):
        blocks.note_committed(second)  # noted out of order
    blocks.note_committed(genesis)
    blocks.note_committed(second)
    assert (blocks.height, blocks.next_number, blocks.tip_hash) == (2, 2, second.hash())
    blocks.append(third)
    assert [b.number for b in blocks.iter_blocks()] == [0, 1, 2]


def test_a_failed_batch_leaves_no_staged_block(kv: KV, rng: random.Random) -> None:
    blocks = BlockStore(kv)
    (genesis,) = ChainBuilder(rng).blocks(1)
    with pytest.raises(RuntimeError), kv.batch() as batch:
        blocks.append(genesis, batch)
        raise RuntimeError("crash before commit")
    assert list(kv.iterate()) == []
    assert blocks.height == 0
    blocks.append(genesis)
    assert blocks.height == 1


def test_height_and_tip_recover_from_the_kv(backend: Backend, rng: random.Random) -> None:
    blocks = BlockStore(backend.kv)
    chain = ChainBuilder(rng).blocks(5)
    for block in chain:
        blocks.append(block)
    reopened = BlockStore(backend.reopen())
    assert (reopened.height, reopened.tip_hash) == (5, chain[-1].hash())
    assert list(reopened.iter_blocks()) == chain
    (extra,) = ChainBuilder(rng, height=5, tip_hash=chain[-1].hash()).blocks(1)
    reopened.append(extra)
    assert reopened.height == 6


def test_corruption_is_reported(kv: KV, rng: random.Random) -> None:
    blocks = BlockStore(kv)
    genesis, second = ChainBuilder(rng).blocks(2)
    blocks.append(genesis)
    blocks.append(second)
    kv.put(schema.block_key(0), b"\x92garbage")
    with pytest.raises(CorruptionError, match="block 0"):
        blocks.get(0)
    assert blocks.get_raw(0) == b"\x92garbage"
    assert blocks.get(1) == second
    kv.put(schema.block_key(1), b"")
    with pytest.raises(CorruptionError):
        BlockStore(kv)


def test_precomputed_tx_ids_index_the_same_and_must_match(kv: KV, rng: random.Random) -> None:
    blocks = BlockStore(kv)
    chain = ChainBuilder(rng).blocks(2, txs_per_block=3)
    with pytest.raises(LocalError):
        blocks.append(chain[0], tx_ids=tx_ids_of(chain[0])[:2])
    assert blocks.height == 0
    for block in chain:
        blocks.append(block, tx_ids=tx_ids_of(block))
    for block in chain:
        for index, tx_id in enumerate(tx_ids_of(block)):
            assert blocks.locate_tx(tx_id) == (block.number, index)
