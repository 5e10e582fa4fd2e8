"""Seeded simulation of whole Raft clusters with faults; every failure replays from its seed.

Usage::

    python -m tests.sim.run --seeds N [--start S] [--jobs J] [--ledger all|off]
                                                   # prints "N seeds, V violations"
    python -m tests.sim.run --seed S [--verbose]   # replay one seed, with a trace

One seed fixes everything: cluster size (3 or 5 voters, maybe spare nodes), fault rates
(message drops, duplicates, delays that reorder), crash-restarts (including crashes in the
middle of handling a Ready, which lose unsynced writes), partitions, compaction, and
whether membership changes and leadership transfers are injected. Time is a step counter;
every ``STEPS_PER_TICK`` steps each live node ticks, so messages arrive between ticks.

A run is a chaos phase followed by a calm phase: the network heals, crashed nodes restart,
drops and duplicates stop, and then a leader must commit a new proposal within
``LIVENESS_TICKS`` ticks (liveness), every member must apply it, and every acknowledged
proposal must be applied on every member. The checkers of ``tests/sim/checkers.py`` run
after every step. Exit status is non-zero if any seed has a violation.

Ledger mode (``tests/sim/ledger.py``): in some seeds (``LEDGER_SHARE``, decided by the seed
alone, so ``--seed S`` replays it; ``--ledger all`` or ``off`` forces it for every seed) some
proposals carry blocks of endorsed transactions, valid and invalid, and every node validates
and commits them; ``tests/sim/ledger_checks.py`` checks that every peer gives every block
the same validation codes and reaches the same world-state hash after it. Ledger decisions
draw from their own generator, so a seed without ledger mode runs exactly as before.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from consensus.raft import RaftConfig, RaftRefused, Ready, Role
from node.validator import ValidatedBlock
from protocol.block import code_name
from protocol.errors import InvariantViolation
from protocol.hashing import short_hex
from protocol.raft import (
    ADD_LEARNER,
    PROMOTE_VOTER,
    REMOVE_MEMBER,
    InstallSnapshot,
    MembershipChange,
    RaftMessage,
)
from tests.sim.checkers import SafetyChecker
from tests.sim.cluster import CatchUpFailed, Network, Observer, SimNode
from tests.sim.ledger import BLOCK_TIME_BASE_MS, Workload, cut_block, frame_block, ledger_world
from tests.sim.ledger_checks import LedgerChecker

STEPS_PER_TICK = 4
ELECTION_TICKS = 10
# Chaos-phase length: 600 ticks is 60 election timeouts, room for several crashes,
# partitions, compactions and leader changes per seed. Measured: ~0.15-0.18 s of CPU per
# seed, ~0.24 s in ledger mode, so the 500 seeds of test_sim.py (a quarter of them in
# ledger mode) take ~45 s on this 2-core machine.
CHAOS_TICKS = 600
# Liveness bound once the cluster is whole again. The runner prints the slowest recovery it
# saw (tens of ticks over 10,000 seeds); the bound leaves room for the check-quorum lease
# to expire (1 timeout), several split pre-votes (up to 2 timeouts each) and the catch-up
# of a node that restarted far behind.
LIVENESS_TICKS = 30 * ELECTION_TICKS
# Once the probe proposal commits, every member must apply it within this many ticks.
CONVERGENCE_TICKS = 20 * ELECTION_TICKS
# The share of seeds that run in ledger mode when the runner does not force it: ledger mode
# costs a seed about half as much CPU again (signing and validating envelopes), so
# test_sim.py runs ~125 ledger seeds of its 500; ``--ledger all`` runs every seed so.
LEDGER_SHARE = 0.25
LEDGER_MODES = ("seed", "all", "off")


@dataclass(frozen=True)
class Params:
    """What one seed decides about its run."""

    voters: int
    spares: int
    drop_rate: float
    duplicate_rate: float
    delay_steps_max: int
    crash_rate: float
    ready_crash_rate: float
    partition_rate: float
    propose_rate: float
    compact_rate: float
    membership_rate: float
    transfer_rate: float
    pre_vote: bool

    @classmethod
    def from_seed(cls, rng: random.Random) -> Params:
        membership = rng.random() < 0.3
        return cls(
            voters=rng.choice((3, 3, 5)),
            spares=rng.randint(1, 2) if membership else 0,
            drop_rate=rng.choice((0.0, 0.01, 0.05, 0.1)),
            duplicate_rate=rng.choice((0.0, 0.02, 0.05)),
            delay_steps_max=rng.choice((0, 2, 4, 8)),
            crash_rate=rng.choice((0.0, 0.002, 0.005)),
            ready_crash_rate=rng.choice((0.0, 0.002)),
            partition_rate=rng.choice((0.0, 0.002, 0.005)),
            propose_rate=rng.choice((0.05, 0.15, 0.3)),
            compact_rate=rng.choice((0.0, 0.01, 0.03)),
            membership_rate=0.01 if membership else 0.0,
            transfer_rate=rng.choice((0.0, 0.0, 0.003)),
            pre_vote=rng.random() < 0.8,
        )


@dataclass(frozen=True)
class LedgerParams:
    """What one seed decides about its ledger mode."""

    block_share: float  # of proposals that carry a block rather than a toy payload
    # Raft's byte budgets grow by this factor (block entries are 5-14 KB): at 1 a block is
    # proposed only when nothing is uncommitted; from 64 a Ready may apply several blocks.
    bytes_scale: int

    @classmethod
    def from_seed(cls, rng: random.Random) -> LedgerParams:
        return cls(
            block_share=rng.choice((0.05, 0.1, 0.2)),
            bytes_scale=rng.choice((1, 16, 64, 256)),
        )


def ledger_rng(seed: int) -> random.Random:
    """The generator of a seed's ledger decisions, apart from the chaos generator."""
    return random.Random(seed * 15_485_863 + 5)


