"""A cluster of Raft cores over an in-memory network, with the application side of each node.

This is the harness shared by the seeded simulation (``tests/sim/run.py``) and the scenario
interpreter (``tests/sim/scenario.py``). Each :class:`SimNode` is what ``node/`` will be: a
``RaftNode`` driven by ticks and messages, its Ready handled in the contract's order (persist
→ send → apply → advance) against the real ``RaftLogStore`` over an in-memory KV, and a toy
state machine: a hash chain over the applied entries, so two nodes applied the same prefix
exactly when their digests at that index agree. In ledger mode (``tests/sim/ledger.py``) a
node is also a validating peer: block entries are validated and committed to a chain and
world state on the same KV, and a snapshot's chain point is caught up before it is persisted.

:class:`VolatileKV` loses, on ``crash()``, every write not yet covered by a synced write,
as a disk cache would (a synced LevelDB write syncs the log before it, so a synced write
makes everything before it durable too).
"""

from __future__ import annotations

import hashlib
import heapq
import random
import struct
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from consensus.raft import RaftConfig, RaftNode, Ready
from node.validator import ValidatedBlock
from protocol.codec import decode, encode
from protocol.ordering import ChainPoint
from protocol.raft import ENTRY_NORMAL, InstallSnapshot, RaftEntry, RaftMessage, RaftSnapshot
from storage.kv import RecordingBatch, Write, replay
from storage.memory import MemoryKV
from storage.raftlog import HardState, LogEntry, RaftLogStore, SnapshotMeta
from tests.sim.ledger import LedgerWorld, SimLedger

GENESIS_DIGEST = bytes(32)
_APP_SNAPSHOT = struct.Struct(">Q32s")


