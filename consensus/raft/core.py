"""RaftNode: the Raft algorithm as a deterministic state machine with no I/O.

Modelled on etcd-raft's ``raft``/``RawNode``. Inputs are method calls: ``tick()`` (the only
notion of time), ``step(message)`` (a message from a peer), ``propose(data)``,
``propose_membership(change)``, ``transfer_leadership(to)``, ``campaign()`` and the
application's reports (``report_unreachable``, ``report_snapshot``). Outputs are collected
into a :class:`Ready`, which the application handles in this order (the durability contract):

1. persist ``hard_state`` (if not None), ``snapshot`` (if not None) and ``entries`` in one
   batch, synced to disk if ``must_sync`` (``RaftLogStore.save`` / ``apply_snapshot``);
2. send ``messages`` (a vote, an append acknowledgement or a follower's state in them may
   depend on step 1 being durable, so never before it). The exception is
   :meth:`RaftNode.split_messages`: a leader may send its appends and heartbeats *while* it
   persists the entries they carry (thesis §10.2.1), because it counts itself towards a
   commit only once ``advance`` reports them stable;
3. apply ``snapshot.data`` to the state machine, then ``committed_entries`` in order
   (``RaftEntry.kind`` tells blocks from no-ops and membership changes). They are committed
   on a quorum already, so their writes may share step 1's batch;
4. call ``advance(ready)``.

Then ask ``has_ready()`` again. Between ``ready()`` and ``advance()`` the node must not be
asked for another Ready. Randomness (election timeouts) comes only from the injected
``random.Random``; iteration over peers is in sorted order, so a run is a function of the
seed and the inputs.

Features: elections with randomized timeouts (§5.2), pre-vote and check-quorum (thesis
§9.6), log replication with byte-bounded batches and pipelining bounded per peer
(``progress``), the current-term commit rule (§5.4.2, with an empty entry appended by each
new leader), snapshots for followers behind the leader's compacted log (§7),
single-server membership changes with learners (thesis §4.1, §4.2.1): a change takes effect
when its entry is applied, at most one is pending, a learner receives the log but neither
votes nor counts for quorum, and leadership transfer (thesis §3.10, TimeoutNow).
"""

from __future__ import annotations

import bisect
import enum
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from consensus.raft.errors import (
    CampaignRefused,
    MembershipChangeRefused,
    NotLeader,
    TransferInProgress,
    TransferRefused,
    UncommittedBytesExceeded,
)
from consensus.raft.log import LogStore, RaftLog
from consensus.raft.progress import Progress, ProgressState
from protocol import limits
from protocol.codec import decode
from protocol.errors import ConfigError, LocalError, check_invariant
from protocol.raft import (
    ADD_LEARNER,
    ENTRY_MEMBERSHIP,
    ENTRY_NORMAL,
    NOOP_ENTRY_DATA,
    PROMOTE_VOTER,
    RAFT_APPEND_ENTRIES_MAX,
    REMOVE_MEMBER,
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    MembershipChange,
    RaftEntry,
    RaftMessage,
    RaftSnapshot,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
    decode_membership,
    membership_entry_data,
    normal_entry_data,
)

MIB = 1024 * 1024


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """The knobs of one Raft node; defaults follow etcd's where it has one."""

    node_id: str
    # etcd's defaults: a heartbeat every tick, an election timeout of 10 ticks (randomized
    # in [10, 20)); the node sets the tick length (etcd: 100 ms).
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    # etcd's MaxSizePerMsg is typically 1 MiB: large enough to batch, small enough to keep
    # one append cheap to retransmit after a rejection.
    max_append_bytes: int = 1 * MIB
    max_append_entries: int = RAFT_APPEND_ENTRIES_MAX
    # etcd (server) uses 256 in-flight appends per follower; bytes bound the memory of them.
    max_inflight_appends: int = 256
    max_inflight_bytes: int = 64 * MIB
    # Back-pressure on proposals (etcd's MaxUncommittedEntriesSize): about 8 full blocks.
    max_uncommitted_bytes: int = 64 * MIB
    # Committed entries handed to the application per Ready (etcd's MaxCommittedSizePerReady).
    max_apply_bytes: int = 64 * MIB
    pre_vote: bool = True
    check_quorum: bool = True

    def __post_init__(self) -> None:
        if not self.node_id or len(self.node_id) > limits.ID_CHARS_MAX:
            raise ConfigError(f"raft.node_id must be 1..{limits.ID_CHARS_MAX} chars")
        if not 1 <= self.heartbeat_ticks < self.election_ticks:
            raise ConfigError("raft: need 1 <= heartbeat_ticks < election_ticks")
        if not 1 <= self.max_append_entries <= RAFT_APPEND_ENTRIES_MAX:
            raise ConfigError(f"raft.max_append_entries must be 1..{RAFT_APPEND_ENTRIES_MAX}")
        for name in (
            "max_append_bytes",
            "max_inflight_appends",
            "max_inflight_bytes",
            "max_uncommitted_bytes",
            "max_apply_bytes",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"raft.{name} must be positive")