def uses_ledger(seed: int, mode: str = "seed") -> bool:
    """Whether *seed* runs in ledger mode under the runner's *mode*."""
    return _ledger_on(ledger_rng(seed).random(), mode)


def _ledger_on(draw: float, mode: str) -> bool:
    """Ledger mode under *mode*, given the first draw of the seed's ledger generator (made
    in every mode, so a seed runs the same whether its mode was chosen or forced)."""
    if mode not in LEDGER_MODES:
        raise ValueError(f"ledger mode {mode!r} is none of {LEDGER_MODES}")
    return mode == "all" or (mode == "seed" and draw < LEDGER_SHARE)


class Simulation:
    """One seeded run of a cluster."""

    def __init__(
        self,
        seed: int,
        chaos_ticks: int = CHAOS_TICKS,
        verbose: bool = False,
        ledger: str = "seed",
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.params = Params.from_seed(self.rng)
        self.chaos_ticks = chaos_ticks
        self.verbose = verbose
        self.trace: list[str] = []
        self.checker = SafetyChecker()
        self.network = Network(random.Random(seed * 7919 + 1))
        self.network.drop_rate = self.params.drop_rate
        self.network.duplicate_rate = self.params.duplicate_rate
        self.network.delay_steps_max = self.params.delay_steps_max
        self.now = 0
        self.restart_at: dict[str, int] = {}
        self.heal_at: int | None = None
        self.proposal_count = 0
        self.retired: set[str] = set()  # removed members never rejoin
        observer = Observer(
            on_persist=self.checker.on_persist,
            on_apply=self.checker.on_apply,
            on_snapshot=self.checker.on_snapshot,
        )
        self.ledger_rng = ledger_rng(seed)
        self.ledger_params: LedgerParams | None = None
        self.workload: Workload | None = None
        self.ledger_checker: LedgerChecker | None = None
        bytes_scale = 1
        if _ledger_on(self.ledger_rng.random(), ledger):
            self.ledger_params = LedgerParams.from_seed(self.ledger_rng)
            bytes_scale = self.ledger_params.bytes_scale
            self.workload = Workload(ledger_world(), seed, self.ledger_rng)
            self.ledger_checker = LedgerChecker(self.checker.fail, self.workload.expect)
            observer.on_block = self.on_block if verbose else self.ledger_checker.on_block
            observer.on_ledger_open = self.ledger_checker.on_open
        count = self.params.voters + self.params.spares
        ids = [f"n{i}" for i in range(1, count + 1)]
        voters = tuple(ids[: self.params.voters])
        self.nodes: dict[str, SimNode] = {}
        for number, node_id in enumerate(ids):
            config = RaftConfig(
                node_id=node_id,
                election_ticks=ELECTION_TICKS,
                heartbeat_ticks=1,
                max_append_bytes=256 * bytes_scale,  # small, so batching limits bite
                max_append_entries=8,
                max_inflight_appends=4,  # small, so the pipelining bound bites
                max_inflight_bytes=4096 * bytes_scale,
                max_uncommitted_bytes=2048 * bytes_scale,
                max_apply_bytes=512 * bytes_scale,
                pre_vote=self.params.pre_vote,
                check_quorum=True,
            )
            self.nodes[node_id] = SimNode(
                node_id,
                voters,
                (),
                config,
                seed=seed * 101 + number,
                observer=observer,
                ledger_world=ledger_world() if self.workload is not None else None,
                peers=self.reachable_peers,
            )
        self.order = sorted(self.nodes)
        self.leader_seen: dict[str, int] = {}
        self.stats: Counter[str] = Counter()

    def log(self, text: str) -> None:
        if self.verbose:
            self.trace.append(f"[step {self.now} tick {self.now // STEPS_PER_TICK}] {text}")

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> list[str]:
        try:
            for _ in range(self.chaos_ticks * STEPS_PER_TICK):
                self.step()
                self.chaos()
                if self.checker.violations:
                    break
            if not self.checker.violations:
                self.calm()
        except (InvariantViolation, AssertionError) as e:
            self.checker.fail(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        except Exception as e:  # a store refusing a block, a frame too small: with the seed
            self.checker.fail(f"unexpected {type(e).__name__}: {e}\n{traceback.format_exc()}")
        return self.checker.violations

    def step(self) -> None:
        self.now += 1
        if self.now % STEPS_PER_TICK == 0:
            for node_id in self.order:
                node = self.nodes[node_id]
                if node.alive:
                    node.core.tick()
        for msg in self.network.due(self.now):
            self.deliver(msg)
        for node_id in self.order:
            self.drain(self.nodes[node_id])
        self.checker.check_step([self.nodes[n] for n in self.order])
        self.stats["terms with a leader"] = len(self.checker.leaders)
        if self.verbose:
            for node_id in self.order:
                node = self.nodes[node_id]
                leading = node.alive and node.core.role is Role.LEADER
                if leading and self.leader_seen.get(node_id) != node.core.term:
                    self.leader_seen[node_id] = node.core.term
                    self.log(f"{node_id} leads term {node.core.term}")

    def deliver(self, msg: RaftMessage) -> None:
        node = self.nodes.get(msg.recipient)
        ok = node is not None and node.alive and self.network.connected(msg.sender, msg.recipient)
        if isinstance(msg, InstallSnapshot):
            self.stats["snapshots sent"] += 1
            self.report_snapshot(msg, ok)
        if ok:
            node.core.step(msg)  # type: ignore[union-attr]

    def on_block(self, node: SimNode, validated: ValidatedBlock, state_hash: bytes) -> None:
        """Check a committed block, and trace it (verbose runs)."""
        assert self.ledger_checker is not None
        self.ledger_checker.on_block(node, validated, state_hash)
        codes = ",".join(code_name(c) for c in validated.codes)
        how = "pulls" if validated.entry_index == 0 else "commits"
        self.log(
            f"{node.node_id} {how} block {validated.block.number} [{codes}], "
            f"state {short_hex(state_hash)}"
        )

    def reachable_peers(self, node: SimNode) -> list[SimNode]:
        """The live nodes *node* can reach, in order: where a catch-up pulls blocks from."""
        return [
            self.nodes[n]
            for n in self.order
            if n != node.node_id and self.nodes[n].alive and self.network.connected(n, node.node_id)
        ]

    def report_snapshot(self, msg: InstallSnapshot, ok: bool) -> None:
        sender = self.nodes.get(msg.sender)
        if sender is not None and sender.alive:
            sender.core.report_snapshot(msg.recipient, ok)

    def drain(self, node: SimNode) -> None:
        while node.alive and node.core.has_ready():
            rd = node.core.ready()
            crash_point = None
            if self.params.ready_crash_rate and self.rng.random() < self.params.ready_crash_rate:
                points = ("before-persist", "after-persist", "after-send")
                if self.workload is not None:
                    points += ("after-apply",)  # its blocks are durable, Raft has not advanced
                crash_point = self.rng.choice(points)
            self.handle_ready(node, rd, crash_point)

    def handle_ready(self, node: SimNode, rd: Ready, crash_point: str | None) -> None:
        # As node.ordering does: a leader's appends leave while it persists them.
        early, late = node.core.split_messages(rd)
        for msg in early:
            self.network.send(msg, self.now)
        if crash_point == "before-persist":
            self.crash(node, crash_point)
            return
        try:
            node.persist(rd)
        except CatchUpFailed as e:
            self.log(f"{node.node_id}: {e}")
            self.crash(node, "catch-up failed")
            return
        if crash_point == "after-persist":
            self.crash(node, crash_point)
            return
        failed_snapshots = []
        for msg in late:
            if not self.network.send(msg, self.now) and isinstance(msg, InstallSnapshot):
                failed_snapshots.append(msg)
        if crash_point == "after-send":
            self.crash(node, crash_point)
            return
        node.apply(rd)
        if crash_point == "after-apply":
            self.crash(node, crash_point)
            return
        node.core.advance(rd)
        for msg in failed_snapshots:
            self.report_snapshot(msg, False)

    # --- faults and actions -------------------------------------------------------------------

    def crash(self, node: SimNode, why: str) -> None:
        lost = node.kv.unsynced
        self.stats[f"crashes {why}"] += 1
        self.stats["unsynced writes lost"] += len(lost)
        node.crash()
        self.restart_at[node.node_id] = self.now + self.rng.randint(20, 400)
        self.log(f"crash {node.node_id} ({why}, {len(lost)} unsynced writes lost)")

    def restart(self, node_id: str) -> None:
        self.restart_at.pop(node_id, None)
        self.nodes[node_id].start()
        self.log(f"restart {node_id}")

    def leader(self) -> SimNode | None:
        best = None
        for node_id in self.order:
            node = self.nodes[node_id]
            leading = node.alive and node.core.role is Role.LEADER
            if leading and (best is None or node.core.term > best.core.term):
                best = node
        return best

    def chaos(self) -> None:
        p, rng = self.params, self.rng
        for node_id, at in sorted(self.restart_at.items()):
            if at <= self.now:
                self.restart(node_id)
        if self.heal_at is not None and self.heal_at <= self.now:
            self.network.heal()
            self.heal_at = None
            self.log("heal")
        if p.crash_rate and rng.random() < p.crash_rate:
            alive = [n for n in self.order if self.nodes[n].alive]
            if alive:
                self.crash(self.nodes[rng.choice(alive)], "crash")
        if p.partition_rate and self.heal_at is None and rng.random() < p.partition_rate:
            shuffled = list(self.order)
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(shuffled) - 1)
            groups = [sorted(shuffled[:cut]), sorted(shuffled[cut:])]
            self.network.partition(groups)
            self.stats["partitions"] += 1
            self.heal_at = self.now + rng.randint(50, 600)
            self.log(f"partition {groups[0]} | {groups[1]}")
        if rng.random() < p.propose_rate:
            self.propose()
        if p.compact_rate:
            for node_id in self.order:
                node = self.nodes[node_id]
                if (
                    node.alive
                    and node.applied_index - node.core.log.snapshot_index() >= 3
                    and rng.random() < p.compact_rate
                ):
                    node.compact()
                    self.stats["compactions"] += 1
        if p.membership_rate and rng.random() < p.membership_rate:
            self.change_membership()
        if p.transfer_rate and rng.random() < p.transfer_rate:
            leader = self.leader()
            if leader is not None:
                others = sorted(v for v in leader.core.voters if v != leader.node_id)
                if others:
                    to = rng.choice(others)
                    self.try_call(lambda: leader.core.transfer_leadership(to))
                    self.stats["transfers"] += 1
                    self.log(f"{leader.node_id} transfers leadership to {to}")

    def try_call(self, call: object) -> object:
        try:
            return call()  # type: ignore[operator]
        except RaftRefused as e:
            self.log(f"refused: {type(e).__name__}: {e}")
            return None

    def propose(self) -> tuple[str, int, int] | None:
        leader = self.leader()
        if leader is None:
            return None
        self.proposal_count += 1
        block = self.ledger_params is not None and (
            self.ledger_rng.random() < self.ledger_params.block_share
        )
        if block:
            payload = self.block_payload(leader)
        else:
            payload = f"s{self.seed}p{self.proposal_count}".encode()
            payload += bytes(self.rng.randint(0, 48))
        position = self.try_call(lambda: leader.core.propose(payload))
        if position is None:
            self.stats["proposals refused"] += 1
            return None
        self.stats["proposals"] += 1
        if block:
            self.stats["blocks proposed"] += 1
        term, index = position  # type: ignore[misc]
        self.checker.proposals[(term, index)] = (leader.node_id, payload)
        return leader.node_id, term, index

    def block_payload(self, leader: SimNode) -> bytes:
        """A block cut by *leader* after the last block in its chain or log, framed."""
        assert leader.ledger is not None and self.workload is not None
        tail = leader.ledger.tail(leader.core.log)
        transactions = self.workload.transactions(leader.ledger.stores.state)
        signer = self.order.index(leader.node_id)
        block = cut_block(
            leader.ledger.lw, signer, tail, transactions, BLOCK_TIME_BASE_MS + self.now
        )
        self.log(f"{leader.node_id} cuts block {block.number} of {len(transactions)} txs")
        return frame_block(block)

    def change_membership(self) -> None:
        leader = self.leader()
        if leader is None:
            return
        core, rng = leader.core, self.rng
        members = core.voters | core.learners
        options: list[MembershipChange] = []
        for node_id in self.order:
            if node_id not in members and node_id not in self.retired:
                options.append(MembershipChange(change=ADD_LEARNER, node_id=node_id))
        for node_id in sorted(core.learners):
            options.append(MembershipChange(change=PROMOTE_VOTER, node_id=node_id))
            options.append(MembershipChange(change=REMOVE_MEMBER, node_id=node_id))
        if len(core.voters) > 3:
            for node_id in sorted(core.voters):
                options.append(MembershipChange(change=REMOVE_MEMBER, node_id=node_id))
        if not options:
            return
        change = rng.choice(options)
        if self.try_call(lambda: core.propose_membership(change)) is not None:
            self.log(f"{leader.node_id} proposes {change.change} {change.node_id}")
            self.stats[f"membership {change.change}"] += 1
            if change.change == REMOVE_MEMBER:
                self.retired.add(change.node_id)

    # --- the calm phase -----------------------------------------------------------------------

    def calm(self) -> None:
        self.network.heal()
        self.heal_at = None
        self.network.drop_rate = 0.0
        self.network.duplicate_rate = 0.0
        for node_id in sorted(self.restart_at):
            self.restart(node_id)
        self.params = _calm(self.params)
        self.log("calm: network healed, all nodes up")
        start = self.now
        deadline = start + LIVENESS_TICKS * STEPS_PER_TICK
        probe: tuple[str, int, int] | None = None
        while True:
            if self.now >= deadline:
                self.checker.fail(
                    f"liveness: no proposal committed within {LIVENESS_TICKS} ticks of the "
                    f"cluster becoming whole (leader: {self._leader_text()})"
                )
                return
            self.step()
            if self.checker.violations:
                return
            if probe is not None and probe[2] in self.checker.acked:
                break
            leader = self.leader()
            if leader is not None and (probe is None or probe[1] != leader.core.term):
                probe = self.propose()
        ticks = (self.now - start) // STEPS_PER_TICK
        self.log(f"liveness: probe {probe} committed after {ticks} ticks")
        self.stats["liveness ticks max"] = ticks
        leader = self.leader()
        if leader is None:
            return
        members = sorted(leader.core.voters | leader.core.learners)
        index = probe[2]  # type: ignore[index]
        deadline = self.now + CONVERGENCE_TICKS * STEPS_PER_TICK
        while any(self.nodes[m].applied_index < index for m in members):
            if self.now >= deadline:
                behind = [m for m in members if self.nodes[m].applied_index < index]
                status = " ".join(
                    f"{m}:{self.nodes[m].core.role.value}@{self.nodes[m].core.term}"
                    f"/applied={self.nodes[m].applied_index}"
                    for m in members
                )
                self.checker.fail(
                    f"convergence: {behind} did not apply {index} in time ({status}; leader "
                    f"{leader.node_id} sees {leader.core.status().peers})"
                )
                return
            self.step()
            if self.checker.violations:
                return
        self.checker.check_acked_everywhere([self.nodes[m] for m in members])
        if self.ledger_checker is not None:
            self.ledger_checker.check_final([self.nodes[m] for m in members])
            self.stats["blocks committed"] = len(self.ledger_checker.blocks) - 1
            self.stats["block commits on nodes"] = self.ledger_checker.commits
            self.stats["blocks pulled in catch-ups"] = self.ledger_checker.pulled
            self.stats["ledgers reopened"] = self.ledger_checker.opened - len(self.nodes)
            assert self.workload is not None
            for kind, count in self.workload.kinds.items():
                self.stats[f"txs {kind}"] = count

    def _leader_text(self) -> str:
        parts = []
        for node_id in self.order:
            node = self.nodes[node_id]
            if node.alive:
                c = node.core
                parts.append(f"{node_id}:{c.role.value}@{c.term}")
        return " ".join(parts)


def _calm(p: Params) -> Params:
    return Params(
        voters=p.voters,
        spares=p.spares,
        drop_rate=0.0,
        duplicate_rate=0.0,
        delay_steps_max=p.delay_steps_max,
        crash_rate=0.0,
        ready_crash_rate=0.0,
        partition_rate=0.0,
        propose_rate=0.0,
        compact_rate=p.compact_rate,
        membership_rate=0.0,
        transfer_rate=0.0,
        pre_vote=p.pre_vote,
    )


def run_seed(seed: int, verbose: bool = False, ledger: str = "seed") -> list[str]:
    """The violations of one seed (empty if it passed)."""
    sim = Simulation(seed, verbose=verbose, ledger=ledger)
    violations = sim.run()
    if verbose:
        for line in sim.trace:
            print(line)
    return violations


def replay_hint(seed: int, ledger: str = "seed") -> str:
    forced = "" if ledger == "seed" else f" --ledger {ledger}"
    return f"replay: python -m tests.sim.run --seed {seed}{forced} --verbose"


def _run_one(seed: int, ledger: str = "seed") -> tuple[list[str], int]:
    sim = Simulation(seed, ledger=ledger)
    violations = sim.run()
    return violations, sim.stats["liveness ticks max"]


def run_seeds(start: int, count: int, jobs: int = 1, ledger: str = "seed") -> dict[int, list[str]]:
    """Violations by seed, for seeds start .. start + count - 1."""
    return _run_seeds(start, count, jobs, ledger)[0]


def _run_seeds(
    start: int, count: int, jobs: int, ledger: str = "seed"
) -> tuple[dict[int, list[str]], int]:
    seeds = list(range(start, start + count))
    modes = [ledger] * count
    if jobs <= 1:
        results = [_run_one(s, ledger) for s in seeds]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            chunksize = max(1, count // (jobs * 8))
            results = list(pool.map(_run_one, seeds, modes, chunksize=chunksize))
    failed = {seed: v for seed, (v, _) in zip(seeds, results, strict=True) if v}
    return failed, max((ticks for _, ticks in results), default=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim.run", description=__doc__)
    parser.add_argument("--seeds", type=int, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--seed", type=int, help="replay one seed")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--verbose", action="store_true", help="print the trace of --seed")
    parser.add_argument(
        "--ledger",
        choices=LEDGER_MODES,
        default="seed",
        help="ledger mode: as each seed decides (default), in every seed, or in none",
    )
    args = parser.parse_args(argv)
    if args.seed is not None:
        violations = run_seed(args.seed, verbose=args.verbose, ledger=args.ledger)
        for v in violations:
            print(f"seed {args.seed}: {v}")
        print(f"1 seeds, {len(violations)} violations")
        return 1 if violations else 0
    if args.seeds is None:
        parser.error("give --seeds N or --seed S")
    began = time.perf_counter()
    failed, liveness_ticks_max = _run_seeds(args.start, args.seeds, args.jobs, args.ledger)
    total = 0
    for seed in sorted(failed):
        for v in failed[seed]:
            print(f"seed {seed}: {v}")
        print(f"seed {seed}: {replay_hint(seed, args.ledger)}")
        total += len(failed[seed])
    print(f"{args.seeds} seeds, {total} violations", flush=True)
    print(
        f"({time.perf_counter() - began:.1f} s; slowest recovery to a committed proposal: "
        f"{liveness_ticks_max} ticks, bound {LIVENESS_TICKS})",
        file=sys.stderr,
    )
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
