"""One test per rule of the Raft paper's §5, then pre-vote, check-quorum, learners,
leadership transfer, snapshots and the replication bounds.

Modelled on etcd-raft's raft_paper_test.go: each test drives one RaftNode (or a few, over
tests/sim/harness.Net) with explicit messages and ticks and checks the state and the
messages that come out. Nodes run on the real RaftLogStore over MemoryKV, so the Ready
contract (persist, then send, then advance) is exercised too. Pre-vote and check-quorum
are off unless a test turns them on, to match the paper.
"""

from __future__ import annotations

import random

import pytest

from consensus.raft import (
    CampaignRefused,
    MembershipChangeRefused,
    NotLeader,
    ProgressState,
    RaftConfig,
    RaftNode,
    Role,
    TransferInProgress,
    TransferRefused,
    UncommittedBytesExceeded,
)
from protocol.codec import replace
from protocol.errors import InvariantViolation, LocalError
from protocol.raft import (
    ADD_LEARNER,
    ENTRY_NOOP,
    PROMOTE_VOTER,
    REMOVE_MEMBER,
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    MembershipChange,
    RaftEntry,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
    normal_entry_data,
)
from storage.memory import MemoryKV
from storage.raftlog import RaftLogStore
from tests.sim.harness import Net, committed, flush, make_node, persist, store_with

VOTERS = ("1", "2", "3")


def raft_entry(index: int, term: int, payload: bytes = b"") -> RaftEntry:
    return RaftEntry(index=index, term=term, data=normal_entry_data(payload))


def append(
    sender: str,
    to: str,
    term: int,
    log_index: int = 0,
    log_term: int = 0,
    commit: int = 0,
    entries: tuple[RaftEntry, ...] = (),
) -> AppendEntries:
    return AppendEntries(
        sender=sender,
        recipient=to,
        term=term,
        log_index=log_index,
        log_term=log_term,
        commit=commit,
        entries=entries,
        ack=True,
    )


def app_resp(sender: str, to: str, term: int, index: int) -> AppendResponse:
    return AppendResponse(
        sender=sender,
        recipient=to,
        term=term,
        log_index=index,
        reject=False,
        hint_index=0,
        hint_term=0,
    )


def vote(
    sender: str,
    to: str,
    term: int,
    last_index: int = 0,
    last_term: int = 0,
    *,
    pre: bool = False,
    transfer: bool = False,
) -> VoteRequest:
    return VoteRequest(
        sender=sender,
        recipient=to,
        term=term,
        last_index=last_index,
        last_term=last_term,
        pre_vote=pre,
        transfer=transfer,
    )


def vote_resp(
    sender: str, to: str, term: int, granted: bool = True, pre: bool = False
) -> VoteResponse:
    return VoteResponse(sender=sender, recipient=to, term=term, pre_vote=pre, granted=granted)


def tick_election(node: RaftNode) -> None:
    """Enough ticks to pass any randomized election timeout."""
    for _ in range(2 * node.config.election_ticks):
        node.tick()


def become_leader(node: RaftNode) -> None:
    """Win an election at the next term with votes from every peer, and settle the Ready."""
    node.campaign()
    flush(node)
    for peer in sorted(node.voters):
        if peer != node.id and node.role is not Role.LEADER:
            node.step(vote_resp(peer, node.id, node.term))
    assert node.role is Role.LEADER
    flush(node)


def leader_with_followers_caught_up() -> RaftNode:
    """Node 1 leading term 1 of three, both followers acknowledged up to its first entry."""
    node = make_node()
    become_leader(node)
    for peer in ("2", "3"):
        node.step(app_resp(peer, "1", 1, 1))
    flush(node)
    return node


def cluster(size: int = 3, **options: object) -> Net:
    ids = tuple(str(i) for i in range(1, size + 1))
    return Net(*(make_node(i, ids, seed=int(i), **options) for i in ids))


# --- §5.1: terms -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["follower", "candidate", "leader"])
def test_update_term_from_message(role: str) -> None:
    """§5.1: a server seeing a higher term adopts it; a candidate or leader steps down."""
    node = make_node()
    if role == "candidate":
        node.campaign()
    elif role == "leader":
        become_leader(node)
    node.step(append("2", "1", term=5))
    assert (node.term, node.role, node.leader) == (5, Role.FOLLOWER, "2")


def test_reject_stale_term_message() -> None:
    """§5.1: a request with a stale term is rejected (here: ignored, state unchanged)."""
    node = make_node(store=store_with(term=2))
    node.step(append("2", "1", term=1, entries=(raft_entry(1, 1),)))
    assert node.log.last_index() == 0
    assert node.term == 2
    assert node.leader == ""


def test_start_as_follower() -> None:
    """§5.2: servers start as followers."""
    assert make_node().role is Role.FOLLOWER


# --- §5.2: leader election -------------------------------------------------------------------


