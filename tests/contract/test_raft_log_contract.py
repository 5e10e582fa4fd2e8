"""RaftLogStore contract, on both backends: hard state, entries, truncation, compaction,
snapshots, all recovered from the KV alone after ``backend.reopen()``.

Proves etcd-raft Storage semantics: the log origin answers term() after compaction,
entries() refuses compacted and unavailable ranges and honours max_bytes (at least one
entry), an append at or below last_index replaces the suffix in the same batch, committed
entries are never overwritten with another term, and a snapshot keeps the entries after it
only when the log agrees with it.
"""

from __future__ import annotations

import pytest

from protocol.errors import InvariantViolation, LocalError
from storage.errors import CompactedError, RaftLogError, UnavailableError
from storage.kv import KV
from storage.raftlog import HardState, LogEntry, RaftLogStore, SnapshotMeta
from tests.contract.conftest import Backend


def entries(lo: int, hi: int, term: int = 1) -> list[LogEntry]:
    """Entries [lo, hi) of *term*, each with data naming its index and term."""
    return [LogEntry(i, term, b"e%d/t%d" % (i, term)) for i in range(lo, hi)]


def state_of(log: RaftLogStore) -> tuple:  # type: ignore[type-arg]
    """Everything observable about the log, to compare across reopen or a refused call."""
    return (
        log.hard_state(),
        log.first_index(),
        log.last_index(),
        log.snapshot(),
        log.entries(log.first_index(), log.last_index() + 1),
        log.term(log.first_index() - 1),
    )


def test_a_new_log(kv: KV) -> None:
    log = RaftLogStore(kv)
    assert log.hard_state() == HardState(term=0, vote="", commit=0)
    assert (log.first_index(), log.last_index()) == (1, 0)
    assert log.term(0) == 0
    assert log.term(1) is None
    assert log.entries(1, 1) == []
    assert log.snapshot() is None


def test_hard_state_round_trips(backend: Backend) -> None:
    log = RaftLogStore(backend.kv)
    log.set_hard_state(HardState(term=7, vote="node-b", commit=0))
    assert log.hard_state() == HardState(term=7, vote="node-b", commit=0)
    log.set_hard_state(HardState(term=8, vote="", commit=0))
    assert RaftLogStore(backend.reopen()).hard_state() == HardState(term=8, vote="", commit=0)


def test_hard_state_staged_in_a_batch(kv: KV) -> None:
    log = RaftLogStore(kv)
    with kv.batch() as batch:
        log.set_hard_state(HardState(term=2, vote="n1", commit=0), batch)
        assert log.hard_state().term == 0
    assert log.hard_state().term == 2


def test_append_and_read(kv: KV) -> None:
    log = RaftLogStore(kv)
    log.append(entries(1, 4, term=1) + entries(4, 6, term=2))
    assert (log.first_index(), log.last_index()) == (1, 5)
    assert [log.term(i) for i in range(7)] == [0, 1, 1, 1, 2, 2, None]
    assert log.entries(1, 6) == entries(1, 4, 1) + entries(4, 6, 2)
    assert log.entries(2, 4) == entries(2, 4, 1)
    assert log.entries(3, 3) == []
    log.append(entries(6, 7, term=2), sync=False)
    assert log.last_index() == 6


def test_entries_max_bytes(kv: KV) -> None:
    log = RaftLogStore(kv)
    log.append([LogEntry(i, 1, b"x" * 10) for i in range(1, 6)])
    assert len(log.entries(1, 6, max_bytes=25)) == 2
    assert len(log.entries(1, 6, max_bytes=30)) == 3
    assert len(log.entries(1, 6, max_bytes=0)) == 1  # at least one
    assert len(log.entries(1, 6, max_bytes=10**9)) == 5
    assert log.entries(2, 2, max_bytes=0) == []


def test_entries_outside_the_log(kv: KV) -> None:
    log = RaftLogStore(kv)
    log.append(entries(1, 6))
    log.compact(2)
    with pytest.raises(CompactedError):
        log.entries(2, 4)
    with pytest.raises(UnavailableError):
        log.entries(3, 7)
    with pytest.raises(RaftLogError):
        log.entries(5, 4)
    assert log.entries(3, 6) == entries(3, 6)


