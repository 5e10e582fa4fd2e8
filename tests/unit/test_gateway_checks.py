"""The gateway (node.gateway): only a member's own endorsement, verifying over the response,
by a certificate that is not revoked, counts; an endorser that does not answer by the
deadline is left out (the others can still make the quorum) and its request forgotten."""

from __future__ import annotations

import asyncio
import itertools
import ssl

import pytest

from node.gateway import Gateway, QuorumNotReached
from node.metrics import Metrics
from protocol.codec import decode, encode, replace
from protocol.config import MemberConfig
from protocol.hashing import sha256
from protocol.ordering import EndorseAnswer
from protocol.transaction import EndorseReply, SignedProposal, Transaction
from tests.unit.endorsed_world import HOSPITALS, World, make_world


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def _gateway(world: World, revoked: frozenset[int] = frozenset()) -> Gateway:
    return Gateway(
        node_id="northgate",
        network=lambda: world.config,
        trust=lambda: world.trust,
        endorse_locally=lambda signed, step_budget: _reply(world, "northgate"),
        client_ctx=ssl.create_default_context(),
        metrics=Metrics(),
        revoked=lambda: revoked,
    )


def _reply(world: World, node: str) -> EndorseReply:
    tx = world.transaction((node,))
    return EndorseReply(response=encode(tx.response), endorsements=tx.endorsements)


def _signed_by(gateway: Gateway, member: MemberConfig, reply: EndorseReply) -> bool:
    return gateway._signed_by(member, reply)


def test_a_members_own_valid_endorsement_counts(world: World) -> None:
    member = world.config.member("riverside")
    assert member is not None
    assert _signed_by(_gateway(world), member, _reply(world, "riverside"))


def test_another_members_forged_or_revoked_endorsement_does_not(world: World) -> None:
    member = world.config.member("riverside")
    assert member is not None
    gateway = _gateway(world)
    assert not _signed_by(gateway, member, _reply(world, "stmarys"))  # someone else's
    reply = _reply(world, "riverside")
    forged = replace(
        reply.endorsements[0], signature=world.keys["riverside"].sign(b"something else")
    )
    assert not _signed_by(gateway, member, replace(reply, endorsements=(forged,)))
    assert not _signed_by(gateway, member, replace(reply, endorsements=()))
    revoked = _gateway(world, frozenset({world.serials["riverside"]}))
    assert not _signed_by(revoked, member, reply)


class _Link:
    """The endorse link as the gateway uses it: each request is answered at once with the
    endorser's reply, except by the *silent* ones, which never answer, and the *late* ones,
    which answer after *late_s* with a reply that diverges (its response altered)."""

    def __init__(
        self,
        replies: dict[str, EndorseReply],
        silent: frozenset[str],
        late: frozenset[str] = frozenset(),
        late_s: float = 0.05,
    ) -> None:
        self.replies = replies
        self.silent = silent
        self.late = late
        self.late_s = late_s
        self.waiting: dict[int, asyncio.Future[EndorseAnswer]] = {}
        self.heights: dict[str, int] = {}  # the chain height each endorser was asked for
        self._ids = itertools.count()

    def request(
        self, member_id: str, proposal: bytes, chain_height: int
    ) -> tuple[int, asyncio.Future[EndorseAnswer]]:
        self.heights[member_id] = chain_height
        request_id = next(self._ids)
        answer: asyncio.Future[EndorseAnswer] = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = answer
        if member_id in self.silent:
            return request_id, answer
        reply = self.replies[member_id]
        if member_id in self.late:
            reply = replace(reply, response=reply.response + b"!")

        def send() -> None:
            if not answer.done():
                answer.set_result(
                    EndorseAnswer(
                        sender=member_id,
                        recipient="northgate",
                        request_id=request_id,
                        reply=encode(reply),
                        refusal="",
                    )
                )

        if member_id in self.late:
            asyncio.get_running_loop().call_later(self.late_s, send)
        else:
            send()
        return request_id, answer

    def forget(self, request_id: int) -> None:
        self.waiting.pop(request_id, None)  # as the real link: forgetting twice is harmless


async def _fan_out(
    world: World,
    silent: frozenset[str],
    *,
    late: frozenset[str] = frozenset(),
    deadline_s: float = 0.2,
) -> tuple[bytes, _Link, Gateway]:
    """What northgate's gateway answers when the *silent* endorsers never reply and the
    *late* ones diverge after the others answered; the gateway and link, to look at after."""
    tx = world.transaction(HOSPITALS)  # every hospital endorsed the same response
    replies = {
        node: EndorseReply(response=encode(tx.response), endorsements=(endorsement,))
        for node, endorsement in zip(HOSPITALS, tx.endorsements, strict=True)
    }
    link = _Link(replies, silent, late)
    gateway = Gateway(
        node_id="northgate",
        network=lambda: world.config,
        trust=lambda: world.trust,
        endorse_locally=lambda signed, step_budget: replies["northgate"],
        client_ctx=ssl.create_default_context(),
        metrics=Metrics(),
        deadline_s=deadline_s,
        link=link,  # type: ignore[arg-type]
        chain_height=lambda: 42,
    )
    signed = SignedProposal(
        proposal=tx.proposal, signature=world.creator_key.sign(encode(tx.proposal))
    )
    return await gateway.endorse(encode(signed)), link, gateway


def _endorsers(world: World, prepared: bytes) -> list[str]:
    named = {sha256(world.cert(node)): node for node in HOSPITALS}
    return sorted(named[e.cert_hash] for e in decode(prepared, Transaction).endorsements)


@pytest.mark.asyncio
async def test_one_silent_endorser_does_not_hold_up_the_answer(world: World) -> None:
    async with asyncio.timeout(5):  # the deadline is 30 s: the quorum answers first
        prepared, link, gateway = await _fan_out(world, frozenset({"riverside"}), deadline_s=30)
    # Each endorser is asked to hold the gateway's chain first (node.chain_watch).
    assert link.heights == {"riverside": 42, "stmarys": 42, "westfield": 42}
    assert _endorsers(world, prepared) == ["northgate", "stmarys", "westfield"]
    assert link.waiting  # riverside is still heard out, in the background
    await gateway.close()
    await gateway.settle()
    assert not link.waiting  # its request forgotten


@pytest.mark.asyncio
async def test_an_endorser_that_diverges_after_the_quorum_answered_is_still_reported(
    world: World,
) -> None:
    prepared, link, gateway = await _fan_out(world, frozenset(), late=frozenset({"riverside"}))
    assert _endorsers(world, prepared) == ["northgate", "stmarys", "westfield"]
    assert gateway.metrics.value("gateway_diverging_endorsers") == 0  # not answered yet
    await gateway.settle()
    assert gateway.metrics.value("gateway_diverging_endorsers") == 1
    assert not link.waiting


@pytest.mark.asyncio
async def test_two_silent_endorsers_leave_no_quorum_and_are_named(world: World) -> None:
    with pytest.raises(QuorumNotReached) as refused:
        await _fan_out(world, frozenset({"riverside", "westfield"}))
    assert "no answer: riverside, westfield" in str(refused.value)
