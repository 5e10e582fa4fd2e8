"""What ``block show``, ``/v1/tx`` and the event stream say about a transaction's endorsers:
the node id of the member whose certificate hash an endorsement names, or that hash in hex
for a certificate the configuration does not name (a member since removed)."""

from __future__ import annotations

import random

from node.ledger_view import describe_block, describe_tx, endorser_names
from protocol.hashing import sha256
from tests.contract.blocks_factory import ChainBuilder
from tests.unit.endorsed_world import HOSPITALS, make_world


def test_endorser_names_are_the_endorsing_members_node_ids() -> None:
    world = make_world()
    names = endorser_names(world.config)
    assert names == {sha256(world.cert(node)): node for node in HOSPITALS}


def test_endorsers_are_shown_by_name_when_known_and_by_hash_otherwise() -> None:
    (block,) = ChainBuilder(random.Random(3)).blocks(1, txs_per_block=1)
    named = bytes(32)  # what the factory's endorsement names
    assert describe_tx(block, 0)["endorsers"] == [named.hex()]
    assert describe_tx(block, 0, endorsers={named: "northgate"})["endorsers"] == ["northgate"]
    shown = describe_block(block, {named: "northgate"})
    assert shown["transactions"][0]["endorsers"] == ["northgate"]
