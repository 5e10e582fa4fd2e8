"""Client requests waiting on one ordering member, driven in-process through its public entry
points (``submit`` and ``on_message``): every request for an envelope gets the commit
answer, a request that gives up takes nobody else's with it, and a transaction decoded at
ingress is not decoded again when its block is validated."""

from __future__ import annotations

import asyncio
import time

import pytest

import node.ordering
import node.validator
from node.api import SubmitTimeoutError
from node.envelopes import opaque_envelope
from node.metrics import Metrics
from node.ordering import OrderingNode
from protocol.block import GENESIS_PREVIOUS_HASH, Block, BlockMetadata, decode_tx, make_header
from protocol.codec import encode
from protocol.ordering import ForwardEnvelope
from protocol.raft import ENTRY_NORMAL, AppendEntries, Heartbeat, RaftEntry
from storage.memory import MemoryKV
from storage.schema import open_store
from tests.unit.endorsed_world import World, make_world

ME, LEADER = "riverside", "northgate"


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def _follower(world: World) -> tuple[OrderingNode, list[object]]:
    """A member of a two-voter cluster that has heard from its leader; what it sends."""
    member = OrderingNode(
        node_id=ME,
        network=world.config,
        stores=open_store(MemoryKV()),
        trust=world.trust,
        key=world.keys[ME],
        cert_der=world.cert(ME),
        metrics=Metrics(),
        bootstrap_voters=(LEADER, ME),
    )
    sent: list[object] = []
    member.send = sent.append
    member.on_message(LEADER, Heartbeat(sender=LEADER, recipient=ME, term=1, commit=0))
    assert member.leader == LEADER
    return member, sent


def _envelope(world: World) -> bytes:
    envelope = opaque_envelope(
        b"payload",
        network_id=world.config.network_id,
        key=world.creator_key,
        cert_der=world.creator,
        timestamp_ms=int(time.time() * 1000),
    )
    return encode(envelope)


def _commit_block_of(member: OrderingNode, *txs: bytes) -> None:
    """The leader's append of block 0 holding *txs*, already committed."""
    header = make_header(0, GENESIS_PREVIOUS_HASH, txs, int(time.time() * 1000))
    block = Block(
        header=header,
        transactions=txs,
        metadata=BlockMetadata(signer=b"", signature=b"", validation_codes=b""),
    )
    entry = RaftEntry(index=1, term=1, data=bytes([ENTRY_NORMAL]) + encode(block))
    member.on_message(
        LEADER,
        AppendEntries(
            sender=LEADER,
            recipient=ME,
            term=1,
            log_index=0,
            log_term=0,
            commit=1,
            entries=(entry,),
            ack=True,
        ),
    )


@pytest.mark.asyncio
async def test_a_request_that_gives_up_leaves_the_others_for_its_envelope_waiting(
    world: World,
) -> None:
    member, sent = _follower(world)
    raw = _envelope(world)
    first = asyncio.create_task(member.submit(raw))
    second = asyncio.create_task(member.submit(raw))
    await asyncio.sleep(0.01)
    forwards = [m for m in sent if isinstance(m, ForwardEnvelope)]
    assert [m.envelope for m in forwards] == [raw]  # forwarded once for both requests
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    _commit_block_of(member, raw)
    committed = await asyncio.wait_for(second, 5)
    assert (committed.block_number, committed.tx_index, committed.duplicate) == (0, 0, False)
    assert committed.tx_id == decode_tx(raw).tx_id


@pytest.mark.asyncio
async def test_every_request_for_an_envelope_gets_the_answer(world: World) -> None:
    member, _ = _follower(world)
    raw = _envelope(world)
    requests = [asyncio.create_task(member.submit(raw)) for _ in range(3)]
    await asyncio.sleep(0.01)
    _commit_block_of(member, raw)
    answers = await asyncio.wait_for(asyncio.gather(*requests), 5)
    assert {(a.block_number, a.tx_index) for a in answers} == {(0, 0)}


@pytest.mark.asyncio
async def test_once_every_request_gave_up_a_retry_forwards_again(world: World) -> None:
    member, sent = _follower(world)
    raw = _envelope(world)
    request = asyncio.create_task(member.submit(raw))
    await asyncio.sleep(0.01)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    retry = asyncio.create_task(member.submit(raw))
    await asyncio.sleep(0.01)
    assert len([m for m in sent if isinstance(m, ForwardEnvelope)]) == 2
    retry.cancel()


