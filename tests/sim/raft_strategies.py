"""Hypothesis strategies of valid Raft wire messages (protocol.raft), one per class.

``RAFT_STRATEGIES`` has the same shape as ``tests.unit.strategies.STRATEGIES`` so it can be
merged there (``STRATEGIES.update(RAFT_STRATEGIES)``) once protocol.messages imports
protocol.raft. Instances pass every constructor rule: non-empty ids, entries contiguous
after log_index, entry data starting with a known kind byte, snapshot membership sorted,
unique and disjoint.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from protocol import limits
from protocol.codec import UINT64_MAX
from protocol.raft import (
    ENTRY_KINDS,
    MEMBERSHIP_CHANGES,
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    MembershipChange,
    RaftEntry,
    RaftSnapshot,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)

ids = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=limits.ID_CHARS_MAX
)
counters = st.integers(min_value=0, max_value=UINT64_MAX)
small_counters = st.integers(min_value=0, max_value=2**40)
entry_data = st.builds(
    lambda kind, rest: bytes((kind,)) + rest, st.sampled_from(ENTRY_KINDS), st.binary(max_size=32)
)


def _entries(log_index: int) -> st.SearchStrategy[tuple[RaftEntry, ...]]:
    return st.lists(st.tuples(counters, entry_data), max_size=4).map(
        lambda items: tuple(
            RaftEntry(index=log_index + i, term=term, data=data)
            for i, (term, data) in enumerate(items, start=1)
        )
    )


def _membership() -> st.SearchStrategy[tuple[tuple[str, ...], tuple[str, ...]]]:
    return st.lists(ids, unique=True, min_size=1, max_size=6).flatmap(
        lambda names: st.integers(min_value=1, max_value=len(names)).map(
            lambda cut: (tuple(sorted(names[:cut])), tuple(sorted(names[cut:])))
        )
    )


snapshots = st.builds(
    lambda index, term, members, data: RaftSnapshot(
        index=index, term=term, voters=members[0], learners=members[1], data=data
    ),
    counters,
    counters,
    _membership(),
    st.binary(max_size=64),
)

RAFT_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    RaftEntry: st.builds(
        RaftEntry,
        index=st.integers(min_value=1, max_value=UINT64_MAX),
        term=counters,
        data=entry_data,
    ),
    MembershipChange: st.builds(
        MembershipChange, change=st.sampled_from(MEMBERSHIP_CHANGES), node_id=ids
    ),
    RaftSnapshot: snapshots,
    AppendEntries: small_counters.flatmap(
        lambda log_index: st.builds(
            AppendEntries,
            sender=ids,
            recipient=ids,
            term=counters,
            log_index=st.just(log_index),
            log_term=counters,
            commit=counters,
            entries=_entries(log_index),
        )
    ),
    AppendResponse: st.builds(
        AppendResponse,
        sender=ids,
        recipient=ids,
        term=counters,
        log_index=counters,
        reject=st.booleans(),
        hint_index=counters,
        hint_term=counters,
    ),
    VoteRequest: st.builds(
        VoteRequest,
        sender=ids,
        recipient=ids,
        term=counters,
        last_index=counters,
        last_term=counters,
        pre_vote=st.booleans(),
        transfer=st.booleans(),
    ),
    VoteResponse: st.builds(
        VoteResponse,
        sender=ids,
        recipient=ids,
        term=counters,
        pre_vote=st.booleans(),
        granted=st.booleans(),
    ),
    Heartbeat: st.builds(Heartbeat, sender=ids, recipient=ids, term=counters, commit=counters),
    HeartbeatResponse: st.builds(HeartbeatResponse, sender=ids, recipient=ids, term=counters),
    InstallSnapshot: st.builds(
        InstallSnapshot, sender=ids, recipient=ids, term=counters, snapshot=snapshots
    ),
    TimeoutNow: st.builds(TimeoutNow, sender=ids, recipient=ids, term=counters),
}
