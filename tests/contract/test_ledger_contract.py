"""commit_block contract, on both backends: a block and its valid writes, all or nothing.

Proves writes land at Version(block, tx_index) for valid transactions only, later
transactions of a block win, a refused or failing commit leaves the KV byte-for-byte as it
was and the height unmoved, and open_store checks the schema and wires every store.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from protocol.errors import LocalError
from storage import schema
from storage.blocks import BlockStore
from storage.errors import BlockOrderError
from storage.kv import KV
from storage.ledger import Stores, commit_block
from storage.memory import MemoryKV
from storage.state import Version, WorldState
from tests.contract.blocks_factory import ChainBuilder, delete, put
from tests.contract.conftest import Backend


@pytest.fixture
def stores(kv: KV) -> Stores:
    return schema.open_store(kv)


@pytest.fixture
def chain() -> ChainBuilder:
    return ChainBuilder(random.Random(99))


def test_commits_the_block_and_the_writes_of_valid_transactions(
    stores: Stores, chain: ChainBuilder
) -> None:
    block, _ = chain.next_block(
        [[put("r", b"a", b"1")], [put("r", b"b", b"2")], [put("r", b"a", b"3")]]
    )
    # Transaction 1 failed validation: its writes are not passed in.
    commit_block(
        stores.kv, stores.blocks, stores.state, block,
        [(0, [put("r", b"a", b"1")]), (2, [put("r", b"a", b"3")])],
    )  # fmt: skip
    assert stores.blocks.height == 1
    assert stores.blocks.get(0) == block
    assert stores.state.get("r", b"a") == (b"3", Version(0, 2))
    assert stores.state.get("r", b"b") is None


def test_versions_and_deletes_across_blocks(stores: Stores, chain: ChainBuilder) -> None:
    for tx_writes in (
        [[put("r", b"k", b"v0")], [put("r", b"gone", b"x")]],
        [[], [put("r", b"k", b"v1")], [delete("r", b"gone")]],
    ):
        stores.commit_block(*chain.next_block(tx_writes))
    assert stores.state.get("r", b"k") == (b"v1", Version(1, 1))
    assert stores.state.get("r", b"gone") is None
    assert stores.blocks.height == 2


def test_a_block_out_of_order_commits_nothing(stores: Stores, chain: ChainBuilder) -> None:
    stores.commit_block(*chain.next_block([[put("r", b"k", b"v")]]))
    before = list(stores.kv.iterate())
    chain.next_block()  # skipped: the next one leaves a gap
    block, writes = chain.next_block([[put("r", b"k", b"other")]])
    with pytest.raises(BlockOrderError):
        stores.commit_block(block, writes)
    assert list(stores.kv.iterate()) == before
    assert stores.blocks.height == 1


@pytest.mark.parametrize("indexes", [[1, 0], [0, 0], [3], [-1]])
def test_bad_tx_indexes_commit_nothing(
    stores: Stores, chain: ChainBuilder, indexes: list[int]
) -> None:
    before = list(stores.kv.iterate())
    block, _ = chain.next_block([[], [], []])
    with pytest.raises(LocalError, match="tx index"):
        stores.commit_block(block, [(i, [put("r", b"k", b"v")]) for i in indexes])
    assert list(stores.kv.iterate()) == before
    assert stores.blocks.height == 0


def test_a_failure_midway_commits_nothing(stores: Stores, chain: ChainBuilder) -> None:
    before = list(stores.kv.iterate())
    block, _ = chain.next_block([[], []])

    def writes_then_fail() -> Iterator:  # type: ignore[type-arg]
        yield put("r", b"k", b"v")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        stores.commit_block(block, [(0, [put("r", b"j", b"v")]), (1, writes_then_fail())])  # type: ignore[list-item]
    assert list(stores.kv.iterate()) == before
    assert stores.blocks.height == 0
    stores.commit_block(block, [])  # the store is still usable
    assert stores.blocks.height == 1


def test_stores_must_share_the_kv(kv: KV, chain: ChainBuilder) -> None:
    block, writes = chain.next_block()
    with pytest.raises(LocalError, match="share"):
        commit_block(kv, BlockStore(kv), WorldState(MemoryKV()), block, writes)
    with pytest.raises(LocalError, match="share"):
        commit_block(kv, BlockStore(MemoryKV()), WorldState(kv), block, writes)
    assert list(kv.iterate()) == []


def test_open_store_reopens_everything(backend: Backend, chain: ChainBuilder) -> None:
    stores = schema.open_store(backend.kv)
    for _ in range(3):
        stores.commit_block(*chain.next_block([[put("r", b"k", b"v")]]))
    cid = stores.vault.put(b"record")
    stores.raft_log.compact(0)
    again = schema.open_store(backend.reopen())
    assert again.blocks.height == 3
    assert again.blocks.tip_hash == chain.tip_hash
    assert again.state.get("r", b"k") == (b"v", Version(2, 0))
    assert cid in again.vault
