"""Ledger mode of the seeded simulation: its workload reaches every validation code, a seed
replays identically with another world (other keys, certificates and signature bytes), and
its checkers catch real bugs.

The seeds of test_sim.py include ledger seeds (``LEDGER_SHARE``); the deep run of every seed
in ledger mode is ``python -m tests.sim.run --seeds 10000 --ledger all``. The other tests
break one thing at a time and require the checkers to report it: one node's world state
(while it runs, while it is down, at the end), the catch-up's distrust of a peer's codes,
the endorsement rule on every peer alike, the leader's block numbering, and the validator's
overlay of blocks validated but not yet written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from consensus import validation
from node.validator import BlockValidator, ValidatedBlock
from protocol.block import Block, ValidationCode, code_name
from protocol.config import NetworkConfig
from protocol.ordering import ChainPoint
from protocol.transaction import KVWrite
from storage.kv import KV, WriteBatch
from storage.schema import state_key
from storage.state import Version, WorldState
from tests.sim import ledger
from tests.sim.cluster import SimNode
from tests.sim.ledger import CONTRACT, SimLedger
from tests.sim.run import LEDGER_SHARE, Simulation, replay_hint, run_seed, uses_ledger

COVERAGE_SEEDS = range(4)


def _run(seed: int) -> Simulation:
    sim = Simulation(seed, ledger="all")
    violations = sim.run()
    assert not violations, f"seed {seed}: {violations[0]} ({replay_hint(seed, 'all')})"
    return sim


def test_a_share_of_the_seeds_runs_in_ledger_mode() -> None:
    share = sum(uses_ledger(seed) for seed in range(1000)) / 1000
    assert abs(share - LEDGER_SHARE) < 0.05
    assert not any(uses_ledger(seed, "off") for seed in range(100))
    assert all(uses_ledger(seed, "all") for seed in range(100))


def test_the_workload_reaches_every_code_and_catch_ups_pull_blocks() -> None:
    codes: set[int] = set()
    pulled = 0
    for seed in COVERAGE_SEEDS:
        sim = _run(seed)
        assert sim.ledger_checker is not None
        pulled += sim.ledger_checker.pulled
        for seen in sim.ledger_checker.blocks.values():
            codes.update(seen.codes or b"")
    expected = {
        ValidationCode.VALID,
        ValidationCode.BAD_CREATOR,
        ValidationCode.WRONG_NETWORK,
        ValidationCode.ENDORSEMENT_POLICY_FAILURE,
        ValidationCode.DUPLICATE_TXID,
        ValidationCode.MVCC_READ_CONFLICT,
        ValidationCode.BAD_RWSET,
    }
    assert codes == expected, sorted(code_name(c) for c in codes)
    assert pulled > 0


def _outcome(sim: Simulation) -> tuple[object, ...]:
    """What a run decided, apart from the world's bytes: stats, codes, registry contents."""
    assert sim.ledger_checker is not None
    codes = {n: seen.codes for n, seen in sim.ledger_checker.blocks.items()}
    registries = {
        node_id: list(node.ledger.stores.state.range(CONTRACT))
        for node_id, node in sim.nodes.items()
        if node.ledger is not None
    }
    return dict(sim.stats), codes, registries


def test_a_ledger_seed_replays_identically_in_another_world() -> None:
    """Another process builds other certificates and signs with other nonces; padding block
    entries to a size set by their transaction count keeps the run the same."""
    first = _outcome(_run(12))
    ledger.ledger_world.cache_clear()
    assert _outcome(_run(12)) == first


def _first_seed_failing_with(words: tuple[str, ...], seeds_max: int = 40) -> int | None:
    for seed in range(seeds_max):
        if any(word in v for v in run_seed(seed, ledger="all") for word in words):
            return seed
    return None


def test_checkers_catch_one_node_with_a_corrupted_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """n2's first valid write at or after block 5 also writes a key no transaction wrote."""
    original = WorldState.apply
    target: object = None
    corrupted: list[int] = []

    def apply(self: WorldState, writes: list[KVWrite], version: Version, batch: WriteBatch) -> None:
        if self.kv is target and version.block >= 5 and not corrupted:
            corrupted.append(version.block)
            writes = [*writes, KVWrite(namespace=CONTRACT, key=b"x", value=b"x", is_delete=False)]
        original(self, writes, version, batch)

    monkeypatch.setattr(WorldState, "apply", apply)
    for seed in range(10):
        sim = Simulation(seed, ledger="all")
        target = sim.nodes["n2"].kv
        corrupted.clear()
        violations = sim.run()
        if corrupted:
            assert any("state agreement" in v for v in violations), violations
            return
    pytest.fail("no seed wrote to n2 after block 5")


