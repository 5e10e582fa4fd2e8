"""The ordering service on one member: the Raft core driven over real time, storage and network.

This is the adapter loop of etcd-raft's model (Fabric's etcdraft ``run()`` is the production
example): ticks every :data:`TICK_MS`, messages from the transport, proposals from clients;
then, for every Ready: a leader's appends and heartbeats go out first (they do not wait for
its own write; it counts itself towards a commit only once the write is done), commit
announcements to the members whose clients wait first (``_announce_commit``); then the
committed blocks are validated and their clients answered (a committed entry is already on
disk on a majority); then, in the next event-loop callback, one synced LevelDB batch holds
the hard state, the new entries and every committed block with its writes (under load a
block shares that fsync with the next block's entries); then the other messages (votes and
acknowledgements, which must follow the write), and the core advances.

Blocks are cut by the leader (:class:`consensus.cutter.BlockCutter`), numbered and chained
after the last block in the leader's log, signed by the leader and proposed as one Raft
entry each; every member appends a block to its chain when its entry is applied. A member
that is not the leader forwards client envelopes to the leader and answers its client once
the block holding the envelope is in its own chain. Envelopes are deduplicated by tx_id
against the chain, the leader's pending envelopes and the blocks still uncommitted in its
log, so a client that retries after a timeout never gets its envelope ordered twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from chaincode.registry import ContractRegistry
from chaincode.runtime import STEP_BUDGET_DEFAULT
from consensus.cutter import BlockCutter, CutPolicy
from consensus.raft.core import RaftConfig, RaftNode, Ready, Role
from consensus.raft.errors import RaftRefused
from identity.keys import SigningKey
from identity.validate import TrustStore
from node import failpoints
from node.api import Committed, NotLeaderError, SubmitTimeoutError
from node.chain_watch import ChainWatch
from node.config import RaftTuning
from node.endorser import ProposalRefused, endorse
from node.envelopes import check_submission
from node.ledger_view import describe_tx, endorser_names, state_entry
from node.logs import event
from node.metrics import Metrics
from node.validator import BlockValidator, ValidatedBlock
from protocol import limits
from protocol.block import (
    Block,
    BlockMetadata,
    ValidationCode,
    code_name,
    code_of,
    decode_tx,
    make_header,
)
from protocol.codec import decode, encode, replace
from protocol.config import ConfigEnvelope, NetworkConfig
from protocol.errors import RemoteError, check_invariant
from protocol.hashing import sha256
from protocol.ordering import ChainPoint, ForwardEnvelope
from protocol.raft import (
    ADD_LEARNER,
    ENTRY_NORMAL,
    PROMOTE_VOTER,
    RAFT_MESSAGE_TYPES,
    REMOVE_MEMBER,
    AppendEntries,
    InstallSnapshot,
    MembershipChange,
    RaftEntry,
    RaftMessage,
    RaftSnapshot,
)
from protocol.transaction import Endorsement, EndorseReply, ProposalResponse, SignedProposal
from storage.kv import RecordingBatch, Write, replay
from storage.ledger import Stores
from storage.raftlog import HardState as StoredHardState
from storage.raftlog import LogEntry, SnapshotMeta

log = logging.getLogger("medledger.ordering")

# etcd ticks every 100 ms with a 1 s election timeout; on loopback 50 ms halves the time to
# notice a dead leader while heartbeats stay far below what 2 cores can carry.
TICK_MS = 50
ELECTION_TICKS = 10  # randomized in [10, 20) ticks: 0.5-1 s
HEARTBEAT_TICKS = 1
# How long a client waits for its envelope to commit before it gets 504 and should retry.
SUBMIT_TIMEOUT_S = 10.0
# Waiting clients at once; past it new submissions are refused (503) rather than queued.
WAITERS_MAX = 20_000
# A member removed from the configuration stops at most this long after applying it (30 s).
REMOVED_GRACE_TICKS = 600
# Only blocks this small wait for a later sync: the fsync saved is a fixed cost, while
# writing the block again costs its bytes (at 64 clients, where blocks hold 20-30 KB,
# deferring cost 6-8% more CPU per envelope; a lone client's block holds one).
BLOCK_SYNC_DEFER_BYTES_MAX = 8 * 1024


# A Ready, its validated blocks and its messages that must follow the write.
_PendingWrite = tuple[Ready, list[ValidatedBlock], tuple[RaftMessage, ...]]


class _Waker:
    """What the run loop sleeps on: set by new work, or the next tick's deadline.

    Cheaper than ``wait_for(event.wait(), timeout)``, which makes a task and a timer per
    wait; this makes one future and one timer, and none when work is already waiting.
    """

    def __init__(self) -> None:
        self._is_set = False
        self._sleeping: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._is_set = True
        if self._sleeping is not None and not self._sleeping.done():
            self._sleeping.set_result(None)

    async def wait(self, deadline: float) -> None:
        """Return once set (then clear it) or at loop time *deadline*, whichever is first."""
        if not self._is_set:
            loop = asyncio.get_running_loop()
            sleeping = self._sleeping = loop.create_future()
            timer = loop.call_at(deadline, _resolve, sleeping)
            try:
                await sleeping
            finally:
                timer.cancel()
                self._sleeping = None
        self._is_set = False


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class OrderingNode:
    """One member of the ordering service."""

    def __init__(
        self,
        *,
        node_id: str,
        network: NetworkConfig,
        stores: Stores,
        trust: TrustStore,
        key: SigningKey,
        cert_der: bytes,
        metrics: Metrics,
        contracts: ContractRegistry | None = None,
        bootstrap_voters: tuple[str, ...] = (),
        tuning: RaftTuning | None = None,
        rng: random.Random | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.node_id = node_id
        self.network = network
        self.stores = stores
        self.trust = trust
        self.key = key
        self.cert_der = cert_der
        self._cert_hash = sha256(cert_der)  # what this node's endorsements name it by
        self.metrics = metrics
        self.contracts = contracts or ContractRegistry()
        self.validator = BlockValidator(stores, trust, network.orgs)
        self._endorser_fault = failpoints.endorser_fault()
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.raft = RaftNode(
            RaftConfig(
                node_id=node_id, election_ticks=ELECTION_TICKS, heartbeat_ticks=HEARTBEAT_TICKS
            ),
            stores.raft_log,
            rng or random.Random(),
            # Raft's membership starts from the genesis members; later changes replay from
            # the log (or come with a snapshot).
            voters=bootstrap_voters or [m.node_id for m in network.members],
        )
        batch = network.batch
        self.cutter = BlockCutter(
            CutPolicy(
                max_txs=batch.max_txs,
                max_bytes=batch.max_bytes,
                timeout_ticks=max(1, batch.timeout_ms // TICK_MS),
            )
        )
        self.tuning = tuning or RaftTuning()
        self.send: Callable[[object], None] = lambda msg: None
        # Pulls the blocks a received snapshot needs (node.catchup); set by the daemon.
        self.catch_up: Callable[[ChainPoint], Awaitable[int]] | None = None
        # (raft index, chain height, tip hash) after each applied block entry: what a
        # snapshot at a given index records.
        self._points: deque[tuple[int, int, bytes]] = deque(
            maxlen=self.tuning.snapshot_interval_entries + self.tuning.snapshot_catchup_entries + 1
        )
        self.connected_peers: Callable[[], frozenset[str]] = frozenset
        # Called after a committed configuration change (the daemon updates the transport).
        self.on_config_change: Callable[[NetworkConfig], None] = lambda config: None
        # Called with each block once it is in the chain, in order (the daemon's event hub).
        self.on_block: Callable[[Block], None] = lambda block: None
        self.chain = ChainWatch(lambda: self.stores.blocks.height)  # endorsers wait on it
        self._wake = _Waker()
        self._installing = False  # the run loop is installing a snapshot (Ready outstanding)
        # A Ready whose clients were answered and whose write waits for the next callback.
        self._write_pending: _PendingWrite | None = None
        self._write_failure: BaseException | None = None
        self._removed_ticks: int | None = None  # ticks since a config without us was applied
        self._draining = False
        self._stopping = False
        # Per envelope waiting to commit, one future per client request for it.
        self._waiters: dict[bytes, list[asyncio.Future[Committed]]] = {}
        # Each request's deadline, in arrival order (so oldest first): the tick expires them,
        # one deque entry per request instead of a timer armed and cancelled per request.
        self._deadlines: deque[tuple[float, bytes, asyncio.Future[Committed]]] = deque()
        self._forwarded: dict[bytes, bytes] = {}  # tx_id -> raw, forwarded for our clients
        self._pending_ids: set[bytes] = set()  # leader: queued, cut or in an uncommitted block
        # Leader: Raft indexes of the blocks it proposed in this term, not yet known committed.
        self._in_flight: deque[int] = deque()
        # Leader: who forwarded each envelope still waiting to be cut (raw -> member), and,
        # per uncommitted block it proposed, the members that forwarded envelopes in it.
        self._forwarders: dict[bytes, str] = {}
        self._block_forwarders: dict[int, frozenset[str]] = {}
        self._tail: tuple[int, bytes] = (-1, b"")  # leader: last block number and hash in its log
        # What the block batches written since the last synced one put and deleted, in order
        # (see _write_ready); the next tick syncs them if no other synced write did.
        self._unsynced_blocks: list[Write] = []
        self.role = Role.FOLLOWER
        self.leader = ""
        stored = stores.raft_log.snapshot()
        if stored is not None:
            snapshot = decode(stored[1], RaftSnapshot)
            point = decode(snapshot.data, ChainPoint)
            self._points.append((snapshot.index, point.height, point.tip))

    # === client side ===========================================================================

    async def submit(self, raw: bytes) -> Committed:
        """Order one envelope or configuration update; returns where it was committed
        (RemoteError if it is bad)."""
        tx = check_submission(
            raw,
            trust=self.trust,
            network=self.network,
            at=datetime.now(UTC),
            revoked=self.validator.revoked,
        )
        tx_id = tx.tx_id
        found = self.stores.blocks.locate_tx(tx_id)
        if found is not None:
            return self._committed_before(tx_id, *found)
        # A future of this request's own, none shared: a request that times out or is
        # cancelled takes only its own with it, and the commit wakes each request directly
        # (a shared future would need asyncio.shield, one more event-loop pass per answer).
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Committed] = loop.create_future()
        waiters = self._waiters.get(tx_id)
        if waiters is not None:
            waiters.append(waiter)  # the same envelope is already on its way
        else:
            if len(self._waiters) >= WAITERS_MAX:
                raise NotLeaderError("too many envelopes waiting; retry later")
            if self.role is not Role.LEADER and not self.leader:
                raise NotLeaderError("no leader is known yet; retry shortly")
            self._waiters[tx_id] = [waiter]
            self.metrics.inc("ordering_submitted")
            self.validator.note_decoded(raw, tx)
            if self.role is Role.LEADER:
                self._enqueue(raw, tx_id)
            else:
                self._forwarded[tx_id] = raw
                self.send(ForwardEnvelope(sender=self.node_id, recipient=self.leader, envelope=raw))
                self.metrics.inc("ordering_forwarded")
            self._drain()
        deadlines = self._deadlines
        while deadlines and deadlines[0][2].done():
            deadlines.popleft()  # answered (mostly in arrival order): let them go now
        deadlines.append((loop.time() + SUBMIT_TIMEOUT_S, tx_id, waiter))
        try:
            return await waiter
        finally:
            if waiter.cancelled():
                self._drop_waiter(tx_id, waiter)

    def _expire_waiters(self, now: float) -> None:
        """Answer every request past its deadline with SubmitTimeoutError (on each tick)."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, tx_id, waiter = deadlines.popleft()
            if waiter.done():
                continue
            waiter.set_exception(
                SubmitTimeoutError(
                    f"not committed within {SUBMIT_TIMEOUT_S:.0f} s; retrying is safe"
                )
            )
            self._drop_waiter(tx_id, waiter)

    def _drop_waiter(self, tx_id: bytes, waiter: asyncio.Future[Committed]) -> None:
        """A request gave up: once no request waits for the envelope, a retry starts afresh
        and nothing waits for it forever."""
        waiters = self._waiters.get(tx_id)
        if waiters is None or waiter not in waiters:
            return
        waiters.remove(waiter)
        if not waiters:
            del self._waiters[tx_id]
            self._forwarded.pop(tx_id, None)

    def _committed_before(self, tx_id: bytes, number: int, index: int) -> Committed:
        block = self.stores.blocks.get(number)
        code = ValidationCode.NOT_VALIDATED if block is None else code_of(block, index)
        return Committed(tx_id, number, index, duplicate=True, code=code)

    def _enqueue(self, raw: bytes, tx_id: bytes) -> bool:
        """Queue an envelope for the next block; False if it is already on its way or the
        cutter is full."""
        if tx_id in self._pending_ids:
            return False
        if not self.cutter.can_accept():
            self.metrics.inc("ordering_refused_full")
            return False
        self._pending_ids.add(tx_id)
        self.cutter.add(raw)
        return True

    # === from the transport ====================================================================

    def on_message(self, sender: str, msg: object) -> None:
        """Called by the transport for every authenticated, well-formed frame."""
        if isinstance(msg, ForwardEnvelope):
            self._on_forward(sender, msg)
        elif isinstance(msg, RAFT_MESSAGE_TYPES):
            self.raft.step(msg)
        else:
            self.metrics.inc("ordering_dropped_unexpected_kind")
            return
        self._drain()

    def _on_forward(self, sender: str, msg: ForwardEnvelope) -> None:
        """Order an envelope a member received from its client and checked
        (:func:`node.envelopes.check_submission`) before forwarding it.

        The leader decodes it (for its tx_id) but does not verify the creator's signature
        again: Raft already trusts members to follow the protocol (a member that lied could
        as well be elected and order what it liked), and what is ordered cannot reach the
        world state without every validator checking the creator's certificate and
        signature itself, so an envelope a member should have refused is ordered and marked
        invalid everywhere. A second ECDSA verification before ordering put about 0.2 ms on
        the latency of each forwarded envelope of a lone client (3 members on this 2-core
        machine). Configuration updates, which decide who may do what, are still checked
        in full before they are ordered.
        """
        if self.role is not Role.LEADER:
            self.metrics.inc("ordering_forward_not_leader")
            return
        try:
            tx = decode_tx(msg.envelope)
            if isinstance(tx, ConfigEnvelope):
                check_submission(
                    msg.envelope,
                    trust=self.trust,
                    network=self.network,
                    at=datetime.now(UTC),
                    revoked=self.validator.revoked,
                )
        except RemoteError as e:
            self.metrics.inc("ordering_forward_refused")
            event(
                log,
                logging.WARNING,
                "ordering.forward_refused",
                peer=sender,
                reason=type(e).__name__,
            )
            return
        if self.stores.blocks.locate_tx(tx.tx_id) is None:
            self.validator.note_decoded(msg.envelope, tx)
            if self._enqueue(msg.envelope, tx.tx_id):
                self._forwarders[msg.envelope] = sender

    # === the loop ==============================================================================

    async def run(self) -> None:
        """Drive Raft until :meth:`stop`."""
        loop = asyncio.get_running_loop()
        tick_s = TICK_MS / 1000
        next_tick = loop.time() + tick_s
        while not self._stopping:
            await self._wake.wait(next_tick)
            if self._stopping:
                break
            now = loop.time()
            ticked = False
            while now >= next_tick:
                self.raft.tick()
                self.cutter.tick()
                next_tick += tick_s
                ticked = True
                if self._removed_ticks is not None:
                    self._removed_ticks += 1
            if ticked and self._leave_if_removed():
                break
            if ticked:
                self._expire_waiters(now)
                if not self._write_pending:  # else that write syncs them
                    self._sync_blocks()
            if ticked and self.role is Role.LEADER:
                self._report_unreachable()
            if self.role is Role.LEADER:
                self._reconcile_membership()
            self._drain()
            if self.raft.has_ready() and not self._write_pending:  # a snapshot install
                self._installing = True
                try:
                    await self._handle_snapshot_ready(self.raft.ready())
                finally:
                    self._installing = False
                self._drain()
            self._maybe_compact()
        self._finish_pending_write()  # never leave an answered block unwritten
        if self._write_failure is not None:
            raise self._write_failure
        self._sync_blocks()

    def _drain(self) -> None:
        """Cut blocks and handle every Ready that needs no waiting, now.

        Called right where new work appears (a peer's frame, a client's envelope, a tick),
        not by waking the run loop: the loop would queue behind every client request
        already waiting on the event loop, and each Raft round trip would pay that wait.
        """
        if self._installing or self._draining or self._stopping or self._write_pending:
            return
        self._draining = True
        try:
            self._cut_blocks()
            while self.raft.has_ready() and self.raft.log.unstable_snapshot is None:
                rd = self.raft.ready()
                if rd.soft_state is not None:
                    self._on_soft_state(rd.soft_state.role, rd.soft_state.leader)
                self._persist_send_apply(rd)
                if self._write_pending:
                    break  # its write comes in the next callback, then this drain again
                self._cut_blocks()
        finally:
            self._draining = False
        if self.raft.has_ready() and not self._write_pending:
            self._wake.set()  # a snapshot to install: the run loop does that

    def _leave_if_removed(self) -> bool:
        """Stop once a configuration without this node is applied and Raft has removed it
        too, or REMOVED_GRACE_TICKS later (the leader stops replicating to a removed member,
        so it may never see its removal commit); meanwhile it still acknowledges entries,
        which a cluster of two needs to commit the removal at all."""
        ticks = self._removed_ticks
        if ticks is None:
            return False
        in_raft = self.node_id in self.raft.voters or self.node_id in self.raft.learners
        if in_raft and ticks < REMOVED_GRACE_TICKS:
            return False
        event(log, logging.WARNING, "node.removed", still_in_raft=in_raft)
        self.stop()
        return True

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current iteration."""
        self._stopping = True
        self._wake.set()
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(NotLeaderError("the node is shutting down"))
        self._waiters.clear()
        self._deadlines.clear()

    async def _handle_snapshot_ready(self, rd: Ready) -> None:
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state.role, rd.soft_state.leader)
        if rd.snapshot is not None:
            self._sync_blocks()  # the chain it extends must be on disk first
            await self._install_snapshot(rd)
        self._persist_send_apply(rd, answer_first=False)

    def _persist_send_apply(self, rd: Ready, *, answer_first: bool = True) -> None:
        """Handle one Ready in the order the module docstring gives.

        With *answer_first*, the clients of committed blocks are answered before the synced
        write of those blocks, and the write runs in the next event-loop callback, right after
        the answers go out (nothing else runs in between: :meth:`_drain` waits for it). That
        is safe because a committed block's Raft entry is on disk on a majority of members
        (a member acknowledges an entry, and a leader counts itself, only once it is
        synced): a node that stops before its own write gets the entry again from its log
        or its leader and applies it then. A block that changes the configuration is
        answered after its write.
        """
        early, late = self.raft.split_messages(rd)
        self._announce_commit(early, rd.committed_entries)
        blocks = self._validate_committed(rd.committed_entries)
        if (
            answer_first
            and blocks
            and rd.snapshot is None
            and all(v.config is self.network for v in blocks)
        ):
            for v in blocks:
                self._answer_waiters(v)
            self._write_pending = (rd, blocks, late)
            asyncio.get_running_loop().call_soon(self._finish_pending_write)
            return
        self._write_send_advance(rd, blocks, late)

    def _announce_commit(
        self, early: tuple[RaftMessage, ...], committed: tuple[RaftEntry, ...]
    ) -> None:
        """Send *early* (the messages that need not wait for our write), announcements of the
        commit to the members whose clients wait for it first.

        A lone client's request that a member forwarded waits, after the commit, for that
        member to hear of it from an append that carries nothing else. Raft makes those
        announcements in the members' name order; on 3 members sharing 2 cores the member
        woken by the first often ran before the leader had sent the second (0.1-0.5 ms
        later), so the forwarder, when it came second, waited for it. Messages to one
        member keep their order, and every announcement still goes out before the leader
        answers its own clients.
        """
        by_block = self._block_forwarders
        peers: frozenset[str] = frozenset()
        if by_block:
            for entry in committed:
                peers = peers.union(by_block.pop(entry.index, ()))
        if not peers:
            for msg in early:
                self.send(msg)
            return
        later: list[RaftMessage] = []
        later_for: set[str] = set()  # members with a message put back: the rest follows it
        for msg in early:
            if msg.recipient in later_for or (
                type(msg) is AppendEntries and not msg.entries and msg.recipient not in peers
            ):
                later.append(msg)
                later_for.add(msg.recipient)
            else:
                self.send(msg)
        for msg in later:
            self.send(msg)

    def _finish_pending_write(self) -> None:
        pending = self._write_pending
        if pending is None:
            return
        try:
            self._write_send_advance(*pending)
        except BaseException as e:
            # A write that failed leaves Raft and the chain behind what was answered: stop,
            # and let run() raise it, as a failed write inside run() itself does.
            self._write_failure = e
            self.stop()
            return
        finally:
            self._write_pending = None
        self._drain()

    def _write_send_advance(
        self, rd: Ready, blocks: list[ValidatedBlock], late: tuple[RaftMessage, ...]
    ) -> None:
        failpoints.hit("raft-before-fsync")
        if blocks:
            failpoints.hit("block-before-commit")
        self._write_ready(rd, blocks)
        failpoints.hit("raft-after-fsync")
        if blocks:
            failpoints.hit("block-after-commit")
        for msg in late:
            self.send(msg)
            if isinstance(msg, InstallSnapshot):
                # Queued on the stream: let Raft probe again; a lost snapshot is resent.
                self.raft.report_snapshot(msg.recipient, ok=True)
        for block in blocks:
            self._on_committed(block)
        self.raft.advance(rd)

    def _write_ready(self, rd: Ready, blocks: list[ValidatedBlock]) -> None:
        """One batch: *rd*'s hard state and entries, and the committed *blocks* with their
        writes; synced when Raft needs it or when it holds a block that must be.

        A small block (:data:`BLOCK_SYNC_DEFER_BYTES_MAX`) that changes no configuration
        needs no sync of its own: its Raft entry is already synced here and on a majority,
        so a node that loses the block's write applies the entry again when it restarts.
        Under load a block shares its batch with new entries, which Raft syncs anyway; a
        lone client's block comes in a batch of its own, and syncing it cost each member a
        second fsync per request. Such a block is written at once (reads see it) and its
        writes are written again, synced, in the next synced batch, or by the next tick.
        Every batch that holds blocks holds all blocks written since the last sync: LevelDB
        may lose an unsynced write in a log file it has rotated away from while keeping a
        later one, and this way a crash can only lose a suffix of the chain, never leave a
        gap.
        """
        hard = rd.hard_state
        if hard is None and not rd.entries and not blocks:
            return
        raft_log = self.stores.raft_log
        deferred = (
            bool(blocks)
            and not rd.must_sync
            and rd.snapshot is None
            and all(v.config is self.network for v in blocks)
            and sum(len(t) for v in blocks for t in v.block.transactions)
            <= BLOCK_SYNC_DEFER_BYTES_MAX
        )
        sync = rd.must_sync or (bool(blocks) and not deferred)
        self.metrics.inc("ordering_synced_writes" if sync else "ordering_unsynced_writes")
        with self.validator.writing(), self.stores.kv.batch(sync=sync) as batch:
            last = raft_log.stage(
                StoredHardState(hard.term, hard.vote, hard.commit) if hard is not None else None,
                [LogEntry(e.index, e.term, e.data) for e in rd.entries],
                batch,
            )
            if sync or blocks:
                replay(self._unsynced_blocks, batch)
            staged = RecordingBatch(batch) if deferred else None
            for v in blocks:
                self.stores.stage_block(v.block, v.writes, staged or batch, v.tx_ids)
        raft_log.note_saved(last)
        for v in blocks:
            self.stores.blocks.note_committed(v.block)
        if sync:
            self._unsynced_blocks.clear()
        elif staged is not None:
            self._unsynced_blocks.extend(staged.ops)

    def _sync_blocks(self) -> None:
        """Write the blocks written since the last sync again, synced."""
        if not self._unsynced_blocks:
            return
        with self.stores.kv.batch(sync=True) as batch:
            replay(self._unsynced_blocks, batch)
        self.metrics.inc("ordering_block_syncs")
        self._unsynced_blocks.clear()

    async def _install_snapshot(self, rd: Ready) -> None:
        """Bring the chain up to the snapshot's point, then persist the snapshot.

        The blocks come first: a snapshot persisted before its blocks would, after a crash,
        leave a chain shorter than Raft believes it applied, with nothing to fetch it again.
        """
        snapshot = rd.snapshot
        check_invariant(snapshot is not None and self.catch_up is not None, "snapshot install")
        point = decode(snapshot.data, ChainPoint)  # type: ignore[union-attr]
        added = await self.catch_up(point)  # type: ignore[misc]
        self.stores.raft_log.apply_snapshot(
            SnapshotMeta(snapshot.index, snapshot.term),
            encode(snapshot),  # type: ignore[union-attr]
        )
        self._points.clear()
        self._points.append((snapshot.index, point.height, point.tip))  # type: ignore[union-attr]
        self.metrics.inc("raft_snapshots_installed")
        event(
            log,
            logging.INFO,
            "raft.snapshot_installed",
            index=snapshot.index,  # type: ignore[union-attr]
            height=point.height,
            blocks_pulled=added,
        )

    def _maybe_compact(self) -> None:
        """Compact the log into a snapshot once enough entries were applied since the last."""
        applied = self.raft.log.applied
        if applied - self.raft.log.snapshot_index() < (
            self.tuning.snapshot_interval_entries + self.tuning.snapshot_catchup_entries
        ):
            return
        self._sync_blocks()  # the entries about to go must not be a lost block's only copy
        target = applied - self.tuning.snapshot_catchup_entries
        point = None
        for entry_index, height, tip in self._points:
            if entry_index > target:
                break
            point = (height, tip)
        if point is None:
            return  # no block applied at or before the target since the start: wait
        data = encode(ChainPoint(height=point[0], tip=point[1]))
        snapshot = self.raft.compact(target, data)
        failpoints.hit("snapshot-mid-write")
        self.stores.raft_log.apply_snapshot(
            SnapshotMeta(snapshot.index, snapshot.term), encode(snapshot)
        )
        while self._points and self._points[0][0] < target:
            self._points.popleft()
        self.metrics.inc("raft_snapshots_taken")
        event(log, logging.INFO, "raft.compacted", index=target, height=point[0])

    # === leadership ============================================================================

    def _on_soft_state(self, role: Role, leader: str) -> None:
        was_leader = self.role is Role.LEADER
        old_leader = self.leader
        self.role, self.leader = role, leader
        event(log, logging.INFO, "raft.role", role=role.value, leader=leader, term=self.raft.term)
        if role is Role.LEADER and not was_leader:
            self._become_leader()
        elif was_leader and role is not Role.LEADER:
            self._leave_leadership()
        if leader and leader != old_leader:
            self._reforward()

    def _reforward(self) -> None:
        """Send envelopes our clients still wait for to the new leader (or queue them if that
        is us): the old leader may have died with them. Duplicates are dropped by tx_id."""
        for tx_id, raw in list(self._forwarded.items()):
            if tx_id not in self._waiters:
                del self._forwarded[tx_id]
            elif self.role is Role.LEADER:
                self._enqueue(raw, tx_id)
            else:
                self.send(ForwardEnvelope(sender=self.node_id, recipient=self.leader, envelope=raw))
                self.metrics.inc("ordering_reforwarded")

    def _become_leader(self) -> None:
        """Find the chain's tail in our log and the envelopes already in uncommitted blocks."""
        height = self.stores.blocks.height
        tip = self.stores.blocks.tip_hash or b""
        self._tail = (height - 1, tip)
        self._pending_ids.clear()
        self._in_flight.clear()
        self._forwarders.clear()
        self._block_forwarders.clear()
        raft_log = self.raft.log
        entries = raft_log.entries(raft_log.applied + 1, raft_log.last_index() + 1) or []
        for entry in entries:
            if entry.kind != ENTRY_NORMAL:
                continue
            block = decode(entry.payload, Block)
            if block.number > self._tail[0]:
                self._tail = (block.number, block.hash())
                for raw in block.transactions:
                    self._pending_ids.add(decode_tx(raw).tx_id)
        self.metrics.inc("raft_became_leader")

    def _leave_leadership(self) -> None:
        leftover = self.cutter.reset()
        self._pending_ids.clear()
        self._in_flight.clear()
        self._forwarders.clear()
        self._block_forwarders.clear()
        # Envelopes not yet cut go to the new leader, if one is known; others time out and
        # their clients retry (deduplication makes that safe).
        if self.leader:
            for raw in leftover:
                self.send(ForwardEnvelope(sender=self.node_id, recipient=self.leader, envelope=raw))

    def _report_unreachable(self) -> None:
        """Tell Raft which peers have no stream, so it probes them instead of streaming
        entries into a queue nobody reads (etcd's ReportUnreachable)."""
        connected = self.connected_peers()
        for peer in sorted((self.raft.voters | self.raft.learners) - {self.node_id} - connected):
            self.raft.report_unreachable(peer)

    def _cut_blocks(self) -> None:
        # The core's own role: a tick or a message may have deposed us since the last Ready
        # (our self.role follows Ready's soft state, one step later).
        if (
            self.role is not Role.LEADER
            or self.raft.role is not Role.LEADER
            or self.raft.transferee
        ):
            return
        # A block frees its in-flight slot once Raft has committed it, before it is written:
        # the next block is proposed in time to share that write, and its appends carry the
        # new commit index to the followers, so each member syncs once per block.
        committed = self.raft.log.committed
        while self._in_flight and self._in_flight[0] <= committed:
            self._in_flight.popleft()
            self.cutter.on_committed()
        for transactions in self.cutter.take_ready():
            forwarders = self._forwarded_by(transactions)
            number = self._tail[0] + 1
            header = make_header(number, self._tail[1], transactions, self._clock_ms())
            block = Block(
                header=header,
                transactions=transactions,
                metadata=BlockMetadata(
                    signer=self.cert_der,
                    signature=self.key.sign(encode(header)),
                    validation_codes=b"",
                ),
            )
            try:
                position = self.raft.propose(encode(block))
            except RaftRefused as e:
                # Refused (e.g. too many uncommitted bytes): these envelopes stay unordered;
                # their clients time out and retry, and deduplication keeps that safe.
                self.cutter.on_committed()
                for raw in transactions:
                    self._pending_ids.discard(decode_tx(raw).tx_id)
                self.metrics.inc("ordering_proposals_refused")
                event(log, logging.WARNING, "ordering.proposal_refused", reason=type(e).__name__)
                continue
            self._tail = (number, block.hash())
            self._in_flight.append(position.index)
            if forwarders:
                self._block_forwarders[position.index] = forwarders
            self.metrics.inc("ordering_blocks_cut")
            self.metrics.inc("ordering_txs_cut", len(transactions))

    def _forwarded_by(self, transactions: tuple[bytes, ...]) -> frozenset[str]:
        """The members that forwarded any of *transactions* (forgotten here)."""
        forwarders = self._forwarders
        return frozenset(
            peer for raw in transactions if (peer := forwarders.pop(raw, None)) is not None
        )

    # === applying ==============================================================================

    def _validate_committed(self, entries: tuple[RaftEntry, ...]) -> list[ValidatedBlock]:
        """The blocks of committed *entries* not yet in the chain, validated in order (each
        against the configuration the ones before it leave)."""
        out: list[ValidatedBlock] = []
        config = self.network
        for entry in entries:
            if entry.kind != ENTRY_NORMAL:
                continue  # no-ops; membership changes are applied by the core itself
            block = decode(entry.payload, Block)
            next_number = self.stores.blocks.next_number + len(out)
            if block.number < next_number:
                # Already in the chain (re-applied after a restart or a catch-up).
                self._points.append((entry.index, block.number + 1, block.hash()))
                continue
            check_invariant(
                block.number == next_number,
                f"committed block {block.number} but the chain is at {next_number}",
            )
            validated = self.validator.validate(block, config, entry.index)
            self.metrics.inc("validation_blocks")
            config = validated.config
            out.append(validated)
        return out

    def _on_committed(self, validated: ValidatedBlock) -> None:
        """After *validated*'s batch committed: follow its configuration, answer its clients
        (if :meth:`_persist_send_apply` has not already)."""
        block = validated.block
        if validated.entry_index:
            self._points.append((validated.entry_index, block.number + 1, block.hash()))
        if validated.config is not self.network:
            self._follow_config(validated.config)
        self.metrics.inc("ordering_blocks_committed")
        self.chain.advanced()
        self.on_block(block)
        codes = validated.codes
        for index, code in enumerate(codes):
            if code == ValidationCode.VALID:
                continue
            self.metrics.inc(f"validation_invalid_{code_name(code).lower()}")
            if code == ValidationCode.BAD_CONFIG_UPDATE:
                event(
                    log,
                    logging.WARNING,
                    "config.rejected",
                    block=block.number,
                    reason=validated.reasons[index],
                )
        for tx_id in validated.tx_ids:
            self._pending_ids.discard(tx_id)
            self._forwarded.pop(tx_id, None)
        self._answer_waiters(validated)

    def _answer_waiters(self, validated: ValidatedBlock) -> None:
        """Tell the clients waiting for *validated*'s transactions where they committed."""
        block = validated.block
        codes = validated.codes
        for index, tx_id in enumerate(validated.tx_ids):
            waiters = self._waiters.pop(tx_id, None)
            if waiters is None:
                continue
            committed = Committed(
                tx_id,
                block.number,
                index,
                duplicate=False,
                code=codes[index],
                reason=validated.reasons[index],
            )
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(committed)

    def commit_validated(self, block: Block) -> list[bytes]:
        """Validate *block* (pulled during catch-up) and commit it in its own synced batch,
        then follow any configuration change it made. Returns the tx ids."""
        validated = self.validator.validate(block, self.network)
        self.metrics.inc("validation_blocks")
        self._sync_blocks()  # the chain this block extends must be on disk before it
        with self.validator.writing():
            self.stores.commit_block(validated.block, validated.writes, validated.tx_ids)
        if validated.config is not self.network:
            self._follow_config(validated.config)
        self.chain.advanced()
        self.on_block(validated.block)
        return validated.tx_ids

    def _follow_config(self, config: NetworkConfig) -> None:
        was_member = self.network.member(self.node_id) is not None
        self.network = config
        self.trust = self.validator.trust_for(config)  # new organisations' CAs
        if config.member(self.node_id) is not None:
            self._removed_ticks = None  # (re-)added: a removal replayed from the chain is over
        elif was_member and self._removed_ticks is None:
            self._removed_ticks = 0
            event(log, logging.WARNING, "node.removed_from_config", sequence=config.sequence)
        event(
            log,
            logging.INFO,
            "config.changed",
            sequence=config.sequence,
            members=",".join(m.node_id for m in config.members),
        )
        self.on_config_change(config)
        self._wake.set()

    def _reconcile_membership(self) -> None:
        """Leader: move Raft's membership one step towards the configuration's members
        (add as learner, promote once caught up, remove), one change at a time."""
        desired = {m.node_id for m in self.network.members}
        raft = self.raft
        current = raft.voters | raft.learners
        if raft.pending_membership_index > raft.log.applied:
            return
        change = None
        for node_id in sorted(desired - current):
            change = MembershipChange(change=ADD_LEARNER, node_id=node_id)
            break
        else:
            for node_id in sorted(raft.learners & desired):
                progress = raft.progress.get(node_id)
                if progress is not None and progress.match >= raft.log.committed:
                    change = MembershipChange(change=PROMOTE_VOTER, node_id=node_id)
                    break
            else:
                for node_id in sorted(current - desired):
                    change = MembershipChange(change=REMOVE_MEMBER, node_id=node_id)
                    break
        if change is None:
            return
        try:
            raft.propose_membership(change)
        except RaftRefused:
            return
        event(
            log, logging.INFO, "raft.membership_proposed", change=change.change, node=change.node_id
        )

    # === what the API reports ==================================================================

    def raft_status(self) -> dict[str, Any]:
        status = self.raft.status()
        return {
            "node": self.node_id,
            "term": status.term,
            "role": status.role.value,
            "leader": status.leader,
            "commit_index": status.commit_index,
            "applied_index": status.applied_index,
            "last_index": status.last_index,
            "snapshot_index": status.snapshot_index,
            "voters": list(status.voters),
            "learners": list(status.learners),
            "reachable": sorted(self.connected_peers()),
            "height": self.stores.blocks.height,
            "peers": {
                peer: {"match": p.match, "next": p.next, "state": p.state}
                for peer, p in status.peers.items()
            },
        }

    def chain_info(self) -> dict[str, Any]:
        tip = self.stores.blocks.tip_hash
        return {
            "node": self.node_id,
            "height": self.stores.blocks.height,
            "tip": tip.hex() if tip else None,
        }

    def config_bytes(self) -> bytes:
        """The current network configuration, canonical bytes."""
        return encode(self.network)

    def block_bytes(self, number: int) -> bytes | None:
        return self.stores.blocks.get_raw(number)

    def tx_info(self, tx_id: bytes) -> dict[str, Any] | None:
        """Where *tx_id* is in this node's chain, with its validation code; None if absent."""
        found = self.stores.blocks.locate_tx(tx_id)
        block = None if found is None else self.stores.blocks.get(found[0])
        if block is None:
            return None
        return describe_tx(block, found[1], endorsers=endorser_names(self.network))  # type: ignore[index]

    def state_info(self, namespace: str, key: bytes) -> dict[str, Any] | None:
        """One committed world-state entry; None if absent."""
        return state_entry(self.stores.state, namespace, key)

    def endorse(self, raw: bytes, *, step_budget: int = STEP_BUDGET_DEFAULT) -> bytes:
        """Endorse a client's signed proposal (msgpack SignedProposal) against this node's
        committed state; the canonical EndorseReply bytes (RemoteError if refused)."""
        signed = decode(raw, SignedProposal, max_bytes=limits.ENVELOPE_BYTES_MAX)
        return encode(self.endorse_signed(signed, step_budget=step_budget))

    def endorse_signed(
        self, signed: SignedProposal, *, step_budget: int = STEP_BUDGET_DEFAULT
    ) -> EndorseReply:
        """:meth:`endorse` for a proposal already decoded (the gateway's own endorser)."""
        member = self.network.member(self.node_id)
        if member is None or not member.endorser:
            raise ProposalRefused(f"{self.node_id} is not an endorser")
        state = self.stores.state
        outcome = endorse(
            signed,
            network=self.network,
            trust=self.trust,
            registry=self.contracts,
            state=state,
            key=self.key,
            cert_hash=self._cert_hash,
            at=datetime.now(UTC),
            revoked=self.validator.revoked,
            step_budget=step_budget,
        )
        self.metrics.inc("endorser_proposals")
        if self._endorser_fault and outcome.endorsement is not None:
            return self._lie(outcome.response, outcome.endorsement)
        endorsements = () if outcome.endorsement is None else (outcome.endorsement,)
        return EndorseReply(response=outcome.response_bytes, endorsements=endorsements)

    def _lie(self, response: ProposalResponse, endorsement: Endorsement) -> EndorseReply:
        """What a faulty endorser (failpoints.endorser_fault, tests only) answers instead."""
        if self._endorser_fault == "result":
            response = replace(response, result=response.result + b" (altered)")
            signature = self.key.sign(encode(response))  # a liar signs its own lie validly
        else:
            signature = self.key.sign(b"not the response")
        return EndorseReply(
            response=encode(response),
            endorsements=(replace(endorsement, signature=signature),),
        )

    def health(self) -> dict[str, Any]:
        return {
            "serving": True,
            "node": self.node_id,
            "role": self.role.value,
            "leader": self.leader,
            "term": self.raft.term,
            "height": self.stores.blocks.height,
        }

    def metrics_snapshot(self) -> dict[str, int]:
        return {**self.metrics.snapshot(), "signatures_verified": self.trust.signatures_verified}
