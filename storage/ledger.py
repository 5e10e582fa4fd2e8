"""Committing a block: the block, its indexes and its valid transactions' writes, atomically.

:func:`commit_block` is the one path that writes a block together with world state. It
stages everything into one synced batch (:func:`stage_block` stages into a caller's batch,
which the ordering service shares with the Raft log); only after that batch has committed
does the BlockStore advance its height. A process killed at any instant therefore reopens either
without the block and without any of its writes, or with both.

:class:`Stores` bundles the stores that share a node's one KV; :func:`storage.schema.open_store`
builds it after checking the schema version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.block import Block
from protocol.errors import LocalError
from protocol.transaction import KVWrite
from storage.blocks import BlockStore
from storage.kv import KV, WriteBatch
from storage.raftlog import RaftLogStore
from storage.state import Version, WorldState
from storage.vault import VaultStore


def commit_block(
    kv: KV,
    blocks: BlockStore,
    state: WorldState,
    block: Block,
    valid_writes: Sequence[tuple[int, Sequence[KVWrite]]],
    tx_ids: Sequence[bytes] | None = None,
) -> None:
    """Write *block* and the writes of its valid transactions in one synced batch.

    *valid_writes* holds ``(tx_index, writes)`` for each valid transaction, in increasing
    tx_index order; each write is applied at ``Version(block.number, tx_index)``, so a later
    transaction of the block overwrites an earlier one's key. Raises BlockOrderError (store
    unchanged) for a block out of order, LocalError for bad tx indexes or mismatched stores.
    """
    with kv.batch(sync=True) as batch:
        stage_block(kv, blocks, state, block, valid_writes, batch, tx_ids)
    blocks.note_committed(block)


def stage_block(
    kv: KV,
    blocks: BlockStore,
    state: WorldState,
    block: Block,
    valid_writes: Sequence[tuple[int, Sequence[KVWrite]]],
    batch: WriteBatch,
    tx_ids: Sequence[bytes] | None = None,
) -> None:
    """Stage what :func:`commit_block` writes into the caller's synced *batch*, so other
    writes (the Raft log's) share its one sync; call ``blocks.note_committed(block)`` once
    the batch committed."""
    if blocks.kv is not kv or state.kv is not kv:
        raise LocalError("commit_block: the block store and world state must share the KV")
    previous = -1
    for tx_index, _ in valid_writes:
        if not previous < tx_index < len(block.transactions):
            raise LocalError(
                f"commit_block: tx index {tx_index} out of order or outside block "
                f"{block.number} of {len(block.transactions)} transactions"
            )
        previous = tx_index
    blocks.append(block, batch, tx_ids)
    for tx_index, writes in valid_writes:
        state.apply(writes, Version(block.number, tx_index), batch)


@dataclass(frozen=True)
class Stores:
    """Every store of one node, on its one KV."""

    kv: KV
    blocks: BlockStore
    state: WorldState
    raft_log: RaftLogStore
    vault: VaultStore

    @classmethod
    def on(cls, kv: KV) -> Stores:
        """Open every store on *kv* (call storage.schema.check_schema first, or use open_store)."""
        return cls(kv, BlockStore(kv), WorldState(kv), RaftLogStore(kv), VaultStore(kv))

    def commit_block(
        self,
        block: Block,
        valid_writes: Sequence[tuple[int, Sequence[KVWrite]]],
        tx_ids: Sequence[bytes] | None = None,
    ) -> None:
        """:func:`commit_block` on these stores."""
        commit_block(self.kv, self.blocks, self.state, block, valid_writes, tx_ids)

    def stage_block(
        self,
        block: Block,
        valid_writes: Sequence[tuple[int, Sequence[KVWrite]]],
        batch: WriteBatch,
        tx_ids: Sequence[bytes] | None = None,
    ) -> None:
        """:func:`stage_block` on these stores."""
        stage_block(self.kv, self.blocks, self.state, block, valid_writes, batch, tx_ids)
