"""The Raft wire messages, the snapshot record and the encoding of log entry kinds.

One message class per kind, as in etcd-raft's ``raftpb`` (MsgApp, MsgAppResp, MsgVote,
MsgPreVote, ...), each a codec-registered frozen dataclass, so the node ships them as
canonical msgpack frames and the Raft core (``consensus.raft``) builds and reads them
directly. Every message names its ``sender`` and ``recipient``: the transport checks the
sender against the TLS peer, the core ignores messages addressed to another node.

Log entries carry opaque ``bytes``; their first byte says what kind of entry it is, so the
application can tell a block from the leader's no-op and from a membership change without a
second lookup:

======  ====================  =====================================================
byte    kind                  rest of the data
======  ====================  =====================================================
0x00    ``ENTRY_NORMAL``      the application's payload (a block), as proposed
0x01    ``ENTRY_NOOP``        nothing: the empty entry a new leader appends (§5.4.2)
0x02    ``ENTRY_MEMBERSHIP``  ``encode(MembershipChange(...))``
======  ====================  =====================================================

A snapshot stored by the application (RaftLogStore's snapshot data) is
``encode(RaftSnapshot(...))``: the index and term it covers, the membership at that index
(the store's snapshot meta has no room for it) and the application's own snapshot bytes.
"""

from __future__ import annotations

from protocol import limits
from protocol.codec import decode, encode, field, message
from protocol.errors import FieldError, InvariantViolation

_ID = limits.ID_CHARS_MAX

# --- limits ------------------------------------------------------------------------------------
# An entry carries one block at most (block cutting keeps blocks under BLOCK_BYTES_MAX), its
# one-byte kind prefix and the block's framing.
RAFT_ENTRY_BYTES_MAX = limits.BLOCK_BYTES_MAX + limits.BLOCK_FRAMING_BYTES_MAX
# Entries per append message: etcd sends up to MaxSizePerMsg bytes with no count limit; a
# count bounds the work one message can cause. 1,024 empty entries are ~20 KiB on the wire.
RAFT_APPEND_ENTRIES_MAX = 1_024
# An application snapshot travels in one message here (no chunking): the ordering service's
# snapshot is small (chain tip and membership), so one frame, like a block, is enough.
RAFT_SNAPSHOT_BYTES_MAX = limits.BLOCK_BYTES_MAX
# Framing of a Raft message around its payload: tags, field names, ids, counters.
RAFT_FRAMING_BYTES_MAX = 64 * limits.KIB

ENTRY_NORMAL = 0x00
ENTRY_NOOP = 0x01
ENTRY_MEMBERSHIP = 0x02
ENTRY_KINDS = (ENTRY_NORMAL, ENTRY_NOOP, ENTRY_MEMBERSHIP)

ADD_LEARNER = "add_learner"
PROMOTE_VOTER = "promote_voter"
REMOVE_MEMBER = "remove_member"
MEMBERSHIP_CHANGES = (ADD_LEARNER, PROMOTE_VOTER, REMOVE_MEMBER)


def _check_relations() -> None:
    if RAFT_SNAPSHOT_BYTES_MAX + RAFT_FRAMING_BYTES_MAX > limits.MESSAGE_BYTES_MAX:
        raise InvariantViolation("protocol.raft: a snapshot must fit in one frame")
    if RAFT_ENTRY_BYTES_MAX + RAFT_FRAMING_BYTES_MAX > limits.MESSAGE_BYTES_MAX:
        raise InvariantViolation("protocol.raft: an entry must fit in one frame")


_check_relations()


def _need_ids(kind: str, msg: object) -> None:
    for name in ("sender", "recipient"):
        if not getattr(msg, name):
            raise FieldError(kind, name, "empty node id")


# --- log entries and snapshots -----------------------------------------------------------------


@message("raft_entry")
class RaftEntry:
    """One log entry: its position, the leader's term when it was created, and its data."""

    index: int = field(min=1)
    term: int = field(min=0)
    data: bytes = field(max_len=RAFT_ENTRY_BYTES_MAX)

    def check(self) -> None:
        if not self.data or self.data[0] not in ENTRY_KINDS:
            raise FieldError("raft_entry", "data", "no known entry kind byte")

    @property
    def kind(self) -> int:
        """ENTRY_NORMAL, ENTRY_NOOP or ENTRY_MEMBERSHIP."""
        return self.data[0]

    @property
    def payload(self) -> bytes:
        """The data after the kind byte."""
        return self.data[1:]


@message("raft_membership_change")
class MembershipChange:
    """One single-server membership change (Raft thesis §4.1), proposed as a log entry."""

    change: str = field(max_len=_ID)  # ADD_LEARNER | PROMOTE_VOTER | REMOVE_MEMBER
    node_id: str = field(max_len=_ID)

    def check(self) -> None:
        if self.change not in MEMBERSHIP_CHANGES:
            raise FieldError("raft_membership_change", "change", "unknown change")
        if not self.node_id:
            raise FieldError("raft_membership_change", "node_id", "empty node id")


@message("raft_snapshot")
class RaftSnapshot:
    """A snapshot: the last entry it covers, the membership there and the application's state."""

    index: int = field(min=0)
    term: int = field(min=0)
    voters: tuple[str, ...] = field(max_len=limits.MEMBERS_MAX, item_max_len=_ID)
    learners: tuple[str, ...] = field(max_len=limits.MEMBERS_MAX, item_max_len=_ID)
    data: bytes = field(max_len=RAFT_SNAPSHOT_BYTES_MAX)

    def check(self) -> None:
        if list(self.voters) != sorted(set(self.voters)):
            raise FieldError("raft_snapshot", "voters", "not sorted and unique")
        if list(self.learners) != sorted(set(self.learners)):
            raise FieldError("raft_snapshot", "learners", "not sorted and unique")
        if set(self.voters) & set(self.learners):
            raise FieldError("raft_snapshot", "learners", "a voter is also a learner")


