"""One-line text forms of Raft messages, entries, Readies and status, for golden output.

Modelled on etcd-raft's ``raft.DescribeMessage``: short, stable and readable, e.g.
``1->2 MsgApp Term:2 Log:1/3 Commit:3 Entries:[2/4 normal "x"]``.
"""

from __future__ import annotations

from consensus.raft import Ready, Status
from protocol.codec import decode
from protocol.raft import (
    ENTRY_MEMBERSHIP,
    ENTRY_NOOP,
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
)


def entry(e: RaftEntry) -> str:
    if e.kind == ENTRY_NOOP:
        return f"{e.term}/{e.index} noop"
    if e.kind == ENTRY_MEMBERSHIP:
        change = decode(e.payload, MembershipChange)
        return f"{e.term}/{e.index} {change.change} {change.node_id}"
    text = e.payload.decode("utf-8", "backslashreplace")
    return f'{e.term}/{e.index} normal "{text}"'


def snapshot(s: RaftSnapshot) -> str:
    return f"{s.term}/{s.index} voters=({','.join(s.voters)}) learners=({','.join(s.learners)})"


def message(m: RaftMessage) -> str:
    head = f"{m.sender}->{m.recipient}"
    if isinstance(m, AppendEntries):
        body = f"MsgApp Term:{m.term} Log:{m.log_term}/{m.log_index} Commit:{m.commit}"
        if m.entries:
            body += " Entries:[" + ", ".join(entry(e) for e in m.entries) + "]"
        if not m.ack:
            body += " NoAck"
    elif isinstance(m, AppendResponse):
        body = f"MsgAppResp Term:{m.term} Index:{m.log_index}"
        if m.reject:
            body += f" Rejected Hint:{m.hint_term}/{m.hint_index}"
    elif isinstance(m, VoteRequest):
        kind = "MsgPreVote" if m.pre_vote else "MsgVote"
        body = f"{kind} Term:{m.term} Log:{m.last_term}/{m.last_index}"
        if m.transfer:
            body += " Transfer"
    elif isinstance(m, VoteResponse):
        kind = "MsgPreVoteResp" if m.pre_vote else "MsgVoteResp"
        body = f"{kind} Term:{m.term} {'Granted' if m.granted else 'Rejected'}"
    elif isinstance(m, Heartbeat):
        body = f"MsgHeartbeat Term:{m.term} Commit:{m.commit}"
    elif isinstance(m, HeartbeatResponse):
        body = f"MsgHeartbeatResp Term:{m.term}"
    elif isinstance(m, InstallSnapshot):
        body = f"MsgSnap Term:{m.term} Snapshot:{snapshot(m.snapshot)}"
    elif isinstance(m, TimeoutNow):
        body = f"MsgTimeoutNow Term:{m.term}"
    else:  # pragma: no cover - every kind is listed above
        body = type(m).__name__
    return f"{head} {body}"


def ready(rd: Ready) -> list[str]:
    lines = [f"Ready MustSync={str(rd.must_sync).lower()}:"]
    if rd.soft_state is not None:
        lines.append(f"Lead:{rd.soft_state.leader or '-'} State:{rd.soft_state.role.value}")
    if rd.hard_state is not None:
        hs = rd.hard_state
        lines.append(f"HardState Term:{hs.term} Vote:{hs.vote or '-'} Commit:{hs.commit}")
    if rd.snapshot is not None:
        lines.append(f"Snapshot {snapshot(rd.snapshot)}")
    if rd.entries:
        lines.append("Entries:")
        lines += [entry(e) for e in rd.entries]
    if rd.committed_entries:
        lines.append("CommittedEntries:")
        lines += [entry(e) for e in rd.committed_entries]
    if rd.messages:
        lines.append("Messages:")
        lines += [message(m) for m in rd.messages]
    return lines


def status(s: Status) -> list[str]:
    lines = [
        f"{s.node_id}: term={s.term} vote={s.vote or '-'} role={s.role.value} "
        f"leader={s.leader or '-'}",
        f"commit={s.commit_index} applied={s.applied_index} last={s.last_index} "
        f"snapshot={s.snapshot_index}",
        f"voters=({','.join(s.voters)}) learners=({','.join(s.learners)})"
        + (f" transferee={s.transferee}" if s.transferee else ""),
    ]
    for peer, p in s.peers.items():
        lines.append(
            f"  {peer}: match={p.match} next={p.next} state={p.state} "
            f"inflight={p.inflight_appends}" + (" learner" if p.learner else "")
        )
    return lines