def test_leader_broadcast_heartbeat() -> None:
    """§5.2: a leader sends heartbeats to every follower to keep its authority."""
    node = make_node()
    become_leader(node)
    for _ in range(node.config.heartbeat_ticks):
        node.tick()
    msgs = flush(node)
    heartbeats = sorted((m.recipient, m.term) for m in msgs if isinstance(m, Heartbeat))
    assert heartbeats == [("2", 1), ("3", 1)]


@pytest.mark.parametrize("role", ["follower", "candidate"])
def test_nonleader_start_election(role: str) -> None:
    """§5.2: on election timeout a follower (or a candidate, again) increments its term,
    votes for itself and asks every other server for its vote."""
    node = make_node()
    if role == "candidate":
        node.campaign()
        flush(node)
    term_before = node.term
    tick_election(node)
    msgs = flush(node)
    assert node.role is Role.CANDIDATE
    assert node.term == term_before + 1
    assert node.vote == "1"
    assert node.log.store.hard_state().vote == "1"  # persisted before the requests go out
    requests = sorted(
        (m.recipient, m.term) for m in msgs if isinstance(m, VoteRequest) and not m.pre_vote
    )
    assert requests == [("2", node.term), ("3", node.term)]


@pytest.mark.parametrize(
    ("size", "grants", "rejects", "role"),
    [
        (1, 0, 0, Role.LEADER),
        (3, 1, 0, Role.LEADER),
        (3, 2, 0, Role.LEADER),
        (3, 0, 2, Role.FOLLOWER),
        (3, 0, 0, Role.CANDIDATE),
        (5, 2, 0, Role.LEADER),
        (5, 1, 0, Role.CANDIDATE),
        (5, 1, 3, Role.FOLLOWER),
        (5, 0, 2, Role.CANDIDATE),
    ],
)
def test_leader_election_in_one_round(size: int, grants: int, rejects: int, role: Role) -> None:
    """§5.2: a candidate wins with votes from a majority, loses when a majority refuses,
    and otherwise keeps waiting (a split vote)."""
    ids = tuple(str(i) for i in range(1, size + 1))
    node = make_node(voters=ids)
    node.campaign()
    others = list(ids[1:])
    for peer in others[:grants]:
        node.step(vote_resp(peer, "1", 1, granted=True))
    for peer in others[grants : grants + rejects]:
        node.step(vote_resp(peer, "1", 1, granted=False))
    assert node.role is role


def test_follower_votes_once_per_term() -> None:
    """§5.2: each server votes for at most one candidate per term, first come first served."""
    node = make_node()
    node.step(vote("2", "1", term=1))
    node.step(vote("3", "1", term=1))
    node.step(vote("2", "1", term=1))  # a retransmission is answered the same way
    msgs = flush(node)
    answers = [(m.recipient, m.granted) for m in msgs if isinstance(m, VoteResponse)]
    assert answers == [("2", True), ("3", False), ("2", True)]
    assert node.log.store.hard_state().vote == "2"


def test_candidate_falls_back_to_follower() -> None:
    """§5.2: a candidate that hears from a leader of its term (or later) becomes follower."""
    for term in (1, 2):
        node = make_node()
        node.campaign()
        node.step(append("2", "1", term=term))
        assert (node.role, node.term, node.leader) == (Role.FOLLOWER, term, "2")


@pytest.mark.parametrize("role", ["follower", "candidate"])
def test_election_timeout_is_randomized(role: str) -> None:
    """§5.2: election timeouts are drawn from [election_ticks, 2 * election_ticks)."""
    seen = set()
    for seed in range(200):
        node = make_node(seed=seed)
        if role == "candidate":
            node.campaign()
        term = node.term
        ticks = 0
        while node.term == term:
            node.tick()
            ticks += 1
        seen.add(ticks)
    election = RaftConfig(node_id="x").election_ticks
    assert seen == set(range(election, 2 * election))


def test_election_timeouts_rarely_collide() -> None:
    """§5.2: randomized timeouts spread out the followers' elections."""
    collisions = 0
    for seed in range(100):
        timeouts = []
        for number in range(3):
            node = make_node(str(number + 1), seed=seed * 10 + number)
            ticks = 0
            while node.role is Role.FOLLOWER:
                node.tick()
                ticks += 1
            timeouts.append(ticks)
        collisions += len(set(timeouts)) < 3
    assert collisions < 50


# --- §5.3: log replication -------------------------------------------------------------------


def test_leader_start_replication() -> None:
    """§5.3: the leader appends a proposal to its log and sends it to every follower, with
    the index and term of the entry before it."""
    node = make_node()
    become_leader(node)
    last = node.log.last_index()
    for peer in ("2", "3"):
        node.step(app_resp(peer, "1", 1, last))
    flush(node)
    term, index = node.propose(b"some data")
    assert (term, index) == (1, last + 1)
    msgs = [m for m in flush(node) if isinstance(m, AppendEntries)]
    assert sorted(m.recipient for m in msgs) == ["2", "3"]
    for m in msgs:
        assert (m.log_index, m.log_term) == (last, 1)
        assert [e.payload for e in m.entries] == [b"some data"]