def normal_entry_data(payload: bytes) -> bytes:
    """The data of a normal entry carrying *payload*."""
    return bytes((ENTRY_NORMAL,)) + payload


NOOP_ENTRY_DATA = bytes((ENTRY_NOOP,))


def membership_entry_data(change: MembershipChange) -> bytes:
    """The data of an entry carrying a membership change."""
    return bytes((ENTRY_MEMBERSHIP,)) + encode(change)


def decode_membership(data: bytes) -> MembershipChange:
    """The membership change in an ENTRY_MEMBERSHIP entry's data (RemoteError if malformed)."""
    if not data or data[0] != ENTRY_MEMBERSHIP:
        raise FieldError("raft_entry", "data", "not a membership change entry")
    return decode(data[1:], MembershipChange)


# --- messages ----------------------------------------------------------------------------------


@message("raft_append")
class AppendEntries:
    """MsgApp: entries after (log_index, log_term), and the leader's commit index.

    ``ack`` false marks an append that only announces the commit index to a follower the
    leader knows to hold everything up to log_index: accepting it tells the leader nothing,
    so the follower answers it only if it rejects it.
    """

    sender: str = field(max_len=_ID)
    recipient: str = field(max_len=_ID)
    term: int = field(min=0)
    log_index: int = field(min=0)
    log_term: int = field(min=0)
    commit: int = field(min=0)
    entries: tuple[RaftEntry, ...] = field(max_len=RAFT_APPEND_ENTRIES_MAX)
    ack: bool

    def check(self) -> None:
        _need_ids("raft_append", self)
        for offset, entry in enumerate(self.entries, start=1):
            if entry.index != self.log_index + offset:
                raise FieldError("raft_append", "entries", "indexes not contiguous")


@message("raft_append_resp")
class AppendResponse:
    """MsgAppResp: accepted up to log_index, or rejected at log_index with a hint.

    On a rejection, (hint_index, hint_term) is the follower's guess of the last entry the
    logs may share: its last index at or below the probe with a term at or below the probe's.
    """

    sender: str = field(max_len=_ID)
    recipient: str = field(max_len=_ID)
    term: int = field(min=0)
    log_index: int = field(min=0)
    reject: bool
    hint_index: int = field(min=0)
    hint_term: int = field(min=0)

    def check(self) -> None:
        _need_ids("raft_append_resp", self)


@message("raft_vote")
class VoteRequest:
    """MsgVote or MsgPreVote: a candidate's request for a vote at *term*.

    ``transfer`` marks a campaign started by leadership transfer (MsgTimeoutNow): voters
    grant it even while they still hear from a leader (the check-quorum lease).
    """

    sender: str = field(max_len=_ID)
    recipient: str = field(max_len=_ID)
    term: int = field(min=0)
    last_index: int = field(min=0)
    last_term: int = field(min=0)
    pre_vote: bool
    transfer: bool

    def check(self) -> None:
        _need_ids("raft_vote", self)


@message("raft_vote_resp")
class VoteResponse:
    """MsgVoteResp or MsgPreVoteResp."""

    sender: str = field(max_len=_ID)
    recipient: str = field(max_len=_ID)
    term: int = field(min=0)
    pre_vote: bool
    granted: bool

    def check(self) -> None:
        _need_ids("raft_vote_resp", self)


@message("raft_heartbeat")
class Heartbeat:
    """MsgHeartbeat: the leader is alive; commit is at most what the follower is known to hold."""

    sender: str = field(max_len=_ID)
    recipient: str = field(max_len=_ID)
    term: int = field(min=0)
    commit: int = field(min=0)

    def check(self) -> None:
        _need_ids("raft_heartbeat", self)


@message("raft_heartbeat_resp")
class HeartbeatResponse:
    """MsgHeartbeatResp."""

    sender: str = field(max_len=_ID)
    recipient: str = field(max_len=_ID)
    term: int = field(min=0)

    def check(self) -> None:
        _need_ids("raft_heartbeat_resp", self)


@message("raft_install_snapshot")
class InstallSnapshot:
    """MsgSnap: the leader's latest snapshot, for a follower whose next entries are compacted."""

    sender: str = field(max_len=_ID)
    recipient: str = field(max_len=_ID)
    term: int = field(min=0)
    snapshot: RaftSnapshot

    def check(self) -> None:
        _need_ids("raft_install_snapshot", self)


@message("raft_timeout_now")
class TimeoutNow:
    """MsgTimeoutNow: the leader hands over; the recipient campaigns at once."""

    sender: str = field(max_len=_ID)
    recipient: str = field(max_len=_ID)
    term: int = field(min=0)

    def check(self) -> None:
        _need_ids("raft_timeout_now", self)


RaftMessage = (
    AppendEntries
    | AppendResponse
    | VoteRequest
    | VoteResponse
    | Heartbeat
    | HeartbeatResponse
    | InstallSnapshot
    | TimeoutNow
)
RAFT_MESSAGE_TYPES: tuple[type, ...] = (
    AppendEntries,
    AppendResponse,
    VoteRequest,
    VoteResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    TimeoutNow,
)
