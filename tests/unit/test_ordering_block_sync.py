"""When a member syncs the blocks it commits, driven in-process on a follower: a block whose
commit arrives without new entries is written at once without a sync of its own, and its
writes are written again in the next synced batch (so no batch that survives a crash can
hold a block without the ones before it), or by the next tick when no synced write comes; a
block over the size limit is synced at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import node.ordering
from node.envelopes import opaque_envelope
from node.metrics import Metrics
from node.ordering import OrderingNode
from protocol.block import GENESIS_PREVIOUS_HASH, Block, BlockMetadata, make_header
from protocol.codec import encode
from protocol.raft import ENTRY_NORMAL, AppendEntries, Heartbeat, RaftEntry
from storage import schema
from storage.kv import RecordingBatch
from storage.memory import MemoryKV
from storage.schema import open_store
from tests.unit.endorsed_world import World, make_world

ME, LEADER = "riverside", "northgate"


class BatchLog(MemoryKV):
    """A MemoryKV that remembers each batch's keys and whether it was synced."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[bool, set[bytes]]] = []

    @contextmanager
    def batch(self, *, sync: bool = True) -> Iterator[RecordingBatch]:  # type: ignore[override]
        with super().batch(sync=sync) as inner:
            recording = RecordingBatch(inner)
            yield recording
        self.batches.append((sync, {key for key, _ in recording.ops}))


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def _follower(world: World, kv: BatchLog) -> OrderingNode:
    member = OrderingNode(
        node_id=ME,
        network=world.config,
        stores=open_store(kv),
        trust=world.trust,
        key=world.keys[ME],
        cert_der=world.cert(ME),
        metrics=Metrics(),
        bootstrap_voters=(LEADER, ME),
    )
    member.send = lambda msg: None
    member.on_message(LEADER, Heartbeat(sender=LEADER, recipient=ME, term=1, commit=0))
    return member


def _block(number: int, previous: bytes, world: World) -> Block:
    tx = encode(
        opaque_envelope(
            b"payload %d" % number,
            network_id=world.config.network_id,
            key=world.creator_key,
            cert_der=world.creator,
            timestamp_ms=int(time.time() * 1000),
        )
    )
    header = make_header(number, previous, (tx,), int(time.time() * 1000))
    meta = BlockMetadata(signer=b"", signature=b"", validation_codes=b"")
    return Block(header=header, transactions=(tx,), metadata=meta)


def _append(member: OrderingNode, index: int, commit: int, block: Block | None) -> None:
    """The leader's append after entry *index* - 1 (with *block* as entry *index*, if any)."""
    entries = (
        ()
        if block is None
        else (RaftEntry(index=index, term=1, data=bytes([ENTRY_NORMAL]) + encode(block)),)
    )
    member.on_message(
        LEADER,
        AppendEntries(
            sender=LEADER,
            recipient=ME,
            term=1,
            log_index=index - 1 if block is not None else index,
            log_term=1 if index > 1 or block is None else 0,
            commit=commit,
            entries=entries,
            ack=True,
        ),
    )


async def _settled() -> None:
    for _ in range(3):
        await asyncio.sleep(0)  # the pending write runs in the next callback


@pytest.mark.asyncio
async def test_a_block_committed_alone_is_written_now_and_synced_with_the_next_entries(
    world: World,
) -> None:
    kv = BatchLog()
    member = _follower(world, kv)
    first = _block(0, GENESIS_PREVIOUS_HASH, world)
    _append(member, 1, 0, first)  # the entry: synced, as Raft needs
    assert kv.batches[-1][0] is True
    written = len(kv.batches)

    _append(member, 1, 1, None)  # its commit alone
    await _settled()
    assert member.stores.blocks.height == 1  # readable at once
    sync, keys = kv.batches[written]
    assert not sync and schema.block_key(0) in keys  # but not synced on its own

    second = _block(1, first.hash(), world)
    _append(member, 2, 1, second)  # new entries: a synced batch, which writes block 0 again
    await _settled()
    sync, keys = kv.batches[-1]
    assert sync and schema.block_key(0) in keys
    assert member.metrics.value("ordering_unsynced_writes") >= 1

    _append(member, 2, 2, None)  # block 1's commit alone: only block 1 waits now
    await _settled()
    sync, keys = kv.batches[-1]
    assert not sync and schema.block_key(1) in keys and schema.block_key(0) not in keys


@pytest.mark.asyncio
async def test_every_block_batch_holds_the_blocks_still_waiting_for_a_sync(world: World) -> None:
    kv = BatchLog()
    member = _follower(world, kv)
    first = _block(0, GENESIS_PREVIOUS_HASH, world)
    second = _block(1, first.hash(), world)
    _append(member, 1, 0, first)
    _append(member, 2, 0, second)  # both entries synced; nothing committed yet
    _append(member, 2, 1, None)  # block 0 committed alone: unsynced
    await _settled()
    _append(member, 2, 2, None)  # block 1 committed alone: unsynced, and holds block 0 too
    await _settled()
    sync, keys = kv.batches[-1]
    assert not sync and {schema.block_key(0), schema.block_key(1)} <= keys


@pytest.mark.asyncio
async def test_a_block_no_synced_write_follows_is_synced_by_the_next_tick(world: World) -> None:
    kv = BatchLog()
    member = _follower(world, kv)
    running = asyncio.create_task(member.run())
    try:
        _append(member, 1, 0, _block(0, GENESIS_PREVIOUS_HASH, world))
        _append(member, 1, 1, None)
        await _settled()
        assert kv.batches[-1][0] is False
        for _ in range(40):  # a tick is 50 ms
            if member.metrics.value("ordering_block_syncs"):
                break
            await asyncio.sleep(0.01)
        sync, keys = kv.batches[-1]
        assert sync and schema.block_key(0) in keys
    finally:
        member.stop()
        await asyncio.wait_for(running, 5)


@pytest.mark.asyncio
async def test_a_block_over_the_size_limit_is_synced_at_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node.ordering, "BLOCK_SYNC_DEFER_BYTES_MAX", 100)  # under one envelope
    kv = BatchLog()
    member = _follower(world, kv)
    _append(member, 1, 0, _block(0, GENESIS_PREVIOUS_HASH, world))
    _append(member, 1, 1, None)
    await _settled()
    sync, keys = kv.batches[-1]
    assert sync and schema.block_key(0) in keys
    assert member.metrics.value("ordering_unsynced_writes") == 0
