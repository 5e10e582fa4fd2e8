"""The Raft wire messages: canonical round trips, field rules, and entry-kind encoding.

Every message kind in protocol.raft encodes and decodes to itself; sender and recipient
must be non-empty; append entries must be contiguous after log_index; a snapshot's
membership lists are sorted, unique and disjoint; an entry's first byte is a known kind.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import limits
from protocol.codec import decode, encode, kinds
from protocol.errors import FieldError
from protocol.raft import (
    ADD_LEARNER,
    ENTRY_MEMBERSHIP,
    ENTRY_NOOP,
    ENTRY_NORMAL,
    NOOP_ENTRY_DATA,
    RAFT_ENTRY_BYTES_MAX,
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
    decode_membership,
    membership_entry_data,
    normal_entry_data,
)
from tests.sim.raft_strategies import RAFT_STRATEGIES

ENTRY = RaftEntry(index=4, term=2, data=normal_entry_data(b"block"))
SNAP = RaftSnapshot(index=9, term=3, voters=("a", "b", "c"), learners=("d",), data=b"state")
MESSAGES = [
    AppendEntries(
        sender="a",
        recipient="b",
        term=2,
        log_index=3,
        log_term=1,
        commit=3,
        entries=(ENTRY,),
        ack=True,
    ),
    AppendResponse(
        sender="b", recipient="a", term=2, log_index=3, reject=True, hint_index=2, hint_term=1
    ),
    VoteRequest(
        sender="a", recipient="b", term=3, last_index=4, last_term=2, pre_vote=True, transfer=False
    ),
    VoteResponse(sender="b", recipient="a", term=3, pre_vote=True, granted=True),
    Heartbeat(sender="a", recipient="b", term=2, commit=3),
    HeartbeatResponse(sender="b", recipient="a", term=2),
    InstallSnapshot(sender="a", recipient="b", term=3, snapshot=SNAP),
    TimeoutNow(sender="a", recipient="b", term=3),
    SNAP,
    ENTRY,
    MembershipChange(change=ADD_LEARNER, node_id="d"),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: object) -> None:
    assert decode(encode(msg)) == msg


def test_ids_must_not_be_empty() -> None:
    with pytest.raises(FieldError, match="sender"):
        Heartbeat(sender="", recipient="b", term=1, commit=0)
    with pytest.raises(FieldError, match="recipient"):
        TimeoutNow(sender="a", recipient="", term=1)


def test_append_entries_must_follow_log_index() -> None:
    with pytest.raises(FieldError, match="contiguous"):
        AppendEntries(
            sender="a",
            recipient="b",
            term=2,
            log_index=1,
            log_term=1,
            commit=0,
            entries=(ENTRY,),
            ack=True,
        )


def test_snapshot_membership_rules() -> None:
    with pytest.raises(FieldError, match="voters"):
        RaftSnapshot(index=1, term=1, voters=("b", "a"), learners=(), data=b"")
    with pytest.raises(FieldError, match="learner"):
        RaftSnapshot(index=1, term=1, voters=("a",), learners=("a",), data=b"")


def test_entry_kinds() -> None:
    assert RaftEntry(index=1, term=1, data=NOOP_ENTRY_DATA).kind == ENTRY_NOOP
    assert ENTRY.kind == ENTRY_NORMAL and ENTRY.payload == b"block"
    change = MembershipChange(change=ADD_LEARNER, node_id="d")
    data = membership_entry_data(change)
    assert data[0] == ENTRY_MEMBERSHIP and decode_membership(data) == change
    for bad in (b"", b"\x09rest"):
        with pytest.raises(FieldError, match="kind"):
            RaftEntry(index=1, term=1, data=bad)
    with pytest.raises(FieldError):
        decode_membership(ENTRY.data)
    with pytest.raises(FieldError, match="change"):
        MembershipChange(change="make_king", node_id="d")


def test_limits_fit_a_frame() -> None:
    assert RAFT_ENTRY_BYTES_MAX <= limits.MESSAGE_BYTES_MAX


def test_every_raft_message_class_has_a_strategy() -> None:
    raft_classes = {cls for cls in kinds().values() if cls.__module__ == "protocol.raft"}
    assert raft_classes == set(RAFT_STRATEGIES)


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_any_valid_message_round_trips(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(sorted(RAFT_STRATEGIES, key=lambda c: c.TAG)))
    msg = data.draw(RAFT_STRATEGIES[cls])
    assert decode(encode(msg)) == msg