@pytest.mark.asyncio
async def test_an_envelope_checked_at_ingress_is_not_decoded_again_in_its_block(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    member, _ = _follower(world)
    raw = _envelope(world)
    request = asyncio.create_task(member.submit(raw))
    await asyncio.sleep(0.01)
    decoded: list[bytes] = []

    def counting_decode_tx(tx: bytes) -> object:
        decoded.append(tx)
        return decode_tx(tx)

    monkeypatch.setattr(node.validator, "decode_tx", counting_decode_tx)
    unseen = _envelope(world)  # a transaction another member took in
    _commit_block_of(member, raw, unseen)
    await asyncio.wait_for(request, 5)
    assert decoded == [unseen]


@pytest.mark.asyncio
async def test_a_client_is_answered_before_its_blocks_synced_write_which_follows_at_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    member, sent = _follower(world)
    raw = _envelope(world)
    order: list[str] = []
    write_ready = member._write_ready

    def recorded_write(rd: object, blocks: list[object]) -> None:
        order.append(f"write of {len(blocks)} block(s)")
        write_ready(rd, blocks)  # type: ignore[arg-type]

    monkeypatch.setattr(member, "_write_ready", recorded_write)
    member.send = lambda msg: (order.append(f"send {type(msg).__name__}"), sent.append(msg))

    async def client() -> None:
        committed = await member.submit(raw)
        order.append(f"answered at chain height {member.stores.blocks.height}")
        assert committed.block_number == 0

    request = asyncio.create_task(client())
    await asyncio.sleep(0.01)
    order.clear()
    _commit_block_of(member, raw)
    assert order == []  # nothing written or acknowledged yet: the answer goes first
    assert member.stores.blocks.height == 0
    await asyncio.wait_for(request, 5)
    await asyncio.sleep(0)
    # The answer, then the one synced write of the entry and its block, then the
    # acknowledgement that must follow the write.
    assert order == ["answered at chain height 0", "write of 1 block(s)", "send AppendResponse"]
    assert member.stores.blocks.height == 1
    assert member.metrics.snapshot()["ordering_synced_writes"] >= 1


@pytest.mark.asyncio
async def test_a_write_that_fails_after_the_answer_stops_the_member(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    member, _ = _follower(world)
    running = asyncio.create_task(member.run())
    raw = _envelope(world)
    request = asyncio.create_task(member.submit(raw))
    await asyncio.sleep(0.01)

    def failing_write(rd: object, blocks: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(member, "_write_ready", failing_write)
    _commit_block_of(member, raw)
    with pytest.raises(OSError, match="disk gone"):
        await asyncio.wait_for(running, 5)
    assert (await request).block_number == 0  # answered: its entry is on a majority's disks
    assert member.stores.blocks.height == 0


@pytest.mark.asyncio
async def test_a_request_not_committed_in_time_is_told_so_and_a_retry_forwards_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node.ordering, "SUBMIT_TIMEOUT_S", 0.2)
    member, sent = _follower(world)
    running = asyncio.create_task(member.run())
    raw = _envelope(world)
    started = time.monotonic()
    with pytest.raises(SubmitTimeoutError, match="not committed within"):
        await asyncio.wait_for(member.submit(raw), 5)
    assert 0.2 <= time.monotonic() - started < 2  # expired by a tick, not by the 5 s guard
    answered = asyncio.create_task(member.submit(raw))  # nothing waits any more: forwarded again
    await asyncio.sleep(0.01)
    assert len([m for m in sent if isinstance(m, ForwardEnvelope)]) == 2
    _commit_block_of(member, raw)
    assert (await asyncio.wait_for(answered, 5)).block_number == 0
    member.stop()
    await asyncio.wait_for(running, 5)


@pytest.mark.asyncio
async def test_answered_requests_do_not_stay_queued_for_their_deadline(world: World) -> None:
    member, _ = _follower(world)
    first, second = _envelope(world), _envelope(world)
    answered = [asyncio.create_task(member.submit(raw)) for raw in (first, second)]
    await asyncio.sleep(0.01)
    _commit_block_of(member, first, second)
    await asyncio.wait_for(asyncio.gather(*answered), 5)
    waiting = asyncio.create_task(member.submit(_envelope(world)))
    await asyncio.sleep(0.01)
    assert len(member._deadlines) == 1  # only the request still waiting
    waiting.cancel()
