"""What a leader does with envelopes other members forward (``ForwardEnvelope``), driven
in-process on a one-voter cluster: it orders them without verifying the creator's signature
a second time, and validation, which checks it on every member, marks one that should have
been refused invalid, so it writes nothing; bytes that are no envelope are refused and
counted, and never ordered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from consensus.raft.core import Role
from identity.keys import SigningKey
from node.ordering import OrderingNode
from protocol.block import ValidationCode, code_of
from protocol.codec import encode
from protocol.ordering import ForwardEnvelope
from tests.unit.endorsed_world import World, make_world

ME, PEER = "riverside", "northgate"


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


@pytest_asyncio.fixture
async def leader(world: World) -> AsyncIterator[OrderingNode]:
    member = world.ordering_node(ME, (ME,))
    running = asyncio.create_task(member.run())
    try:
        for _ in range(100):  # the election timeout is 0.5-1 s of ticks
            if member.role is Role.LEADER:
                break
            await asyncio.sleep(0.05)
        assert member.role is Role.LEADER
        yield member
    finally:
        member.stop()
        await asyncio.wait_for(running, 5)


async def _ordered(member: OrderingNode, count: int) -> list[int]:
    """The validation codes of the first *count* transactions ordered after genesis."""
    for _ in range(100):
        codes = [
            code_of(block, index)
            for block in member.stores.blocks.iter_blocks(1)
            for index in range(len(block.transactions))
        ]
        if len(codes) >= count:
            return codes
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {len(codes)} of {count} transactions were ordered")


@pytest.mark.asyncio
async def test_a_forwarded_envelope_is_ordered_and_validation_judges_its_signature(
    world: World, leader: OrderingNode
) -> None:
    signers = tuple(m.node_id for m in world.config.members if m.endorser)[:3]
    honest = encode(world.envelope(world.transaction(signers)))
    forged = encode(world.envelope(world.transaction(signers), key=SigningKey.generate()))
    verified_before = leader.trust.signatures_verified

    leader.on_message(PEER, ForwardEnvelope(sender=PEER, recipient=ME, envelope=forged))
    leader.on_message(PEER, ForwardEnvelope(sender=PEER, recipient=ME, envelope=honest))
    leader.on_message(PEER, ForwardEnvelope(sender=PEER, recipient=ME, envelope=b"\x92garbage"))

    assert await _ordered(leader, 2) == [ValidationCode.BAD_CREATOR, ValidationCode.VALID]
    # Verified once each, in validation: both creators' signatures (the forged one failing,
    # so its endorsements were never looked at) and the honest one's 3 endorsements.
    assert leader.trust.signatures_verified - verified_before == 5
    assert leader.metrics.value("ordering_forward_refused") == 1
    assert leader.state_info("registry", b"k") is not None  # the honest write, only
