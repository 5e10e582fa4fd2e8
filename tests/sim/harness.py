"""Small helpers for unit tests of the Raft core: nodes on real stores, and a manual network.

``make_node`` builds a RaftNode over ``RaftLogStore(MemoryKV())`` (optionally preloaded with
entries and a hard state); ``flush`` handles its Ready the way the node layer will (persist,
collect messages, advance) and returns the messages; ``Net`` delivers messages between a
set of nodes until nothing is left, with an optional filter to drop some.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

from consensus.raft import RaftConfig, RaftNode, Ready
from protocol.codec import encode
from protocol.raft import RaftEntry, RaftMessage, normal_entry_data
from storage.memory import MemoryKV
from storage.raftlog import HardState, LogEntry, RaftLogStore, SnapshotMeta


def entry(index: int, term: int, payload: bytes = b"") -> LogEntry:
    """A normal log entry as the store holds it."""
    return LogEntry(index, term, normal_entry_data(payload))


def store_with(terms: Sequence[int] = (), term: int = 0, vote: str = "", commit: int = 0):
    """A store holding one normal entry per term in *terms* (indexes 1..), and a hard state."""
    store = RaftLogStore(MemoryKV())
    store.save(
        HardState(term=max([term, *terms]), vote=vote, commit=commit),
        [entry(i, t) for i, t in enumerate(terms, start=1)],
    )
    return store


def make_node(
    node_id: str = "1",
    voters: Iterable[str] = ("1", "2", "3"),
    learners: Iterable[str] = (),
    store: RaftLogStore | None = None,
    seed: int = 0,
    applied: int = 0,
    **options: object,
) -> RaftNode:
    """A node with pre-vote and check-quorum off unless asked (the paper's plain Raft)."""
    settings: dict[str, object] = {"pre_vote": False, "check_quorum": False}
    settings.update(options)
    config = RaftConfig(node_id=node_id, **settings)  # type: ignore[arg-type]
    if store is None:
        store = RaftLogStore(MemoryKV())
    return RaftNode(config, store, random.Random(seed), voters, learners, applied=applied)


def persist(node: RaftNode, rd: Ready) -> None:
    store: RaftLogStore = node.log.store  # type: ignore[assignment]
    if rd.snapshot is not None:
        snap = rd.snapshot
        store.apply_snapshot(SnapshotMeta(snap.index, snap.term), encode(snap))
    hs = rd.hard_state
    if hs is not None or rd.entries:
        store.save(
            None if hs is None else HardState(hs.term, hs.vote, hs.commit),
            [LogEntry(e.index, e.term, e.data) for e in rd.entries],
        )


def flush(node: RaftNode) -> list[RaftMessage]:
    """Handle every Ready of *node* (persist, advance); the messages it wanted sent."""
    out: list[RaftMessage] = []
    while node.has_ready():
        rd = node.ready()
        persist(node, rd)
        out += rd.messages
        node.advance(rd)
    return out


def committed(node: RaftNode) -> list[RaftEntry]:
    log = node.log
    return log.entries(log.first_index(), log.committed + 1) or []


class Net:
    """Nodes by id, and delivery until quiet; *drop* decides which messages get lost."""

    def __init__(self, *nodes: RaftNode) -> None:
        self.nodes = {n.id: n for n in nodes}
        self.drop: Callable[[RaftMessage], bool] = lambda m: False
        self.delivered: list[RaftMessage] = []

    def stabilize(self, extra: Iterable[RaftMessage] = ()) -> None:
        pending = list(extra)
        while True:
            for node_id in sorted(self.nodes):
                pending += flush(self.nodes[node_id])
            if not pending:
                return
            batch, pending = pending, []
            for msg in batch:
                target = self.nodes.get(msg.recipient)
                if target is None or self.drop(msg):
                    continue
                self.delivered.append(msg)
                target.step(msg)

    def elect(self, node_id: str) -> RaftNode:
        node = self.nodes[node_id]
        node.campaign()
        self.stabilize()
        return node