class VolatileKV:
    """A MemoryKV whose unsynced writes vanish on crash()."""

    def __init__(self) -> None:
        self.durable = MemoryKV()
        self.live = MemoryKV()
        self.unsynced: list[Write] = []

    def get(self, key: bytes) -> bytes | None:
        return self.live.get(key)

    def iterate(
        self,
        prefix: bytes = b"",
        *,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        return self.live.iterate(prefix, start=start, stop=stop, reverse=reverse)

    @contextmanager
    def batch(self, *, sync: bool = True) -> Iterator[RecordingBatch]:
        with self.live.batch(sync=sync) as inner:
            recording = RecordingBatch(inner)
            yield recording
        self._record(recording.ops, sync)

    def put(self, key: bytes, value: bytes, *, sync: bool = True) -> None:
        self.live.put(key, value)
        self._record([(key, value)], sync)

    def delete(self, key: bytes, *, sync: bool = True) -> None:
        self.live.delete(key)
        self._record([(key, None)], sync)

    def close(self) -> None:
        self.live.close()

    def _record(self, ops: list[Write], sync: bool) -> None:
        self.unsynced.extend(ops)
        if sync:
            replay(self.unsynced, self.durable)
            self.unsynced = []

    def crash(self) -> int:
        """Lose the unsynced writes; the number of writes lost."""
        lost = len(self.unsynced)
        self.unsynced = []
        self.live = MemoryKV()
        for key, value in self.durable.iterate():
            self.live.put(key, value)
        return lost


def chain_digest(digest: bytes, entry: RaftEntry) -> bytes:
    """The state machine: a hash chain over (index, term, data) of every applied entry."""
    return hashlib.sha256(
        digest + struct.pack(">QQ", entry.index, entry.term) + entry.data
    ).digest()


@dataclass
class Observer:
    """Hooks the simulation's checkers attach to; the scenario interpreter leaves them empty."""

    on_persist: Callable[[SimNode, Ready], None] | None = None
    on_apply: Callable[[SimNode, RaftEntry, bytes], None] | None = None
    on_snapshot: Callable[[SimNode, RaftSnapshot], None] | None = None
    # Ledger mode: a block committed (with the state hash after it), a ledger (re)opened.
    on_block: Callable[[SimNode, ValidatedBlock, bytes], None] | None = None
    on_ledger_open: Callable[[SimNode], None] | None = None


class CatchUpFailed(Exception):
    """No live, connected peer could serve the blocks a snapshot needs (nothing persisted)."""


@dataclass
class SimNode:
    """One node: a Raft core, its store on a crashable KV, and its state machine."""

    node_id: str
    voters: tuple[str, ...]
    learners: tuple[str, ...]
    config: RaftConfig
    seed: int
    observer: Observer = field(default_factory=Observer)
    kv: VolatileKV = field(default_factory=VolatileKV)
    alive: bool = False
    core: RaftNode = field(init=False)
    store: RaftLogStore = field(init=False)
    applied_index: int = 0
    digest: bytes = GENESIS_DIGEST
    restarts: int = 0
    applied_payloads: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    # Ledger mode: the shared world, the peers a catch-up may pull blocks from (live and
    # reachable ones, in order), and this node's ledger (rebuilt at every start).
    ledger_world: LedgerWorld | None = None
    peers: Callable[[SimNode], list[SimNode]] = lambda node: []
    ledger: SimLedger | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.start()

    def start(self) -> None:
        """(Re)start from what the KV durably holds: the ledger, the store, then the core."""
        self.store = RaftLogStore(self.kv)
        stored = self.store.snapshot()
        self.applied_index, self.digest = 0, GENESIS_DIGEST
        point = None
        if stored is not None:
            snap = decode(stored[1], RaftSnapshot)
            self.applied_index, self.digest = _APP_SNAPSHOT.unpack_from(snap.data)
            point = snapshot_point(snap)
        if self.ledger_world is not None:
            self.ledger = SimLedger(self.kv, self.ledger_world, point)
            on_block = self.observer.on_block
            if on_block is not None:
                self.ledger.on_block = lambda v, state_hash: on_block(self, v, state_hash)
            if self.observer.on_ledger_open is not None:
                self.observer.on_ledger_open(self)
        rng = random.Random(self.seed * 1_000_003 + self.restarts)
        self.core = RaftNode(self.config, self.store, rng, self.voters, self.learners)
        self.alive = True

    def crash(self) -> None:
        self.kv.crash()
        self.alive = False
        self.restarts += 1

    def app_snapshot_data(self) -> bytes:
        data = _APP_SNAPSHOT.pack(self.applied_index, self.digest)
        if self.ledger is not None:
            data += encode(self.ledger.point)
        return data

    def compact(self, index: int | None = None) -> RaftSnapshot:
        """Snapshot the state machine at its applied index and compact the log there."""
        if index is None:
            index = self.applied_index
        if index != self.applied_index:
            raise ValueError("the toy state machine snapshots only at its applied index")
        snap = self.core.compact(index, self.app_snapshot_data())
        self.store.apply_snapshot(SnapshotMeta(snap.index, snap.term), encode(snap))
        return snap

    # --- the Ready loop ---------------------------------------------------------------------

    def persist(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            snap = rd.snapshot
            point = snapshot_point(snap)
            if self.ledger is not None and point is not None:
                # As node.ordering does: the blocks first, then the snapshot that needs them.
                peers = [p.ledger for p in self.peers(self) if p.ledger is not None]
                if self.ledger.catch_up(point, peers) is None:
                    raise CatchUpFailed(f"no peer serves block {self.ledger.height}")
            self.store.apply_snapshot(SnapshotMeta(snap.index, snap.term), encode(snap))
        if rd.hard_state is not None or rd.entries:
            hs = rd.hard_state
            self.store.save(
                None if hs is None else HardState(hs.term, hs.vote, hs.commit),
                [LogEntry(e.index, e.term, e.data) for e in rd.entries],
                sync=rd.must_sync,
            )
        if self.observer.on_persist is not None:
            self.observer.on_persist(self, rd)

    def apply(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            snap = rd.snapshot
            self.applied_index, self.digest = _APP_SNAPSHOT.unpack_from(snap.data)
            point = snapshot_point(snap)
            if self.ledger is not None and point is not None:
                self.ledger.point = point
            if self.observer.on_snapshot is not None:
                self.observer.on_snapshot(self, snap)
        for entry in rd.committed_entries:
            if entry.index != self.applied_index + 1:
                raise AssertionError(
                    f"node {self.node_id} applies {entry.index} after {self.applied_index}"
                )
            self.digest = chain_digest(self.digest, entry)
            self.applied_index = entry.index
            if entry.kind == ENTRY_NORMAL:
                self.applied_payloads[entry.index] = (entry.term, entry.payload)
            if self.observer.on_apply is not None:
                self.observer.on_apply(self, entry, self.digest)
        if self.ledger is not None:
            self.ledger.apply(rd.committed_entries)


def snapshot_point(snap: RaftSnapshot) -> ChainPoint | None:
    """The chain point a ledger-mode snapshot carries after the toy state, None if none."""
    rest = snap.data[_APP_SNAPSHOT.size :]
    return decode(rest, ChainPoint) if rest else None


class Network:
    """Messages in flight, with seeded drops, duplicates and delays, and partitions.

    With no rng it is a plain FIFO with no faults (for scenarios, delivered by hand).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng
        self.drop_rate = 0.0
        self.duplicate_rate = 0.0
        self.delay_steps_max = 0
        self.queue: list[tuple[int, int, RaftMessage]] = []
        self.seq = 0
        self.groups: dict[str, int] = {}  # partition: node -> group; absent = group 0

    def connected(self, a: str, b: str) -> bool:
        return self.groups.get(a, 0) == self.groups.get(b, 0)

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        self.groups = {}
        for number, group in enumerate(groups):
            for node in group:
                self.groups[node] = number

    def heal(self) -> None:
        self.groups = {}

    def send(self, msg: RaftMessage, now: int) -> bool:
        """Queue *msg*; False if the network dropped it at once."""
        rng = self.rng
        if rng is None:
            self._push(now, msg)
            return True
        if self.drop_rate and rng.random() < self.drop_rate:
            return False
        self._push(now + rng.randint(0, self.delay_steps_max), msg)
        if self.duplicate_rate and rng.random() < self.duplicate_rate:
            self._push(now + rng.randint(0, self.delay_steps_max), msg)
        return True

    def _push(self, at: int, msg: RaftMessage) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, msg))

    def due(self, now: int) -> list[RaftMessage]:
        out = []
        while self.queue and self.queue[0][0] <= now:
            out.append(heapq.heappop(self.queue)[2])
        return out

    def take_for(self, recipient: str) -> list[RaftMessage]:
        """Every queued message for *recipient*, in order (scenarios)."""
        mine = [item for item in self.queue if item[2].recipient == recipient]
        self.queue = [item for item in self.queue if item[2].recipient != recipient]
        heapq.heapify(self.queue)
        return [item[2] for item in sorted(mine)]


def is_snapshot(msg: RaftMessage) -> bool:
    return isinstance(msg, InstallSnapshot)
