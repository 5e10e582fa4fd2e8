"""RaftLog (store plus unstable tail) and Progress behave as the core relies on.

Covers: reads that span the store and the unstable tail, byte and count budgets, the
overwrite of a persisted suffix, stable_to ignoring entries overwritten since their Ready,
restore from a snapshot, the conflict hint, and the Progress state machine with its
in-flight window. Also: storage.RaftLogStore satisfies the LogStore protocol declared in
consensus (structurally, without either importing the other's types).
"""

from __future__ import annotations

import pytest

from consensus.raft.log import LogStore, RaftLog
from consensus.raft.progress import Progress, ProgressState
from protocol.errors import InvariantViolation
from protocol.raft import RaftEntry, RaftSnapshot, normal_entry_data
from tests.sim.harness import store_with


def e(index: int, term: int, size: int = 0) -> RaftEntry:
    return RaftEntry(index=index, term=term, data=normal_entry_data(b"x" * size))


def log_with(terms: list[int], unstable: list[int] = ()) -> RaftLog:  # type: ignore[assignment]
    log = RaftLog(store_with(terms), applied=0, committed=0)
    start = len(terms) + 1
    log.append([e(i, t) for i, t in enumerate(unstable, start=start)])
    return log


def test_raft_log_store_satisfies_the_protocol() -> None:
    store: LogStore = store_with([1])  # a type checker verifies this assignment
    assert store.term(1) == 1


def test_reads_span_store_and_unstable() -> None:
    log = log_with([1, 1], [2, 2])
    assert (log.first_index(), log.last_index(), log.stable_last_index()) == (1, 4, 2)
    assert [x.term for x in log.entries(1, 5)] == [1, 1, 2, 2]  # type: ignore[union-attr]
    assert log.term(3) == 2 and log.term(5) is None


def test_entries_respect_byte_and_count_budgets() -> None:
    log = RaftLog(store_with([]), applied=0, committed=0)
    log.append([e(i, 1, size=9) for i in range(1, 6)])  # 10 bytes each with the kind byte
    assert len(log.entries(1, 6, max_bytes=25)) == 2  # type: ignore[arg-type]
    assert len(log.entries(1, 6, max_bytes=1)) == 1  # type: ignore[arg-type]  # at least one
    assert len(log.entries(1, 6, max_count=3)) == 3  # type: ignore[arg-type]
    assert log.entries(3, 3) == []


def test_append_overwrites_persisted_suffix() -> None:
    log = log_with([1, 1, 1])
    log.append([e(2, 2)])
    assert [log.term(i) for i in (1, 2, 3)] == [1, 2, None]
    assert log.last_index() == 2 and log.stable_last_index() == 1


def test_append_refuses_to_overwrite_committed() -> None:
    log = log_with([1, 1])
    log.commit_to(2)
    with pytest.raises(InvariantViolation):
        log.append([e(2, 2)])


def test_stable_to_ignores_entries_overwritten_since() -> None:
    log = log_with([1], [1, 1])
    log.append([e(2, 3)])  # overwrites 2 and 3 in memory
    log.stable_to(3, 1)  # the Ready that held (3, 1) is stale
    assert log.unstable and log.unstable_offset == 2


def test_conflict_hint_skips_terms_above() -> None:
    log = log_with([1, 1, 1, 4, 4, 5, 5, 6, 6, 6])
    assert log.find_conflict_by_term(10, 3) == (3, 1)
    assert log.find_conflict_by_term(10, 6) == (10, 6)
    assert log.find_conflict_by_term(0, 0) == (0, 0)


def test_restore_from_snapshot() -> None:
    log = log_with([1, 1])
    log.restore(RaftSnapshot(index=10, term=3, voters=("1",), learners=(), data=b""))
    assert (log.first_index(), log.last_index(), log.committed) == (11, 10, 10)
    assert log.term(10) == 3 and log.term(2) is None
    assert log.next_committed_entries(100) == []  # the snapshot is applied first


def test_up_to_date_rule() -> None:
    log = log_with([1, 2])
    assert log.is_up_to_date(2, 2) and log.is_up_to_date(1, 3)
    assert not log.is_up_to_date(1, 2) and not log.is_up_to_date(5, 1)


def test_progress_probe_replicate_snapshot() -> None:
    pr = Progress(next_index=5, max_inflight=2, max_inflight_bytes=100)
    assert pr.state is ProgressState.PROBE and not pr.is_paused()
    pr.sent_entries(6, 2, 10)
    assert pr.is_paused() and pr.next == 5  # probing: one at a time, next unchanged
    assert pr.maybe_decrease_to(4, hint_index=2)  # rejection of the probe at next - 1
    assert pr.next == 3 and not pr.is_paused()
    assert not pr.maybe_decrease_to(4, hint_index=2)  # a stale rejection is ignored
    assert pr.maybe_update(3)
    pr.become_replicate()
    pr.sent_entries(5, 2, 10)
    pr.sent_entries(7, 2, 10)
    assert pr.is_paused() and pr.next == 8  # the window of two appends is full
    pr.inflights.free_le(5)
    assert not pr.is_paused()
    pr.become_snapshot(20)
    assert pr.is_paused() and pr.next == 21
    pr.become_probe()
    assert pr.next == 21 and pr.state is ProgressState.PROBE


def test_inflight_bytes_bound() -> None:
    pr = Progress(next_index=1, max_inflight=100, max_inflight_bytes=30)
    pr.become_replicate()
    pr.sent_entries(1, 1, 20)
    assert not pr.is_paused()
    pr.sent_entries(2, 1, 20)
    assert pr.is_paused()