@pytest.mark.parametrize(
    "bad",
    [
        [LogEntry(1, 1, b""), LogEntry(3, 1, b"")],  # not contiguous
        [LogEntry(2, 1, b""), LogEntry(1, 1, b"")],  # backwards
        [LogEntry(1, 2, b""), LogEntry(2, 1, b"")],  # term goes down
    ],
)
def test_refuses_malformed_appends(kv: KV, bad: list[LogEntry]) -> None:
    log = RaftLogStore(kv)
    with pytest.raises(RaftLogError):
        log.append(bad)
    assert list(kv.iterate()) == []
    assert log.last_index() == 0


def test_refuses_a_gap_or_a_term_below_the_previous_entry(kv: KV) -> None:
    log = RaftLogStore(kv)
    log.append(entries(1, 4, term=3))
    before = state_of(log)
    with pytest.raises(RaftLogError, match="gap"):
        log.append(entries(5, 6, term=3))
    with pytest.raises(RaftLogError, match="term"):
        log.append(entries(4, 5, term=2))
    assert state_of(log) == before


def test_an_append_below_last_index_replaces_the_suffix(backend: Backend) -> None:
    log = RaftLogStore(backend.kv)
    log.append(entries(1, 8, term=1))
    log.append(entries(4, 6, term=2))  # the new leader's entries 4 and 5
    assert log.last_index() == 5
    assert log.entries(1, 6) == entries(1, 4, 1) + entries(4, 6, 2)
    assert log.term(6) is None
    with pytest.raises(UnavailableError):
        log.entries(1, 8)
    before = state_of(log)
    reopened = RaftLogStore(backend.reopen())
    assert state_of(reopened) == before
    reopened.append(entries(6, 7, term=2))
    assert reopened.entries(5, 7) == entries(5, 7, 2)


def test_an_append_may_extend_while_replacing(kv: KV) -> None:
    log = RaftLogStore(kv)
    log.append(entries(1, 4, term=1))
    log.append(entries(3, 9, term=4))
    assert log.entries(1, 9) == entries(1, 3, 1) + entries(3, 9, 4)


def test_committed_entries_are_never_overwritten_with_another_term(kv: KV) -> None:
    log = RaftLogStore(kv)
    log.save(HardState(term=1, vote="a", commit=3), entries(1, 6, term=1))
    before = state_of(log)
    with pytest.raises(InvariantViolation, match="committed"):
        log.append(entries(3, 4, term=2))
    assert state_of(log) == before
    log.append(entries(3, 5, term=1))  # the same committed entries again: harmless
    assert log.last_index() == 4
    log.append(entries(4, 5, term=2))  # past the commit index: replaced
    assert log.term(4) == 2


def test_save_writes_hard_state_and_entries_together(backend: Backend) -> None:
    log = RaftLogStore(backend.kv)
    log.save(HardState(term=2, vote="node-a", commit=0), entries(1, 3, term=2))
    log.save(None, entries(3, 4, term=2))
    log.save(HardState(term=2, vote="node-a", commit=3), [])
    reopened = RaftLogStore(backend.reopen())
    assert reopened.hard_state() == HardState(term=2, vote="node-a", commit=3)
    assert reopened.entries(1, 4) == entries(1, 4, term=2)


def test_a_refused_save_writes_no_hard_state(kv: KV) -> None:
    log = RaftLogStore(kv)
    with pytest.raises(RaftLogError):
        log.save(HardState(term=5, vote="x", commit=0), entries(2, 3))
    assert log.hard_state() == HardState(term=0, vote="", commit=0)


def test_compact(backend: Backend) -> None:
    log = RaftLogStore(backend.kv)
    log.append(entries(1, 4, term=1) + entries(4, 8, term=2))
    log.compact(4)
    assert (log.first_index(), log.last_index()) == (5, 7)
    assert log.term(4) == 2  # the compaction point still answers
    assert log.term(3) is None
    assert log.entries(5, 8) == entries(5, 8, term=2)
    log.compact(2)  # at or below the origin: nothing to do
    log.compact(4)
    assert log.first_index() == 5
    with pytest.raises(RaftLogError, match="compact"):
        log.compact(8)
    before = state_of(log)
    reopened = RaftLogStore(backend.reopen())
    assert state_of(reopened) == before
    reopened.compact(7)  # everything
    assert (reopened.first_index(), reopened.last_index()) == (8, 7)
    assert reopened.term(7) == 2
    reopened.append(entries(8, 9, term=3))
    assert reopened.entries(8, 9) == entries(8, 9, term=3)