def test_leader_commits_entry_replicated_on_majority() -> None:
    """§5.3: an entry is committed once the leader has replicated it on a majority; the
    leader then applies it and tells followers the new commit index."""
    node = leader_with_followers_caught_up()
    _, index = node.propose(b"x")
    flush(node)
    assert node.log.committed == index - 1
    node.step(app_resp("2", "1", 1, index))
    rd = node.ready()
    assert node.log.committed == index
    assert [e.payload for e in rd.committed_entries] == [b"x"]
    commits = {m.recipient: m.commit for m in rd.messages if isinstance(m, AppendEntries)}
    assert commits == {"2": index, "3": index}
    node.advance(rd)


def test_a_commit_announcement_rides_on_the_next_append_of_the_same_ready() -> None:
    """Replication: a leader that commits and proposes again before its next Ready sends
    each follower one append holding the new entry and the new commit index, not an empty
    append announcing the commit followed by a second one with the entry."""
    node = leader_with_followers_caught_up()
    _, first = node.propose(b"x")
    flush(node)
    node.step(app_resp("2", "1", 1, first))  # commits it: an empty append to each follower
    assert node.log.committed == first
    node.propose(b"y")
    rd = node.ready()
    appends = sorted(
        (m.recipient, m.log_index, m.commit, [e.payload for e in m.entries])
        for m in rd.messages
        if isinstance(m, AppendEntries)
    )
    assert appends == [("2", first, first, [b"y"]), ("3", first, first, [b"y"])]
    persist(node, rd)
    node.advance(rd)
    # Alone, the announcement still goes out at once.
    node.step(app_resp("2", "1", 1, first + 1))
    rd = node.ready()
    alone = [m for m in rd.messages if isinstance(m, AppendEntries)]
    assert sorted((m.recipient, m.commit, m.entries) for m in alone) == [
        ("2", first + 1, ()),
        ("3", first + 1, ()),
    ]


def test_a_bare_commit_announcement_wants_no_answer() -> None:
    """Replication: an append that only announces the new commit index to a follower in
    the replicate state is marked ``ack=False``, also to a follower whose acknowledgement
    of the entry is still due: its answer would repeat that acknowledgement. If that
    acknowledgement was lost, the follower's next heartbeat response brings an empty
    append that does want an answer, and the match comes up. Appends with entries and
    appends to a follower being probed always want one."""
    node = leader_with_followers_caught_up()
    _, index = node.propose(b"x")
    sent = flush(node)
    assert {(m.recipient, m.ack) for m in sent if isinstance(m, AppendEntries)} == {
        ("2", True),
        ("3", True),
    }
    node.step(app_resp("2", "1", 1, index))  # 3 has not acknowledged the entry yet
    announcements = {
        m.recipient: (m.entries, m.ack)
        for m in flush(node)
        if isinstance(m, AppendEntries) and m.commit == index
    }
    assert announcements == {"2": ((), False), "3": ((), False)}
    # 3's acknowledgement is lost; its heartbeat response brings the recovery append.
    node.step(HeartbeatResponse(sender="3", recipient="1", term=1))
    (recovery,) = [m for m in flush(node) if isinstance(m, AppendEntries)]
    assert (recovery.recipient, recovery.entries, recovery.ack) == ("3", (), True)
    # Had 3 lost the entry itself, it rejects; the leader probes it, wanting answers.
    node.step(replace(app_resp("3", "1", 1, index), reject=True, hint_index=index))
    (probe,) = [m for m in flush(node) if isinstance(m, AppendEntries) and m.recipient == "3"]
    assert node.progress["3"].state is ProgressState.PROBE and probe.ack


@pytest.mark.parametrize("matches", [True, False])
def test_a_follower_answers_an_unwanted_acknowledgement_only_to_reject_it(matches: bool) -> None:
    """A follower accepting an ``ack=False`` append sends nothing back (it still applies the
    commit); one whose log does not hold the previous entry rejects it as usual."""
    node = make_node(store=store_with([1, 1], term=1))
    announcement = replace(
        append("2", "1", term=1, log_index=2 if matches else 3, log_term=1, commit=2), ack=False
    )
    node.step(announcement)
    answers = [m for m in flush(node) if isinstance(m, AppendResponse)]
    if matches:
        assert answers == [] and node.log.committed == 2
    else:
        assert [(m.reject, m.log_index) for m in answers] == [(True, 3)]


@pytest.mark.parametrize(
    ("size", "acks", "commits"),
    [(1, 0, True), (3, 0, False), (3, 1, True), (3, 2, True), (5, 1, False), (5, 2, True)],
)
def test_leader_acknowledges_commit(size: int, acks: int, commits: bool) -> None:
    """§5.3: commit needs a majority counting the leader's own (persisted) copy."""
    ids = tuple(str(i) for i in range(1, size + 1))
    node = make_node(voters=ids)
    become_leader(node)
    _, index = node.propose(b"x")
    flush(node)
    for peer in ids[1 : 1 + acks]:
        node.step(app_resp(peer, "1", node.term, index))
    flush(node)
    assert (node.log.committed >= index) is commits