@dataclass(frozen=True, slots=True)
class HardState:
    """What must survive a crash: current term, vote in it ("" for none), commit index."""

    term: int
    vote: str
    commit: int


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth reporting when it changes: the role and the known leader."""

    role: Role
    leader: str


@dataclass(frozen=True, slots=True)
class Ready:
    """One batch of work for the application (see the module docstring for the order)."""

    soft_state: SoftState | None
    hard_state: HardState | None
    entries: tuple[RaftEntry, ...]
    snapshot: RaftSnapshot | None
    messages: tuple[RaftMessage, ...]
    committed_entries: tuple[RaftEntry, ...]
    must_sync: bool


class LogPosition(NamedTuple):
    """Where a proposal landed; it is committed once an entry with this term and index is."""

    term: int
    index: int


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """A leader's view of one peer."""

    match: int
    next: int
    state: str
    recent_active: bool
    inflight_appends: int
    learner: bool


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of a node's Raft state for operators (``medledger raft status``)."""

    node_id: str
    term: int
    vote: str
    role: Role
    leader: str
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int
    voters: tuple[str, ...]
    learners: tuple[str, ...]
    transferee: str
    peers: dict[str, PeerStatus]  # leaders only, sorted by id


_WON, _LOST, _PENDING = "won", "lost", "pending"