def test_appends_of_compacted_entries_are_skipped(kv: KV) -> None:
    log = RaftLogStore(kv)
    log.append(entries(1, 6))
    log.compact(3)
    log.append(entries(2, 8))  # 2 and 3 are already compacted
    assert (log.first_index(), log.last_index()) == (4, 7)
    assert log.entries(4, 8) == entries(4, 8)
    log.append(entries(1, 3))  # entirely compacted: nothing happens
    assert log.last_index() == 7


def test_snapshot_that_agrees_with_the_log_keeps_later_entries(backend: Backend) -> None:
    log = RaftLogStore(backend.kv)
    log.append(entries(1, 6, term=1) + entries(6, 9, term=2))
    log.apply_snapshot(SnapshotMeta(index=6, term=2), b"state at 6")
    assert log.snapshot() == (SnapshotMeta(6, 2), b"state at 6")
    assert (log.first_index(), log.last_index()) == (7, 8)
    assert log.term(6) == 2
    assert log.entries(7, 9) == entries(7, 9, term=2)
    before = state_of(log)
    reopened = RaftLogStore(backend.reopen())
    assert state_of(reopened) == before


def test_snapshot_that_conflicts_with_the_log_drops_it(kv: KV) -> None:
    log = RaftLogStore(kv)
    log.append(entries(1, 6, term=1))
    log.apply_snapshot(SnapshotMeta(index=4, term=3), b"leader state")
    assert (log.first_index(), log.last_index()) == (5, 4)
    assert log.term(4) == 3
    assert log.term(5) is None
    log.append(entries(5, 6, term=3))
    assert log.entries(5, 6) == entries(5, 6, term=3)


def test_snapshot_beyond_the_log_drops_it(kv: KV) -> None:
    log = RaftLogStore(kv)
    log.append(entries(1, 3))
    log.apply_snapshot(SnapshotMeta(index=10, term=4), b"far ahead")
    assert (log.first_index(), log.last_index()) == (11, 10)
    assert list(kv.iterate(b"\x02")) == []  # no entry keys remain
    with pytest.raises(RaftLogError, match="gap"):
        log.append(entries(12, 13, term=4))
    log.append(entries(11, 12, term=4))
    assert log.last_index() == 11


def test_a_newer_snapshot_replaces_the_older(kv: KV) -> None:
    log = RaftLogStore(kv)
    log.append(entries(1, 9))
    log.apply_snapshot(SnapshotMeta(3, 1), b"old")
    log.apply_snapshot(SnapshotMeta(6, 1), b"new")
    assert log.snapshot() == (SnapshotMeta(6, 1), b"new")
    assert log.first_index() == 7


@pytest.mark.parametrize("meta", [SnapshotMeta(3, 1), SnapshotMeta(5, 9)])
def test_a_stale_snapshot_is_refused(kv: KV, meta: SnapshotMeta) -> None:
    log = RaftLogStore(kv)
    log.append(entries(1, 9))
    log.apply_snapshot(SnapshotMeta(5, 1), b"current")
    before = state_of(log)
    with pytest.raises(RaftLogError, match="older"):
        log.apply_snapshot(meta, b"stale")
    assert state_of(log) == before


@pytest.mark.parametrize(
    "make",
    [
        lambda: LogEntry(0, 1, b""),
        lambda: LogEntry(1, -1, b""),
        lambda: LogEntry(1, 1, "text"),
        lambda: HardState(term=1, vote="v" * 65, commit=0),
        lambda: HardState(term=1, vote="", commit=-1),
        lambda: SnapshotMeta(index=-1, term=0),
    ],
)
def test_records_validate_in_their_constructor(make: object) -> None:
    with pytest.raises(LocalError):
        make()  # type: ignore[operator]