def test_leader_sends_appends_before_persisting_but_counts_itself_only_after() -> None:
    """Thesis §10.2.1: a leader's appends may leave while it writes the same entries; until
    ``advance`` reports them stable, its own copy does not count towards a commit."""
    node = leader_with_followers_caught_up()
    _, index = node.propose(b"x")
    rd = node.ready()
    early, late = node.split_messages(rd)
    assert sorted(m.recipient for m in early if isinstance(m, AppendEntries)) == ["2", "3"]
    assert late == ()
    node.step(app_resp("2", "1", 1, index))  # the follower acks before our write finished
    assert node.log.committed == index - 1  # one copy of three is not a quorum
    persist(node, rd)
    node.advance(rd)
    assert node.log.committed == index


def test_only_a_leaders_appends_and_heartbeats_may_go_before_persisting() -> None:
    """Votes, append acknowledgements and anything sent in a Ready that changes the term or
    vote wait for the write."""
    candidate = make_node()
    candidate.campaign()
    rd = candidate.ready()
    assert rd.hard_state is not None and rd.hard_state.vote == "1"
    assert candidate.split_messages(rd) == ((), rd.messages)
    assert any(isinstance(m, VoteRequest) for m in rd.messages)
    persist(candidate, rd)
    candidate.advance(rd)

    follower = make_node("2")
    follower.step(append("1", "2", 1, entries=(raft_entry(1, 1),)))
    rd = follower.ready()
    assert any(isinstance(m, AppendResponse) for m in rd.messages)
    assert follower.split_messages(rd) == ((), rd.messages)
    persist(follower, rd)
    follower.advance(rd)
    with pytest.raises(LocalError, match="not the outstanding one"):
        follower.split_messages(rd)


def test_leader_commits_preceding_entries() -> None:
    """§5.3: committing an entry commits every entry before it, from earlier terms too."""
    node = make_node(store=store_with([1, 2], term=2))
    become_leader(node)  # term 3, appends a no-op at 3
    for peer in ("2", "3"):
        node.step(app_resp(peer, "1", 3, 3))
    flush(node)
    assert node.log.committed == 3
    assert [e.term for e in committed(node)] == [1, 2, 3]


def test_follower_commits_what_the_leader_committed() -> None:
    """§5.3: a follower learns the commit index from the leader and applies up to it."""
    node = make_node()
    entries = (raft_entry(1, 1, b"a"), raft_entry(2, 1, b"b"), raft_entry(3, 1, b"c"))
    node.step(append("2", "1", term=1, commit=2, entries=entries))
    rd = node.ready()
    assert node.log.committed == 2
    assert [e.payload for e in rd.committed_entries] == [b"a", b"b"]
    persist(node, rd)
    node.advance(rd)


@pytest.mark.parametrize(
    ("log_index", "log_term", "accepted"),
    [(0, 0, True), (2, 2, True), (3, 3, True), (3, 2, False), (4, 3, False), (2, 3, False)],
)
def test_follower_checks_previous_entry(log_index: int, log_term: int, accepted: bool) -> None:
    """§5.3: a follower rejects an append whose previous (index, term) it does not hold."""
    node = make_node(store=store_with([1, 2, 3], term=3))
    node.step(append("2", "1", term=3, log_index=log_index, log_term=log_term))
    (resp,) = [m for m in flush(node) if isinstance(m, AppendResponse)]
    assert resp.reject is not accepted
    if not accepted:
        assert resp.hint_index <= min(log_index, 3)


@pytest.mark.parametrize(
    ("log_index", "log_term", "entries", "want_terms"),
    [
        (2, 2, [(3, 3)], [1, 2, 3]),
        (1, 1, [(2, 3), (3, 4)], [1, 3, 4]),  # conflict at 2: truncate and append
        (0, 0, [(1, 1)], [1, 2]),  # already held: nothing changes
        (0, 0, [(1, 3)], [3]),  # conflict at 1: everything after goes
    ],
)
def test_follower_appends_and_resolves_conflicts(
    log_index: int, log_term: int, entries: list[tuple[int, int]], want_terms: list[int]
) -> None:
    """§5.3: a follower deletes a conflicting entry and all after it, then appends."""
    node = make_node(store=store_with([1, 2], term=2))
    msg = append(
        "2",
        "1",
        term=4,
        log_index=log_index,
        log_term=log_term,
        entries=tuple(raft_entry(i, t) for i, t in entries),
    )
    node.step(msg)
    flush(node)
    store = node.log.store
    assert [store.term(i) for i in range(1, store.last_index() + 1)] == want_terms