class RaftNode:
    """One Raft member: feed it ticks and messages, drain ``ready()``, call ``advance()``."""

    def __init__(
        self,
        config: RaftConfig,
        store: LogStore,
        rng: random.Random,
        voters: Iterable[str],
        learners: Iterable[str] = (),
        *,
        applied: int = 0,
    ) -> None:
        """Start from what *store* holds.

        *voters*/*learners* are the bootstrap membership (the genesis Raft members), used
        unless the store holds a snapshot, whose membership wins. *applied* is the last
        index the application had applied before a restart (etcd's ``Config.Applied``):
        committed entries after it, or after the snapshot if that is later, come out again
        in ``committed_entries``; membership changes up to it are replayed from the log.
        """
        self.config = config
        self.id = config.node_id
        self._rng = rng
        hard = store.hard_state()
        stored = store.snapshot()
        voter_set, learner_set = set(voters), set(learners)
        snapshot_index = 0
        if stored is not None:
            meta, blob = stored
            snap = decode(blob, RaftSnapshot)
            check_invariant(
                (snap.index, snap.term) == (meta.index, meta.term),
                "raft: stored snapshot data disagrees with its meta",
            )
            voter_set, learner_set = set(snap.voters), set(snap.learners)
            snapshot_index = snap.index
        check_invariant(
            store.first_index() - 1 == snapshot_index,
            f"raft: log starts at {store.first_index()}, the snapshot is at {snapshot_index}",
        )
        check_invariant(
            applied <= store.last_index(),
            f"raft: applied {applied} is beyond the last stored entry {store.last_index()}",
        )
        check_invariant(bool(voter_set), "raft: no voters")
        check_invariant(not voter_set & learner_set, "raft: a voter is also a learner")
        applied = max(applied, snapshot_index)
        # Entries the application applied were committed, even if the commit index written
        # with them (unsynced) was lost.
        self.log = RaftLog(store, applied=applied, committed=max(hard.commit, applied))
        self.voters: set[str] = voter_set
        self.learners: set[str] = learner_set
        # (index, voters, learners) after each applied change; compact() reads it.
        self._membership_history: list[tuple[int, tuple[str, ...], tuple[str, ...]]] = [
            (snapshot_index, tuple(sorted(voter_set)), tuple(sorted(learner_set)))
        ]
        self._replay_membership(snapshot_index + 1, applied + 1)
        self.term = hard.term
        self.vote = hard.vote
        self.role = Role.FOLLOWER
        self.leader = ""
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_ticks = config.election_ticks
        self.votes: dict[str, bool] = {}
        self.progress: dict[str, Progress] = {}
        self.transferee = ""
        self.pending_membership_index = 0
        self.uncommitted_bytes = 0
        self.messages: list[RaftMessage] = []
        self._prev_hard = HardState(hard.term, hard.vote, hard.commit)
        self._prev_soft = SoftState(Role.FOLLOWER, "")
        self._outstanding: Ready | None = None
        self._snapshot_cache: RaftSnapshot | None = None
        self._become_follower(self.term, "")

    # === application API ========================================================================

    def tick(self) -> None:
        """One unit of logical time (the node calls it every tick interval)."""
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def campaign(self) -> None:
        """Start an election now (with a pre-vote first if configured)."""
        if self.role is Role.LEADER:
            return
        self._hup(transfer=False, explicit=True)

    def propose(self, data: bytes) -> LogPosition:
        """Append *data* as a normal entry; it is committed when an entry at the returned
        position comes out in ``committed_entries``. Leader only."""
        self._check_can_propose(len(data))
        position = self._append([normal_entry_data(data)])
        self.uncommitted_bytes += len(data)
        return position

    def propose_membership(self, change: MembershipChange) -> LogPosition:
        """Propose one single-server membership change; at most one may be pending.

        New members join as learners (ADD_LEARNER); a learner becomes a voter once it has
        caught up to the commit index (PROMOTE_VOTER); REMOVE_MEMBER removes either.
        """
        self._check_can_propose(0)
        if self.pending_membership_index > self.log.applied:
            raise MembershipChangeRefused("a membership change is still pending")
        node = change.node_id
        if change.change == ADD_LEARNER and (node in self.voters or node in self.learners):
            raise MembershipChangeRefused(f"{node} is already a member")
        if change.change == PROMOTE_VOTER:
            if node not in self.learners:
                raise MembershipChangeRefused(f"{node} is not a learner")
            pr = self.progress.get(node)
            if pr is None or pr.match < self.log.committed:
                raise MembershipChangeRefused(f"{node} has not caught up yet")
        if change.change == REMOVE_MEMBER:
            if node not in self.voters and node not in self.learners:
                raise MembershipChangeRefused(f"{node} is not a member")
            if self.voters == {node}:
                raise MembershipChangeRefused("cannot remove the last voter")
        position = self._append([membership_entry_data(change)])
        self.pending_membership_index = position.index
        return position

    def transfer_leadership(self, to: str) -> None:
        """Hand leadership to voter *to* once its log is up to date (thesis §3.10)."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if to == self.id or to not in self.voters:
            raise TransferRefused(f"cannot transfer leadership to {to}")
        if self.transferee == to:
            return
        self.transferee = to
        self.election_elapsed = 0  # the transfer must finish within one election timeout
        pr = self.progress[to]
        if pr.match == self.log.last_index():
            self._send(TimeoutNow(sender=self.id, recipient=to, term=self.term))
        else:
            self._send_append(to)

    def step(self, msg: RaftMessage) -> None:
        """Handle one message from a peer. Messages for another node, or from ourselves, are
        ignored (the transport has already checked who sent it)."""
        if msg.recipient != self.id or msg.sender == self.id:
            return
        if msg.term > self.term:
            if not self._step_higher_term(msg):
                return
        elif msg.term < self.term:
            self._step_lower_term(msg)
            return
        if isinstance(msg, VoteRequest):
            self._handle_vote_request(msg)
        elif self.role is Role.LEADER:
            self._step_leader(msg)
        elif self.role is Role.FOLLOWER:
            self._step_follower(msg)
        else:
            self._step_candidate(msg)

    def report_unreachable(self, peer: str) -> None:
        """The transport could not reach *peer*: stop streaming to it, probe instead."""
        pr = self.progress.get(peer) if self.role is Role.LEADER else None
        if pr is not None and pr.state is ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, peer: str, ok: bool) -> None:
        """The transport delivered (ok) or failed to deliver the snapshot sent to *peer*."""
        pr = self.progress.get(peer) if self.role is Role.LEADER else None
        if pr is None or pr.state is not ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.probe_paused = True  # wait for the follower's answer or next heartbeat response

    def compact(self, index: int, snapshot_data: bytes) -> RaftSnapshot:
        """A snapshot of the state machine at applied *index* (application bytes
        *snapshot_data*), with the membership there. The application stores it:
        ``store.apply_snapshot(SnapshotMeta(s.index, s.term), encode(s))``, which also drops
        the entries it covers; followers behind it will be sent this snapshot."""
        if not self.log.snapshot_index() < index <= self.log.applied:
            raise LocalError(
                f"compact({index}): must be in ({self.log.snapshot_index()}, "
                f"{self.log.applied}] (after the snapshot, applied)"
            )
        term = self.log.term(index)
        check_invariant(term is not None, f"raft: no term for applied entry {index}")
        at = bisect.bisect_right(self._membership_history, index, key=lambda h: h[0]) - 1
        _, voters, learners = self._membership_history[at]
        del self._membership_history[:at]
        return RaftSnapshot(
            index=index, term=term, voters=voters, learners=learners, data=snapshot_data
        )  # type: ignore[arg-type]

    # --- Ready ------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        """Whether ``ready()`` would return any work."""
        log = self.log
        return bool(
            self.messages
            or log.unstable
            or log.unstable_snapshot is not None
            or self._hard_state() != self._prev_hard
            or self._soft_state() != self._prev_soft
            or (log.applied < log.committed and log.unstable_snapshot is None)
        )

    def ready(self) -> Ready:
        """The work to do now; call ``advance(ready)`` when it is done."""
        if self._outstanding is not None:
            raise LocalError("raft: ready() called again before advance()")
        hard = self._hard_state()
        soft = self._soft_state()
        hard_changed = hard != self._prev_hard
        log = self.log
        entries = tuple(log.unstable)
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard_changed else None,
            entries=entries,
            snapshot=log.unstable_snapshot,
            messages=tuple(self.messages),
            committed_entries=tuple(log.next_committed_entries(self.config.max_apply_bytes)),
            must_sync=bool(
                entries
                or log.unstable_snapshot is not None
                or (
                    hard_changed
                    and (hard.term, hard.vote) != (self._prev_hard.term, self._prev_hard.vote)
                )
            ),
        )
        self.messages = []
        self._outstanding = rd
        return rd

    def split_messages(self, rd: Ready) -> tuple[tuple[RaftMessage, ...], tuple[RaftMessage, ...]]:
        """*rd*'s messages as (may be sent before persisting *rd*, must wait for it).

        Only a leader's appends and heartbeats go early, and only when *rd* does not change
        the term or vote: those must be durable before any message of the term leaves.
        Call between ``ready()`` and ``advance(rd)``.
        """
        if rd is not self._outstanding:
            raise LocalError("raft: split_messages() with a Ready that is not the outstanding one")
        hard = rd.hard_state
        if hard is not None and (hard.term, hard.vote) != (
            self._prev_hard.term,
            self._prev_hard.vote,
        ):
            return (), rd.messages
        early = tuple(m for m in rd.messages if isinstance(m, AppendEntries | Heartbeat))
        if not early:
            return (), rd.messages
        return early, tuple(m for m in rd.messages if not isinstance(m, AppendEntries | Heartbeat))

    def advance(self, rd: Ready) -> None:
        """Everything in *rd* is persisted, sent and applied."""
        if rd is not self._outstanding:
            raise LocalError("raft: advance() with a Ready that is not the outstanding one")
        self._outstanding = None
        log = self.log
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.snapshot is not None:
            log.stable_snapshot_to(rd.snapshot.index)
            check_invariant(
                log.store.first_index() > rd.snapshot.index,
                f"raft: snapshot {rd.snapshot.index} handed out but not persisted",
            )
            log.applied = max(log.applied, rd.snapshot.index)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
            if log.unstable_offset > last.index:
                check_invariant(
                    log.store.term(last.index) == last.term,
                    f"raft: entry {last.index} handed out but not persisted",
                )
        if rd.committed_entries:
            for entry in rd.committed_entries:
                if entry.kind == ENTRY_MEMBERSHIP:
                    self._apply_membership(entry.index, decode_membership(entry.data))
            log.applied_to(rd.committed_entries[-1].index)
            if self.role is Role.LEADER:
                applied_bytes = sum(
                    len(e.payload)
                    for e in rd.committed_entries
                    if e.term == self.term and e.kind == ENTRY_NORMAL
                )
                self.uncommitted_bytes = max(0, self.uncommitted_bytes - applied_bytes)
        if self.role is Role.LEADER:
            own = self.progress.get(self.id)
            if own is not None:
                own.maybe_update(log.stable_last_index())
            if self._maybe_commit():
                self._broadcast_append(announce=True)

    def hard_state(self) -> HardState:
        """The current hard state (what the next Ready would persist)."""
        return self._hard_state()

    def status(self) -> Status:
        """Term, role, leader, indexes, membership and (on a leader) every peer's progress."""
        peers: dict[str, PeerStatus] = {}
        if self.role is Role.LEADER:
            for peer in sorted(self.progress):
                pr = self.progress[peer]
                peers[peer] = PeerStatus(
                    match=pr.match,
                    next=pr.next,
                    state=pr.state.value,
                    recent_active=pr.recent_active,
                    inflight_appends=len(pr.inflights),
                    learner=peer in self.learners,
                )
        return Status(
            node_id=self.id,
            term=self.term,
            vote=self.vote,
            role=self.role,
            leader=self.leader,
            commit_index=self.log.committed,
            applied_index=self.log.applied,
            last_index=self.log.last_index(),
            snapshot_index=self.log.snapshot_index(),
            voters=tuple(sorted(self.voters)),
            learners=tuple(sorted(self.learners)),
            transferee=self.transferee,
            peers=peers,
        )

    def is_voter(self) -> bool:
        """Whether this node votes in its current membership (learners and removed do not)."""
        return self.id in self.voters

    # === internals: state changes ================================================================

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def _soft_state(self) -> SoftState:
        return SoftState(self.role, self.leader)

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = ""
        self.leader = ""
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_ticks = self.config.election_ticks + self._rng.randrange(
            self.config.election_ticks
        )
        self.transferee = ""
        self.votes = {}
        self.progress = {}
        self.pending_membership_index = 0
        self.uncommitted_bytes = 0

    def _new_progress(self) -> Progress:
        return Progress(
            self.log.last_index() + 1,
            self.config.max_inflight_appends,
            self.config.max_inflight_bytes,
        )

    def _become_follower(self, term: int, leader: str) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _become_pre_candidate(self) -> None:
        check_invariant(self.role is not Role.LEADER, "raft: leader cannot pre-campaign")
        # A pre-candidate keeps its term and vote: it only asks whether it could win.
        self.role = Role.PRE_CANDIDATE
        self.votes = {}
        self.leader = ""

    def _become_candidate(self) -> None:
        check_invariant(self.role is not Role.LEADER, "raft: leader cannot campaign")
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        check_invariant(self.role is Role.CANDIDATE, "raft: only a candidate becomes leader")
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        for peer in sorted(self.voters | self.learners):
            self.progress[peer] = self._new_progress()
        own = self.progress.get(self.id)
        if own is not None:
            own.match = self.log.stable_last_index()
            own.become_replicate()
            own.recent_active = True
        # Entries already in the log may hold a membership change not yet applied: no new
        # change until everything up to here is applied.
        self.pending_membership_index = self.log.last_index()
        # §5.4.2: entries of earlier terms commit only with one of the current term.
        self._append([NOOP_ENTRY_DATA])

    # --- time ---------------------------------------------------------------------------------

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.is_voter() and self.election_elapsed >= self.randomized_election_ticks:
            self.election_elapsed = 0
            self._hup(transfer=False, explicit=False)

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_ticks:
            self.election_elapsed = 0
            if self.config.check_quorum:
                if not self._quorum_active():
                    self._become_follower(self.term, "")
                    return
                for peer, pr in self.progress.items():
                    pr.recent_active = peer == self.id
            self.transferee = ""  # a transfer not done within an election timeout is off
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _quorum_active(self) -> bool:
        active = sum(
            1
            for v in self.voters
            if v == self.id or (v in self.progress and self.progress[v].recent_active)
        )
        return active >= self._quorum()

    def _quorum(self) -> int:
        return len(self.voters) // 2 + 1

    # --- elections ----------------------------------------------------------------------------

    def _hup(self, *, transfer: bool, explicit: bool) -> None:
        if not self.is_voter():
            if explicit:
                raise CampaignRefused(f"{self.id} is not a voter")
            return
        if self._has_unapplied_membership():
            if explicit:
                raise CampaignRefused("committed membership changes are not applied yet")
            return
        self._campaign(pre_vote=self.config.pre_vote and not transfer, transfer=transfer)

    def _has_unapplied_membership(self) -> bool:
        log = self.log
        if log.applied >= log.committed or log.unstable_snapshot is not None:
            return False
        pending = log.entries(log.applied + 1, log.committed + 1)
        return pending is not None and any(e.kind == ENTRY_MEMBERSHIP for e in pending)

    def _campaign(self, *, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self._become_pre_candidate()
            term = self.term + 1  # the term it would campaign in; not taken yet
        else:
            self._become_candidate()
            term = self.term
        self.votes[self.id] = True
        if self._poll() == _WON:  # a single voter
            if pre_vote:
                self._campaign(pre_vote=False, transfer=False)
            else:
                self._become_leader()
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for peer in sorted(self.voters):
            if peer != self.id:
                self._send(
                    VoteRequest(
                        sender=self.id,
                        recipient=peer,
                        term=term,
                        last_index=last_index,
                        last_term=last_term,
                        pre_vote=pre_vote,
                        transfer=transfer,
                    )
                )

    def _poll(self) -> str:
        granted = sum(1 for v in self.voters if self.votes.get(v) is True)
        rejected = sum(1 for v in self.voters if self.votes.get(v) is False)
        quorum = self._quorum()
        if granted >= quorum:
            return _WON
        if rejected > len(self.voters) - quorum:
            return _LOST
        return _PENDING

    def _in_lease(self) -> bool:
        """Check-quorum lease: a leader was heard from within the election timeout."""
        return (
            self.config.check_quorum
            and self.leader != ""
            and self.election_elapsed < self.config.election_ticks
        )

    def _step_higher_term(self, msg: RaftMessage) -> bool:
        """Handle msg.term > self.term before dispatch; False if the message is dropped."""
        if isinstance(msg, VoteRequest):
            if not msg.transfer and self._in_lease():
                return False  # a leader is alive: do not let a partitioned node disrupt it
            if msg.pre_vote:
                return True  # answering a pre-vote never changes our term
            self._become_follower(msg.term, "")
            return True
        if isinstance(msg, VoteResponse) and msg.pre_vote and msg.granted:
            return True  # granted pre-votes carry the term we would campaign in
        if isinstance(msg, (AppendEntries, Heartbeat, InstallSnapshot)):
            self._become_follower(msg.term, msg.sender)
        else:
            self._become_follower(msg.term, "")
        return True

    def _step_lower_term(self, msg: RaftMessage) -> None:
        if (self.config.check_quorum or self.config.pre_vote) and isinstance(
            msg, (AppendEntries, Heartbeat)
        ):
            # A leader cut off from a newer term: tell it, so it steps down (etcd does the
            # same; without it, a pre-vote cluster could wait on that leader forever).
            self._send(
                AppendResponse(
                    sender=self.id,
                    recipient=msg.sender,
                    term=self.term,
                    log_index=0,
                    reject=False,
                    hint_index=0,
                    hint_term=0,
                )
            )
        elif isinstance(msg, VoteRequest) and msg.pre_vote:
            self._send(
                VoteResponse(
                    sender=self.id,
                    recipient=msg.sender,
                    term=self.term,
                    pre_vote=True,
                    granted=False,
                )
            )

    def _handle_vote_request(self, msg: VoteRequest) -> None:
        can_vote = (
            self.vote == msg.sender
            or (self.vote == "" and self.leader == "")
            or (msg.pre_vote and msg.term > self.term)
        )
        granted = can_vote and self.log.is_up_to_date(msg.last_index, msg.last_term)
        if granted and not msg.pre_vote:
            self.election_elapsed = 0
            self.vote = msg.sender
        self._send(
            VoteResponse(
                sender=self.id,
                recipient=msg.sender,
                term=msg.term if granted else self.term,
                pre_vote=msg.pre_vote,
                granted=granted,
            )
        )

    # --- per role -----------------------------------------------------------------------------

    def _step_follower(self, msg: RaftMessage) -> None:
        if isinstance(msg, (AppendEntries, Heartbeat, InstallSnapshot)):
            self.election_elapsed = 0
            self.leader = msg.sender
            if isinstance(msg, AppendEntries):
                self._handle_append(msg)
            elif isinstance(msg, Heartbeat):
                self._handle_heartbeat(msg)
            else:
                self._handle_snapshot(msg)
        elif isinstance(msg, TimeoutNow) and self.is_voter():
            self._hup(transfer=True, explicit=False)
        # Responses to messages of an earlier role at this term are stale: ignore.

    def _step_candidate(self, msg: RaftMessage) -> None:
        if isinstance(msg, (AppendEntries, Heartbeat, InstallSnapshot)):
            self._become_follower(msg.term, msg.sender)
            self._step_follower(msg)
        elif isinstance(msg, VoteResponse):
            if msg.pre_vote != (self.role is Role.PRE_CANDIDATE):
                return
            self.votes.setdefault(msg.sender, msg.granted)
            result = self._poll()
            if result == _WON:
                if self.role is Role.PRE_CANDIDATE:
                    self._campaign(pre_vote=False, transfer=False)
                else:
                    self._become_leader()
            elif result == _LOST:
                self._become_follower(self.term, "")

    def _step_leader(self, msg: RaftMessage) -> None:
        pr = self.progress.get(msg.sender)
        if pr is None:
            return  # not a member (any more)
        if isinstance(msg, AppendResponse):
            pr.recent_active = True
            self._handle_append_response(msg, pr)
        elif isinstance(msg, HeartbeatResponse):
            pr.recent_active = True
            pr.probe_paused = False
            if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                # The appends filling the window may all have been lost (the follower
                # restarted, say): let one more through, so a rejection can come back.
                pr.inflights.free_first()
            if pr.match < self.log.last_index() or pr.state is ProgressState.PROBE:
                self._send_append(msg.sender)

    def _handle_append_response(self, msg: AppendResponse, pr: Progress) -> None:
        peer = msg.sender
        if msg.reject:
            next_probe = msg.hint_index
            if msg.hint_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(msg.hint_index, msg.hint_term)
            if pr.maybe_decrease_to(msg.log_index, next_probe):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(peer)
            return
        was_paused = pr.is_paused()
        if not (
            pr.maybe_update(msg.log_index)
            or (pr.match == msg.log_index and pr.state is ProgressState.PROBE)
        ):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match + 1 >= self.log.first_index():
            pr.become_probe()
            pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_le(msg.log_index)
        if self._maybe_commit():
            self._broadcast_append(announce=True)
        elif was_paused:
            self._send_append(peer)
        while self._send_append(peer, send_if_empty=False):
            pass  # pipelining: fill the in-flight window
        if peer == self.transferee and pr.match == self.log.last_index():
            self._send(TimeoutNow(sender=self.id, recipient=peer, term=self.term))

    def _handle_append(self, msg: AppendEntries) -> None:
        log = self.log
        if msg.log_index < log.committed:
            self._send_append_response(msg.sender, log.committed)
            return
        last_new = log.maybe_append(msg.log_index, msg.log_term, msg.commit, msg.entries)
        if last_new is not None:
            if msg.ack:
                self._send_append_response(msg.sender, last_new)
            return
        hint_index, hint_term = log.find_conflict_by_term(
            min(msg.log_index, log.last_index()), msg.log_term
        )
        self._send(
            AppendResponse(
                sender=self.id,
                recipient=msg.sender,
                term=self.term,
                log_index=msg.log_index,
                reject=True,
                hint_index=hint_index,
                hint_term=hint_term,
            )
        )

    def _send_append_response(self, to: str, index: int) -> None:
        self._send(
            AppendResponse(
                sender=self.id,
                recipient=to,
                term=self.term,
                log_index=index,
                reject=False,
                hint_index=0,
                hint_term=0,
            )
        )

    def _handle_heartbeat(self, msg: Heartbeat) -> None:
        self.log.commit_to(msg.commit)
        self._send(HeartbeatResponse(sender=self.id, recipient=msg.sender, term=self.term))

    def _handle_snapshot(self, msg: InstallSnapshot) -> None:
        snap = msg.snapshot
        log = self.log
        if snap.index <= log.committed:
            self._send_append_response(msg.sender, log.committed)
            return
        if log.match_term(snap.index, snap.term):
            # We hold the entry the snapshot ends with: the log already matches up to it.
            log.commit_to(snap.index)
            self._send_append_response(msg.sender, log.committed)
            return
        log.restore(snap)
        self.voters, self.learners = set(snap.voters), set(snap.learners)
        self._membership_history = [(snap.index, snap.voters, snap.learners)]
        self._send_append_response(msg.sender, log.last_index())

    # --- replication --------------------------------------------------------------------------

    def _check_can_propose(self, size_bytes: int) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self.transferee:
            raise TransferInProgress(f"leadership is moving to {self.transferee}")
        if (
            self.uncommitted_bytes > 0
            and self.uncommitted_bytes + size_bytes > self.config.max_uncommitted_bytes
        ):
            raise UncommittedBytesExceeded(
                f"{self.uncommitted_bytes} bytes uncommitted, limit "
                f"{self.config.max_uncommitted_bytes}"
            )

    def _append(self, datas: Sequence[bytes]) -> LogPosition:
        last = self.log.last_index()
        entries = [
            RaftEntry(index=last + i, term=self.term, data=data)
            for i, data in enumerate(datas, start=1)
        ]
        self.log.append(entries)
        self._broadcast_append()
        return LogPosition(self.term, entries[-1].index)

    def _maybe_commit(self) -> bool:
        matches = sorted(
            (self.progress[v].match for v in self.voters if v in self.progress), reverse=True
        )
        quorum = self._quorum()
        if len(matches) < quorum:
            return False
        index = matches[quorum - 1]
        # §5.4.2: only an entry of the current term commits by counting replicas.
        if index > self.log.committed and self.log.term(index) == self.term:
            self.log.commit_to(index)
            return True
        return False

    def _broadcast_append(self, announce: bool = False) -> None:
        """Send every follower what it lacks; with *announce* (the commit index moved), an
        append carrying only the new commit index to one that lacks nothing, which asks
        for no answer."""
        for peer in sorted(self.progress):
            if peer != self.id:
                self._send_append(peer, announce=announce)

    def _broadcast_heartbeat(self) -> None:
        for peer in sorted(self.progress):
            if peer != self.id:
                commit = min(self.progress[peer].match, self.log.committed)
                self._send(Heartbeat(sender=self.id, recipient=peer, term=self.term, commit=commit))

    def _send_append(self, to: str, send_if_empty: bool = True, announce: bool = False) -> bool:
        """Send *to* the entries it lacks (or a snapshot); False if nothing was sent.
        *announce*: sent because the commit index moved (see the ``ack`` rule below)."""
        pr = self.progress[to]
        if pr.is_paused():
            return False
        log = self.log
        last = log.last_index()
        check_invariant(pr.next <= last + 1, f"raft: next {pr.next} of {to} past last {last}")
        prev_index = pr.next - 1
        prev_term = log.term(prev_index)
        entries = None
        if prev_term is not None:
            entries = log.entries(
                pr.next, last + 1, self.config.max_append_bytes, self.config.max_append_entries
            )
        if prev_term is None or entries is None:
            return self._send_snapshot(to, pr)
        if not entries and not send_if_empty:
            return False
        if entries:
            self._drop_superseded_empty_append(to, prev_index)
        self._send(
            AppendEntries(
                sender=self.id,
                recipient=to,
                term=self.term,
                log_index=prev_index,
                log_term=prev_term,
                commit=log.committed,
                entries=tuple(entries),
                # An empty append to a follower streaming entries (replicate state) asks
                # for an answer only if it is not a commit announcement and the follower's
                # acknowledgement of earlier entries is missing: then it is the recovery a
                # heartbeat response triggers, and its answer brings the match up. An
                # announcement's answer would repeat the acknowledgement already due (or
                # already read), so the follower answers it only with a rejection.
                ack=bool(entries)
                or pr.state is not ProgressState.REPLICATE
                or (pr.match != prev_index and not announce),
            )
        )
        pr.sent_entries(prev_index + len(entries), len(entries), sum(len(e.data) for e in entries))
        return True

    def _drop_superseded_empty_append(self, to: str, prev_index: int) -> None:
        """Drop a still-queued empty append to *to* at *prev_index* (one that only carried
        the commit index) when entries after it follow in the same Ready: the new append
        has the same position and a commit index at least as high, so the follower learns
        everything from it and answers, writes and syncs once per block rather than twice.
        An empty append changes no progress in the replicate state, and in the probe state
        none follows it until the answer."""
        messages = self.messages
        for i in range(len(messages) - 1, -1, -1):
            msg = messages[i]
            if msg.recipient != to:
                continue
            if (
                type(msg) is AppendEntries
                and not msg.entries
                and msg.term == self.term
                and msg.log_index == prev_index
            ):
                del messages[i]
            return

    def _send_snapshot(self, to: str, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # it may be down: do not ship a snapshot into the void
        snap = self._current_snapshot()
        pr.become_snapshot(snap.index)
        self._send(InstallSnapshot(sender=self.id, recipient=to, term=self.term, snapshot=snap))
        return True

    def _current_snapshot(self) -> RaftSnapshot:
        if self.log.unstable_snapshot is not None:
            return self.log.unstable_snapshot
        stored = self.log.store.snapshot()
        check_invariant(stored is not None, "raft: the log is compacted but has no snapshot")
        meta, blob = stored  # type: ignore[misc]
        cached = self._snapshot_cache
        if cached is None or (cached.index, cached.term) != (meta.index, meta.term):
            cached = decode(blob, RaftSnapshot)
            self._snapshot_cache = cached
        return cached

    def _send(self, msg: RaftMessage) -> None:
        self.messages.append(msg)

    # --- membership ---------------------------------------------------------------------------

    def _replay_membership(self, lo: int, hi: int) -> None:
        """Apply the membership changes among already-applied entries [lo, hi)."""
        while lo < hi:
            got = self.log.entries(lo, hi, self.config.max_apply_bytes)
            check_invariant(bool(got), f"raft: applied entries from {lo} are missing")
            for entry in got:  # type: ignore[union-attr]
                if entry.kind == ENTRY_MEMBERSHIP:
                    self._change_membership_sets(entry.index, decode_membership(entry.data))
            lo = got[-1].index + 1  # type: ignore[index]

    def _apply_membership(self, index: int, change: MembershipChange) -> None:
        self._change_membership_sets(index, change)
        if self.role is not Role.LEADER:
            return
        self._leader_membership_changed()

    def _change_membership_sets(self, index: int, change: MembershipChange) -> None:
        node = change.node_id
        if change.change == ADD_LEARNER:
            if node not in self.voters:
                self.learners.add(node)
        elif change.change == PROMOTE_VOTER:
            self.learners.discard(node)
            self.voters.add(node)
        elif change.change == REMOVE_MEMBER:
            self.voters.discard(node)
            self.learners.discard(node)
        check_invariant(bool(self.voters), "raft: a membership change left no voters")
        self._membership_history.append(
            (index, tuple(sorted(self.voters)), tuple(sorted(self.learners)))
        )

    def _leader_membership_changed(self) -> None:
        members = self.voters | self.learners
        added = sorted(members - set(self.progress))
        for peer in added:
            pr = self._new_progress()
            pr.recent_active = True  # give a new member the benefit of the doubt
            self.progress[peer] = pr
        for peer in sorted(set(self.progress) - members):
            del self.progress[peer]
        if self.transferee and self.transferee not in self.voters:
            self.transferee = ""
        if self.id not in self.voters:
            # Removed (or demoted): stop leading; the remaining voters elect a leader.
            self._become_follower(self.term, "")
            return
        if self._maybe_commit():
            self._broadcast_append(announce=True)
        for peer in added:
            self._send_append(peer)  # start the new member's catch-up now
