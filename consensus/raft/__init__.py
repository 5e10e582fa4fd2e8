"""The Raft core: consensus on an ordered log, as a sans-I/O state machine.

How it works: :class:`RaftNode` (``core.py``) holds the algorithm. The application feeds
it ticks, peer messages and proposals, and drains :class:`Ready` batches: hard state and
entries to persist, messages to send, committed entries to apply; persist (synced) before
sending, apply after sending, then ``advance``. ``log.py`` combines the durable log (read
through the ``LogStore`` protocol, which ``storage.raftlog.RaftLogStore`` satisfies) with the
unstable tail not yet persisted; ``progress.py`` is the leader's per-follower replication
state (probe / replicate / snapshot, in-flight bound). The wire messages and the entry-kind
encoding are in ``protocol.raft``.

Why this shape: the model is etcd-raft. Doing no I/O keeps every decision a function of
inputs, so the whole cluster runs in deterministic simulation (``tests/sim``) with seeded
faults, and a failure replays from its seed.

Imports: protocol (and the standard library). No clocks, no I/O, no module-level random.
"""

from consensus.raft.core import (
    HardState,
    LogPosition,
    PeerStatus,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
    SoftState,
    Status,
)
from consensus.raft.errors import (
    CampaignRefused,
    MembershipChangeRefused,
    NotLeader,
    RaftRefused,
    TransferInProgress,
    TransferRefused,
    UncommittedBytesExceeded,
)
from consensus.raft.log import LogStore
from consensus.raft.progress import ProgressState

__all__ = [
    "CampaignRefused",
    "HardState",
    "LogPosition",
    "LogStore",
    "MembershipChangeRefused",
    "NotLeader",
    "PeerStatus",
    "ProgressState",
    "RaftConfig",
    "RaftNode",
    "RaftRefused",
    "Ready",
    "Role",
    "SoftState",
    "Status",
    "TransferInProgress",
    "TransferRefused",
    "UncommittedBytesExceeded",
]