# Figure 7 of the paper: the leader's log, and follower logs (a)-(f) as terms per index.
FIGURE_7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE_7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("case", sorted(FIGURE_7_FOLLOWERS))
def test_leader_brings_follower_logs_in_line(case: str) -> None:
    """§5.3, Figure 7: the leader finds the last matching entry of each follower log and
    overwrites everything after it, so the follower ends with the leader's log."""
    leader = make_node("1", store=store_with(FIGURE_7_LEADER, term=8))
    follower = make_node("2", store=store_with(FIGURE_7_FOLLOWERS[case], term=7))
    third = make_node("3", store=store_with(FIGURE_7_LEADER, term=7))
    net = Net(leader, follower, third)
    net.drop = lambda m: m.recipient == "2" and isinstance(m, VoteRequest)
    leader.campaign()
    net.stabilize()
    assert leader.role is Role.LEADER and leader.term == 9
    net.drop = lambda m: False
    leader.propose(b"after")
    net.stabilize()
    store = follower.log.store
    got = [store.term(i) for i in range(1, store.last_index() + 1)]
    assert got == [*FIGURE_7_LEADER, 9, 9]
    assert follower.log.committed == leader.log.committed == 12


# --- §5.4: safety ----------------------------------------------------------------------------


def test_vote_request_carries_last_log_position() -> None:
    """§5.4.1: a candidate's request names its last log index and term."""
    node = make_node(store=store_with([1, 1, 2], term=2))
    node.campaign()
    msgs = flush(node)
    assert {(m.last_index, m.last_term) for m in msgs if isinstance(m, VoteRequest)} == {(3, 2)}


@pytest.mark.parametrize(
    ("last_index", "last_term", "granted"),
    [
        (2, 2, True),  # same log
        (3, 2, True),  # longer, same last term
        (1, 2, False),  # shorter, same last term
        (1, 3, True),  # later last term wins, whatever the length
        (3, 1, False),  # earlier last term loses, whatever the length
    ],
)
def test_voter_grants_only_to_up_to_date_logs(
    last_index: int, last_term: int, granted: bool
) -> None:
    """§5.4.1: a voter denies its vote to a candidate whose log is less up to date."""
    node = make_node(store=store_with([1, 2], term=2))
    node.step(vote("2", "1", term=3, last_index=last_index, last_term=last_term))
    (resp,) = [m for m in flush(node) if isinstance(m, VoteResponse)]
    assert resp.granted is granted


def test_leader_only_commits_entries_of_its_term_by_counting() -> None:
    """§5.4.2: an entry of an earlier term is not committed by counting replicas, even on
    a majority; it commits with the first entry of the leader's term (here, the no-op)."""
    node = make_node(store=store_with([1, 2], term=2))
    node.campaign()
    flush(node)
    node.step(vote_resp("2", "1", 3))
    assert node.role is Role.LEADER
    flush(node)
    # A follower acknowledges entry 2 (term 2) but not the no-op at 3.
    node.step(app_resp("2", "1", 3, 2))
    flush(node)
    assert node.log.committed == 0
    node.step(app_resp("2", "1", 3, 3))
    flush(node)
    assert node.log.committed == 3


def test_new_leader_appends_a_noop_of_its_term() -> None:
    """§5.4.2 / §8: a new leader appends an empty entry so earlier entries can commit."""
    node = make_node(store=store_with([1], term=1))
    become_leader(node)
    last = node.log.entries(2, 3)[0]  # type: ignore[index]
    assert (last.term, last.kind) == (2, ENTRY_NOOP)


def test_leader_election_needs_up_to_date_log_in_a_cluster() -> None:
    """§5.4.1: with votes restricted, a node missing a committed entry cannot win."""
    net = cluster()
    net.elect("1")
    net.nodes["1"].propose(b"committed")
    net.drop = lambda m: m.recipient == "3"  # 3 misses the entry
    net.stabilize()
    net.drop = lambda m: m.sender == "1" or m.recipient == "1"  # 1 disappears
    node3 = net.nodes["3"]
    node3.campaign()
    net.stabilize()
    assert node3.role is not Role.LEADER
    net.nodes["2"].campaign()
    net.stabilize()
    assert net.nodes["2"].role is Role.LEADER


# --- restart and the Ready contract ----------------------------------------------------------


def test_restart_recovers_term_vote_and_log() -> None:
    """A node restarted on its store has the term, vote, log and commit it persisted."""
    net = cluster()
    net.elect("1")
    net.nodes["1"].propose(b"x")
    net.stabilize()
    store = net.nodes["2"].log.store
    again = make_node("2", store=store)  # type: ignore[arg-type]
    assert (again.term, again.vote) == (1, "1")
    assert again.log.last_index() == 2
    assert again.log.committed == 2


def test_ready_must_be_advanced_before_the_next() -> None:
    node = make_node()
    node.campaign()
    node.ready()
    with pytest.raises(Exception, match="before advance"):
        node.ready()


