"""The gateway's check of each endorser's reply (node.gateway): only the member's own
endorsement, verifying over the response, by a certificate that is not revoked, counts."""

from __future__ import annotations

import dataclasses
import ssl

import pytest

from node.gateway import Gateway
from node.metrics import Metrics
from protocol.codec import encode
from protocol.config import MemberConfig
from protocol.transaction import EndorseReply
from tests.unit.endorsed_world import World, make_world


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
    return EndorseReply(response=tx.response, endorsements=tx.endorsements)


def _signed_by(gateway: Gateway, member: MemberConfig, reply: EndorseReply) -> bool:
    return gateway._signed_by(member, reply, encode(reply.response))


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
    forged = dataclasses.replace(
        reply.endorsements[0], signature=world.keys["riverside"].sign(b"something else")
    )
    assert not _signed_by(gateway, member, dataclasses.replace(reply, endorsements=(forged,)))
    assert not _signed_by(gateway, member, dataclasses.replace(reply, endorsements=()))
    revoked = _gateway(world, frozenset({world.serials["riverside"]}))
    assert not _signed_by(revoked, member, reply)
