"""In what order a leader tells its followers that a block committed, driven in-process on
a three-voter cluster whose followers are played by the test.

A follower whose client waits for the block (it forwarded an envelope in it) hears first;
every follower hears before the leader answers its own clients; messages to one follower
keep their order; every block's bookkeeping is gone once it committed.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from consensus.raft.core import Role
from node.api import Committed
from node.envelopes import opaque_envelope
from node.ordering import OrderingNode
from protocol.codec import encode
from protocol.ordering import ForwardEnvelope
from protocol.raft import AppendEntries, AppendResponse, Heartbeat, VoteRequest, VoteResponse
from tests.unit.endorsed_world import World, make_world

ME = "riverside"
FIRST, LAST = "northgate", "stmarys"  # the followers, in the order Raft sends to them


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def _envelope(world: World) -> bytes:
    return encode(
        opaque_envelope(
            os.urandom(32),
            network_id=world.config.network_id,
            key=world.creator_key,
            cert_der=world.creator,
            timestamp_ms=int(time.time() * 1000),
        )
    )


def _ack(leader: OrderingNode, peer: str, index: int) -> None:
    leader.on_message(
        peer,
        AppendResponse(
            sender=peer,
            recipient=ME,
            term=leader.raft.term,
            log_index=index,
            reject=False,
            hint_index=0,
            hint_term=0,
        ),
    )


def _elected(world: World, sent: list[object]) -> OrderingNode:
    """A leader of (ME, FIRST, LAST) whose first entry both followers hold."""
    leader = world.ordering_node(ME, (ME, FIRST, LAST))
    leader.send = sent.append
    leader.raft.campaign()
    leader._drain()
    for _ in range(2):  # the pre-vote, then the vote
        request = next(m for m in sent if isinstance(m, VoteRequest) and m.recipient == FIRST)
        sent.clear()
        answer = VoteResponse(
            sender=FIRST, recipient=ME, term=request.term, pre_vote=request.pre_vote, granted=True
        )
        leader.on_message(FIRST, answer)
    assert leader.role is Role.LEADER
    last = leader.raft.log.last_index()
    _ack(leader, FIRST, last)
    _ack(leader, LAST, last)
    sent.clear()
    return leader


def _announcements(sent: list[object]) -> list[str]:
    """The recipients of the appends in *sent* that carry only a commit index."""
    return [m.recipient for m in sent if isinstance(m, AppendEntries) and not m.entries]


@pytest.mark.asyncio
async def test_the_follower_that_forwarded_an_envelope_hears_of_its_commit_first(
    world: World,
) -> None:
    sent: list[object] = []
    leader = _elected(world, sent)
    leader.on_message(LAST, ForwardEnvelope(sender=LAST, recipient=ME, envelope=_envelope(world)))
    index = leader.raft.log.last_index()
    assert {m.recipient for m in sent if isinstance(m, AppendEntries) and m.entries} == {
        FIRST,
        LAST,
    }
    sent.clear()

    _ack(leader, FIRST, index)  # a quorum with the leader: the block commits

    assert _announcements(sent) == [LAST, FIRST]  # Raft's own order would be FIRST, LAST
    await asyncio.sleep(0)  # the block's write
    assert leader.stores.blocks.height == 2
    assert leader._block_forwarders == {} and leader._forwarders == {}


@pytest.mark.asyncio
async def test_every_follower_hears_of_a_commit_before_the_leaders_own_clients_are_answered(
    world: World,
) -> None:
    sent: list[object] = []
    leader = _elected(world, sent)
    seen_on_answer: list[list[str]] = []

    async def client() -> Committed:
        committed = await leader.submit(_envelope(world))
        seen_on_answer.append(_announcements(sent))  # where an API handler would answer
        return committed

    own = asyncio.ensure_future(client())
    await asyncio.sleep(0)  # the request runs up to its wait: the block is cut and sent
    index = leader.raft.log.last_index()
    sent.clear()

    _ack(leader, FIRST, index)

    committed = await own
    assert committed.block_number == 1
    assert seen_on_answer == [[FIRST, LAST]]  # nobody forwarded: Raft's own order
    assert leader._block_forwarders == {} and leader._forwarders == {}


@pytest.mark.asyncio
async def test_messages_to_one_follower_keep_their_order(world: World) -> None:
    sent: list[object] = []
    leader = _elected(world, sent)
    leader.on_message(LAST, ForwardEnvelope(sender=LAST, recipient=ME, envelope=_envelope(world)))
    index = leader.raft.log.last_index()
    term = leader.raft.term
    sent.clear()
    first, last = (
        AppendEntries(
            sender=ME,
            recipient=peer,
            term=term,
            log_index=index,
            log_term=term,
            commit=index,
            entries=(),
            ack=False,
        )
        for peer in (FIRST, LAST)
    )
    beat = Heartbeat(sender=ME, recipient=FIRST, term=term, commit=index)
    committed = tuple(leader.raft.log.entries(index, index + 1) or ())

    leader._announce_commit((first, beat, last), committed)

    assert sent == [last, first, beat]  # LAST forwarded; FIRST's heartbeat stays behind