def test_must_sync_only_for_term_vote_or_entries() -> None:
    """Commit-only changes need no fsync (etcd's MustSync); votes and entries do."""
    node = make_node()
    node.step(append("2", "1", term=1, entries=(raft_entry(1, 1),)))
    rd = node.ready()
    assert rd.must_sync
    persist(node, rd)
    node.advance(rd)
    node.step(Heartbeat(sender="2", recipient="1", term=1, commit=1))
    rd = node.ready()
    assert rd.hard_state is not None and rd.hard_state.commit == 1
    assert not rd.must_sync
    persist(node, rd)
    node.advance(rd)


def test_advance_without_persisting_is_an_invariant_violation() -> None:
    node = make_node()
    node.step(append("2", "1", term=1, entries=(raft_entry(1, 1),)))
    rd = node.ready()
    with pytest.raises(InvariantViolation, match="not persisted"):
        node.advance(rd)


# --- proposals -------------------------------------------------------------------------------


def test_propose_on_follower_is_refused_with_leader_hint() -> None:
    net = cluster()
    net.elect("1")
    with pytest.raises(NotLeader) as refused:
        net.nodes["2"].propose(b"x")
    assert refused.value.leader == "1"


def test_uncommitted_bytes_are_bounded() -> None:
    """Back-pressure: proposals beyond max_uncommitted_bytes are refused until commits."""
    node = make_node(voters=("1", "2", "3"), max_uncommitted_bytes=100)
    become_leader(node)
    node.propose(b"x" * 60)
    with pytest.raises(UncommittedBytesExceeded):
        node.propose(b"x" * 60)
    flush(node)
    node.step(app_resp("2", "1", 1, 2))
    flush(node)
    node.propose(b"x" * 60)  # the first one is committed and applied: room again


# --- pre-vote --------------------------------------------------------------------------------


def test_pre_vote_does_not_raise_the_term() -> None:
    node = make_node(pre_vote=True)
    node.campaign()
    msgs = flush(node)
    assert (node.role, node.term, node.vote) == (Role.PRE_CANDIDATE, 0, "")
    assert all(isinstance(m, VoteRequest) and m.pre_vote and m.term == 1 for m in msgs)


def test_pre_vote_won_starts_the_real_election() -> None:
    node = make_node(pre_vote=True)
    node.campaign()
    flush(node)
    node.step(vote_resp("2", "1", 1, pre=True))
    msgs = flush(node)
    assert (node.role, node.term) == (Role.CANDIDATE, 1)
    assert {m.recipient for m in msgs if isinstance(m, VoteRequest) and not m.pre_vote} == {
        "2",
        "3",
    }


def test_pre_vote_answer_does_not_change_the_voter() -> None:
    node = make_node(store=store_with([1], term=1), pre_vote=True)
    node.step(vote("2", "1", term=2, last_index=1, last_term=1, pre=True))
    (resp,) = flush(node)
    assert isinstance(resp, VoteResponse) and resp.granted and resp.pre_vote
    assert (node.term, node.vote) == (1, "")


def test_stale_log_loses_pre_vote_without_disrupting() -> None:
    net = cluster(pre_vote=True)
    net.elect("1")
    net.drop = lambda m: m.recipient == "3"
    net.nodes["1"].propose(b"x")
    net.stabilize()
    net.drop = lambda m: m.sender == "1" or m.recipient == "1"
    node3 = net.nodes["3"]
    node3.campaign()
    net.stabilize()
    assert node3.term == 1  # no term inflation
    assert net.nodes["2"].term == 1


# --- check-quorum ----------------------------------------------------------------------------


def test_check_quorum_leader_steps_down_without_quorum() -> None:
    node = make_node(check_quorum=True)
    become_leader(node)
    for _ in range(2 * node.config.election_ticks):
        node.tick()
    assert node.role is Role.FOLLOWER
    assert node.term == 1


def test_check_quorum_leader_stays_with_quorum() -> None:
    node = make_node(check_quorum=True)
    become_leader(node)
    for _ in range(3):
        for _ in range(node.config.election_ticks):
            node.tick()
            node.step(HeartbeatResponse(sender="2", recipient="1", term=1))
    assert node.role is Role.LEADER


def test_check_quorum_follower_ignores_votes_in_lease() -> None:
    node = make_node(check_quorum=True)
    node.step(Heartbeat(sender="2", recipient="1", term=1, commit=0))
    flush(node)
    node.step(vote("3", "1", term=2, last_index=5, last_term=1))
    assert flush(node) == []
    assert node.term == 1
    for _ in range(node.config.election_ticks):
        node.tick()
    node.step(vote("3", "1", term=2, last_index=5, last_term=1))
    (resp,) = flush(node)
    assert isinstance(resp, VoteResponse) and resp.granted


def test_stale_leader_learns_the_new_term_from_a_lower_term_answer() -> None:
    node = make_node(store=store_with(term=3), check_quorum=True)
    node.step(append("2", "1", term=1))
    (resp,) = flush(node)
    assert isinstance(resp, AppendResponse) and resp.term == 3


