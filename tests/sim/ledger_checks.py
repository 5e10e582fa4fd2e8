"""Checkers of ledger mode: every peer validates every block alike and reaches the same state.

As blocks are committed (applied from Raft entries or pulled during a catch-up):

* chain agreement: every node holds the same block (header hash) at each number;
* validation agreement: every node gives each block the same validation codes;
* state agreement: every node's world-state hash after each block is the same;
* the codes are right: a transaction's first appearance in the chain gets a code its kind
  allows (a valid write VALID, a forged endorsement ENDORSEMENT_POLICY_FAILURE, ...), and a
  later appearance of its tx_id DUPLICATE_TXID (or the network, endorsement-count or
  creator failure that is checked before duplicates). Agreement alone would pass a
  validator that is wrong on every peer alike.

When a node (re)starts, its chain tip and state hash must be those recorded for its height,
and at the end of a run every live member is checked again from its KV.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from node.validator import ValidatedBlock
from protocol.block import code_name
from protocol.hashing import short_hex
from storage.ledger import Stores
from tests.sim.cluster import SimNode
from tests.sim.ledger import Expect


@dataclass(frozen=True)
class _Seen:
    node_id: str
    block_hash: bytes
    codes: bytes | None  # None for a block only seen at a (re)start
    state_hash: bytes


def _codes(codes: bytes) -> str:
    return ",".join(code_name(c) for c in codes)


class LedgerChecker:
    """Records, per block number, the first node's block, codes and state hash; compares."""

    def __init__(self, fail: Callable[[str], None], expect: Mapping[bytes, Expect]) -> None:
        self.fail = fail
        self.expect = expect
        self.blocks: dict[int, _Seen] = {}
        self.first_seen: dict[bytes, tuple[int, int]] = {}  # tx_id -> (block, index)
        self.commits = 0  # blocks committed, over all nodes
        self.pulled = 0  # of which pulled from a peer during a catch-up
        self.opened = 0  # ledgers (re)opened and checked

    # --- hooks from the nodes -----------------------------------------------------------------

    def on_block(self, node: SimNode, validated: ValidatedBlock, state_hash: bytes) -> None:
        self.commits += 1
        self.pulled += validated.entry_index == 0
        block = validated.block
        seen = _Seen(node.node_id, block.hash(), validated.codes, state_hash)
        known = self.blocks.get(block.number)
        if known is None or known.codes is None:
            self.blocks[block.number] = seen
            self._check_codes(validated)
        if known is not None:
            self._compare(block.number, known, seen)

    def on_open(self, node: SimNode) -> None:
        ledger = node.ledger
        assert ledger is not None
        self.opened += 1
        number = ledger.height - 1
        seen = _Seen(node.node_id, ledger.tip, None, ledger.state_hash())
        known = self.blocks.setdefault(number, seen)
        if known is not seen:
            self._compare(number, known, seen, "after a restart, ")

    # --- at the end ---------------------------------------------------------------------------

    def check_final(self, nodes: Sequence[SimNode]) -> None:
        """Every node's chain and state, read afresh from its KV, are those recorded."""
        for node in nodes:
            if not node.alive or node.ledger is None:
                continue
            stores = Stores.on(node.kv)
            number = stores.blocks.height - 1
            tip = stores.blocks.tip_hash or b""
            seen = _Seen(node.node_id, tip, None, stores.state.state_hash())
            known = self.blocks.get(number)
            if known is None:
                self.fail(f"ledger: node {node.node_id} ends at block {number}, never committed")
            else:
                self._compare(number, known, seen, "at the end, ")

    # --- internals ----------------------------------------------------------------------------

    def _compare(self, number: int, known: _Seen, seen: _Seen, when: str = "") -> None:
        who = f"{when}node {seen.node_id}"
        if seen.block_hash != known.block_hash:
            self.fail(
                f"chain agreement: {who} holds block {number} {short_hex(seen.block_hash)}, "
                f"node {known.node_id} {short_hex(known.block_hash)}"
            )
        elif seen.codes is not None and known.codes is not None and seen.codes != known.codes:
            self.fail(
                f"validation agreement: {who} gives block {number} codes "
                f"[{_codes(seen.codes)}], node {known.node_id} [{_codes(known.codes)}]"
            )
        elif seen.state_hash != known.state_hash:
            self.fail(
                f"state agreement: {who} has world state {short_hex(seen.state_hash)} after "
                f"block {number}, node {known.node_id} {short_hex(known.state_hash)}"
            )

    def _check_codes(self, validated: ValidatedBlock) -> None:
        number = validated.block.number
        for index, (tx_id, code) in enumerate(zip(validated.tx_ids, validated.codes, strict=True)):
            first = self.first_seen.setdefault(tx_id, (number, index))
            expect = self.expect.get(tx_id)
            if expect is None:
                continue  # not the workload's (the genesis configuration)
            allowed = expect.first if first == (number, index) else expect.again
            if code not in allowed:
                self.fail(
                    f"validation: block {number} tx {index} ({expect.kind}"
                    f"{'' if first == (number, index) else f', first in block {first[0]}'}) "
                    f"got {code_name(code)}, expected one of "
                    f"{sorted(code_name(c) for c in allowed)}"
                )