@pytest.fixture
def trusted_codes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A catch-up keeps the codes the peer's copy claims instead of recomputing them."""
    original = BlockValidator.validate

    def validate(
        self: BlockValidator, block: Block, config: NetworkConfig, entry_index: int = 0
    ) -> ValidatedBlock:
        validated = original(self, block, config, entry_index)
        if entry_index == 0 and block.metadata.validation_codes:
            return dataclasses.replace(validated, block=block)
        return validated

    monkeypatch.setattr(BlockValidator, "validate", validate)
    yield


@pytest.mark.usefixtures("trusted_codes")
def test_checkers_catch_codes_trusted_from_a_peer() -> None:
    assert _first_seed_failing_with(("validation agreement",)) is not None


@pytest.fixture
def no_endorsement_rule(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every peer accepts any endorsements: they all agree, and are all wrong."""
    monkeypatch.setattr(validation, "endorsement_problem", lambda *args, **kwargs: None)
    yield


@pytest.mark.usefixtures("no_endorsement_rule")
def test_checkers_catch_a_rule_broken_on_every_peer() -> None:
    assert _first_seed_failing_with(("got VALID",)) is not None


@pytest.fixture
def leader_numbers_from_its_chain(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The leader forgets the blocks still uncommitted in its log when it numbers the next."""
    monkeypatch.setattr(SimLedger, "tail", lambda self, log: (self.height - 1, self.tip))
    yield


@pytest.mark.usefixtures("leader_numbers_from_its_chain")
def test_checkers_catch_a_leader_that_reuses_block_numbers() -> None:
    assert _first_seed_failing_with(("LedgerDivergence",)) is not None


@pytest.fixture
def validator_without_overlay(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Blocks validated together (one Ready) no longer see each other's writes and tx ids."""

    def version(self: BlockValidator, namespace: str, key: bytes) -> tuple[int, int] | None:
        found = self.stores.state.get(namespace, key)
        return None if found is None else (found[1].block, found[1].tx)

    def tx_committed(self: BlockValidator, tx_id: bytes) -> bool:
        return self.stores.blocks.locate_tx(tx_id) is not None

    monkeypatch.setattr(BlockValidator, "_version", version)
    monkeypatch.setattr(BlockValidator, "_tx_committed", tx_committed)
    yield


@pytest.mark.usefixtures("validator_without_overlay")
def test_checkers_catch_a_validator_that_forgets_its_overlay() -> None:
    """Nodes whose Readies hold several blocks then disagree with nodes that got one each."""
    assert _first_seed_failing_with(("validation agreement", "state agreement")) is not None


def _stray_state(kv: KV) -> None:
    """A world-state record no transaction wrote (a damaged disk)."""
    kv.put(state_key(CONTRACT, b"stray"), Version(1, 0).pack() + b"x", sync=True)


def test_checkers_catch_a_state_damaged_while_a_node_was_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = SimNode.crash
    damaged: list[str] = []

    def crash(self: SimNode) -> None:
        original(self)
        if not damaged:
            damaged.append(self.node_id)
            _stray_state(self.kv)

    monkeypatch.setattr(SimNode, "crash", crash)
    for seed in range(20):
        damaged.clear()
        violations = run_seed(seed, ledger="all")
        if damaged:
            assert any("after a restart" in v for v in violations), violations
            return
    pytest.fail("no seed crashed a node")


def test_checkers_catch_a_state_damaged_at_the_end() -> None:
    sim = _run(COVERAGE_SEEDS[0])
    assert sim.ledger_checker is not None
    node = sim.nodes["n1"]
    _stray_state(node.kv)
    sim.ledger_checker.check_final([node])
    assert any("at the end, node n1" in v for v in sim.checker.violations)


def test_a_failed_catch_up_persists_nothing_and_the_node_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first catch-up finds no peer: the node crashes before persisting the snapshot,
    restarts, gets the snapshot again and catches up; every checker still passes."""
    original = SimLedger.catch_up
    failed: list[bool] = []

    def catch_up(self: SimLedger, point: ChainPoint, peers: list[SimLedger]) -> int | None:
        if not failed and point.height > self.height:
            failed.append(True)
            return None
        return original(self, point, peers)

    monkeypatch.setattr(SimLedger, "catch_up", catch_up)
    for seed in range(20):
        failed.clear()
        sim = _run(seed)
        if failed:
            assert sim.stats["crashes catch-up failed"] == 1
            return
    pytest.fail("no seed caught up from a snapshot")