# --- learners and membership -----------------------------------------------------------------


def test_learner_does_not_campaign_or_count() -> None:
    learner = make_node("4", voters=VOTERS, learners=("4",))
    tick_election(learner)
    assert learner.role is Role.FOLLOWER and learner.term == 0
    with pytest.raises(CampaignRefused):
        learner.campaign()
    leader = make_node("1", voters=VOTERS, learners=("4",))
    become_leader(leader)
    leader.step(app_resp("4", "1", 1, 1))
    flush(leader)
    assert leader.log.committed == 0  # the learner's ack does not count
    leader.step(app_resp("2", "1", 1, 1))
    flush(leader)
    assert leader.log.committed == 1


def test_learner_is_added_then_promoted() -> None:
    net = cluster()
    net.nodes["4"] = make_node("4", voters=VOTERS, seed=4)
    leader = net.elect("1")
    with pytest.raises(MembershipChangeRefused):
        leader.propose_membership(MembershipChange(change=PROMOTE_VOTER, node_id="4"))
    leader.propose_membership(MembershipChange(change=ADD_LEARNER, node_id="4"))
    with pytest.raises(MembershipChangeRefused, match="pending"):
        leader.propose_membership(MembershipChange(change=REMOVE_MEMBER, node_id="3"))
    net.stabilize()
    assert leader.learners == {"4"} and net.nodes["4"].learners == {"4"}
    leader.propose_membership(MembershipChange(change=PROMOTE_VOTER, node_id="4"))
    net.stabilize()
    for node in net.nodes.values():
        assert node.voters == {"1", "2", "3", "4"} and node.learners == set()


def test_removed_leader_steps_down() -> None:
    net = cluster()
    leader = net.elect("1")
    leader.propose_membership(MembershipChange(change=REMOVE_MEMBER, node_id="1"))
    net.stabilize()
    assert leader.role is Role.FOLLOWER and not leader.is_voter()
    assert net.nodes["2"].voters == {"2", "3"}


def test_cannot_remove_last_voter() -> None:
    node = make_node(voters=("1",))
    become_leader(node)
    with pytest.raises(MembershipChangeRefused):
        node.propose_membership(MembershipChange(change=REMOVE_MEMBER, node_id="1"))


# --- leadership transfer ---------------------------------------------------------------------


def test_transfer_to_up_to_date_follower() -> None:
    net = cluster(check_quorum=True, pre_vote=True)
    leader = net.elect("1")
    leader.transfer_leadership("2")
    with pytest.raises(TransferInProgress):
        leader.propose(b"x")
    net.stabilize()
    assert net.nodes["2"].role is Role.LEADER
    assert leader.role is Role.FOLLOWER and leader.leader == "2"
    assert any(isinstance(m, TimeoutNow) for m in net.delivered)


def test_transfer_waits_for_the_target_to_catch_up() -> None:
    net = cluster()
    leader = net.elect("1")
    net.drop = lambda m: m.recipient == "3"
    leader.propose(b"x")
    net.stabilize()
    leader.transfer_leadership("3")
    msgs = flush(leader)
    assert not any(isinstance(m, TimeoutNow) for m in msgs)
    net.drop = lambda m: False
    net.stabilize(msgs)
    assert net.nodes["3"].role is Role.LEADER


def test_transfer_is_abandoned_after_an_election_timeout() -> None:
    node = make_node()
    become_leader(node)
    node.transfer_leadership("2")
    for _ in range(node.config.election_ticks):
        node.tick()
    assert node.transferee == ""
    node.propose(b"ok again")


def test_transfer_to_learner_or_self_is_refused() -> None:
    node = make_node(voters=VOTERS, learners=("4",))
    become_leader(node)
    for target in ("4", "1", "9"):
        with pytest.raises(TransferRefused):
            node.transfer_leadership(target)


# --- snapshots -------------------------------------------------------------------------------


def test_snapshot_sent_to_follower_behind_compaction() -> None:
    net = cluster()
    leader = net.elect("1")
    net.drop = lambda m: m.recipient == "3"
    for i in range(5):
        leader.propose(f"e{i}".encode())
    net.stabilize()
    snap = leader.compact(leader.log.applied, b"app-state")
    from protocol.codec import encode
    from storage.raftlog import SnapshotMeta

    leader.log.store.apply_snapshot(SnapshotMeta(snap.index, snap.term), encode(snap))  # type: ignore[attr-defined]
    net.drop = lambda m: False
    leader.report_unreachable("3")
    for _ in range(leader.config.heartbeat_ticks):
        leader.tick()
    net.stabilize()
    sent = [m for m in net.delivered if isinstance(m, InstallSnapshot)]
    assert len(sent) == 1 and sent[0].snapshot.data == b"app-state"
    node3 = net.nodes["3"]
    assert node3.log.snapshot_index() == snap.index
    assert node3.log.committed == leader.log.committed
    assert leader.progress["3"].state is ProgressState.REPLICATE


def test_failed_snapshot_goes_back_to_probing() -> None:
    node = make_node()
    become_leader(node)
    pr = node.progress["2"]
    pr.become_snapshot(7)
    node.report_snapshot("2", ok=False)
    assert pr.state is ProgressState.PROBE and pr.next == pr.match + 1 and pr.probe_paused


def test_compact_requires_applied_index() -> None:
    node = make_node()
    become_leader(node)
    with pytest.raises(Exception, match="compact"):
        node.compact(5, b"")


# --- replication bounds ----------------------------------------------------------------------


def test_inflight_appends_are_bounded_per_peer() -> None:
    node = make_node(max_inflight_appends=2)
    become_leader(node)
    node.step(app_resp("2", "1", 1, 1))  # 2 moves to replicate
    flush(node)
    for i in range(5):
        node.propose(bytes([i]))
    to2 = [m for m in flush(node) if isinstance(m, AppendEntries) and m.recipient == "2"]
    assert len(to2) == 2
    assert node.progress["2"].is_paused()
    node.step(app_resp("2", "1", 1, to2[0].entries[-1].index))  # frees one slot
    more = [m for m in flush(node) if isinstance(m, AppendEntries) and m.recipient == "2"]
    assert len(more) == 1
    assert [e.index for e in more[0].entries] == [4, 5, 6]


def test_appends_are_batched_by_bytes() -> None:
    node = make_node(max_append_bytes=10)
    become_leader(node)
    flush(node)
    for _i in range(6):
        node.propose(b"abcd")  # 5 bytes of data each with the kind byte
    flush(node)
    node.step(app_resp("2", "1", 1, 0))  # probe from the start
    to2 = [m for m in flush(node) if isinstance(m, AppendEntries) and m.recipient == "2"]
    assert to2 and all(sum(len(e.data) for e in m.entries) <= 10 for m in to2)


def test_probe_sends_one_append_at_a_time() -> None:
    node = make_node()
    become_leader(node)
    assert node.progress["2"].state is ProgressState.PROBE
    node.propose(b"a")
    node.propose(b"b")
    to2 = [m for m in flush(node) if isinstance(m, AppendEntries) and m.recipient == "2"]
    assert to2 == []  # the no-op went out at election; paused until 2 answers
    node.step(app_resp("2", "1", 1, 1))
    to2 = [m for m in flush(node) if isinstance(m, AppendEntries) and m.recipient == "2"]
    assert [[e.index for e in m.entries] for m in to2] == [[2, 3]]


def test_rejection_hint_skips_a_whole_term() -> None:
    """The follower's hint lets the leader skip every entry of a conflicting term at once."""
    leader = make_node("1", store=store_with([1, 1, 1, 4, 4, 5, 5, 6, 6, 6], term=8))
    become_leader(leader)
    msgs = [
        AppendResponse(
            sender="2", recipient="1", term=9, log_index=10, reject=True, hint_index=10, hint_term=3
        )
    ]
    leader.step(msgs[0])
    (probe,) = [m for m in flush(leader) if isinstance(m, AppendEntries) and m.recipient == "2"]
    assert probe.log_index == 3  # the last index with a term <= 3 in the leader's log


def test_node_rejects_message_for_another_node() -> None:
    node = make_node()
    node.step(append("2", "9", term=5))
    assert node.term == 0


def test_entries_have_kind_bytes() -> None:
    assert raft_entry(1, 1, b"x").data == b"\x00x"
    with pytest.raises(Exception, match="kind"):
        RaftEntry(index=1, term=1, data=b"\x07")


def test_bootstrap_single_node_commits_alone() -> None:
    store = RaftLogStore(MemoryKV())
    node = RaftNode(RaftConfig(node_id="solo"), store, random.Random(1), ["solo"])
    node.campaign()
    flush(node)
    assert node.role is Role.LEADER
    node.propose(b"alone")
    flush(node)
    assert node.log.committed == 2 and node.log.applied == 2


def test_restart_with_applied_index_replays_membership_and_skips_applied() -> None:
    """etcd's Config.Applied: entries up to *applied* are not handed out again, and the
    membership changes among them are in effect from the start."""
    net = cluster()
    leader = net.elect("1")
    leader.propose_membership(MembershipChange(change=ADD_LEARNER, node_id="4"))
    leader.propose(b"after")
    net.stabilize()
    store = net.nodes["2"].log.store
    applied = net.nodes["2"].log.applied
    again = make_node("2", store=store, applied=applied)  # type: ignore[arg-type]
    assert again.learners == {"4"}
    assert again.log.applied == applied
    assert not again.has_ready()
    fresh = make_node("2", store=store)  # type: ignore[arg-type]
    assert fresh.learners == set()  # learns it again when the entry is re-applied
    flush(fresh)
    assert fresh.learners == {"4"}
