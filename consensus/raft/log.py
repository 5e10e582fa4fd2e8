"""The Raft log as the core sees it: durable entries in the store plus an unstable tail.

As in etcd-raft's ``raftLog`` and ``unstable``: entries the core has appended but the
application has not yet persisted live in memory (``unstable``), with at most one incoming
snapshot waiting to be persisted. The application persists them from ``Ready`` and then
calls ``advance``, which moves them into the store's keeping (``stable_to``). Reads combine
the two: positions at or after the unstable offset come from memory, earlier ones from the
store. The core only reads the store, through the ``LogStore`` protocol declared here, which
``storage.raftlog.RaftLogStore`` satisfies without importing consensus.

Also here: ``committed`` (highest index known committed) and ``applied`` (highest index the
application has applied), with ``applied <= committed <= last_index`` at all times.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from protocol.errors import check_invariant
from protocol.raft import RaftEntry, RaftSnapshot


class EntryLike(Protocol):
    """What the core needs of a stored entry (storage's LogEntry has these)."""

    @property
    def index(self) -> int: ...
    @property
    def term(self) -> int: ...
    @property
    def data(self) -> bytes: ...


class HardStateLike(Protocol):
    """What the core needs of a stored hard state (storage's HardState has these)."""

    @property
    def term(self) -> int: ...
    @property
    def vote(self) -> str: ...
    @property
    def commit(self) -> int: ...


class SnapshotMetaLike(Protocol):
    """The index and term a stored snapshot covers."""

    @property
    def index(self) -> int: ...
    @property
    def term(self) -> int: ...


class LogStore(Protocol):
    """The read side of durable Raft state, declared by its consumer (etcd's ``Storage``).

    ``term(i)`` answers for first_index() - 1 (the log origin) through last_index() and is
    None elsewhere. ``entries(lo, hi, max_bytes)`` is only called with
    first_index() <= lo <= hi <= last_index() + 1 and returns at least one entry for a
    non-empty range. ``snapshot()`` data is ``encode(RaftSnapshot(...))``.
    """

    def hard_state(self) -> HardStateLike: ...
    def first_index(self) -> int: ...
    def last_index(self) -> int: ...
    def term(self, index: int) -> int | None: ...
    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> Sequence[EntryLike]: ...
    def snapshot(self) -> tuple[SnapshotMetaLike, bytes] | None: ...


def as_raft_entry(entry: EntryLike) -> RaftEntry:
    """*entry* as the wire type (entries read from the store are storage LogEntry objects)."""
    if type(entry) is RaftEntry:
        return entry
    return RaftEntry(index=entry.index, term=entry.term, data=entry.data)


class RaftLog:
    """Store-backed entries plus the unstable tail; the committed and applied indexes."""

    def __init__(self, store: LogStore, applied: int, committed: int) -> None:
        self.store = store
        self.unstable: list[RaftEntry] = []
        self.unstable_offset = store.last_index() + 1  # index of unstable[0]
        self.unstable_snapshot: RaftSnapshot | None = None
        self.committed = committed
        self.applied = applied
        check_invariant(
            applied <= committed <= self.last_index(),
            f"raft log: applied {applied} <= commit {committed} <= last {self.last_index()}",
        )

    # --- positions ------------------------------------------------------------------------------

    def first_index(self) -> int:
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot.index + 1
        return self.store.first_index()

    def last_index(self) -> int:
        if self.unstable:
            return self.unstable_offset + len(self.unstable) - 1
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot.index
        return self.store.last_index()

    def stable_last_index(self) -> int:
        """The last index known persisted (what a leader may count as its own match)."""
        if self.unstable_snapshot is not None:
            return 0
        return min(self.store.last_index(), self.unstable_offset - 1)

    def snapshot_index(self) -> int:
        return self.first_index() - 1

    def term(self, index: int) -> int | None:
        """The term of *index*, None if it is compacted away or beyond the log."""
        if self.unstable and index >= self.unstable_offset:
            pos = index - self.unstable_offset
            return self.unstable[pos].term if pos < len(self.unstable) else None
        snap = self.unstable_snapshot
        if snap is not None:
            if index == snap.index:
                return snap.term
            return None  # the snapshot replaced everything before it, and nothing follows yet
        if index > self.store.last_index() or index > self.unstable_offset - 1:
            return None
        return self.store.term(index)

    def last_term(self) -> int:
        term = self.term(self.last_index())
        check_invariant(term is not None, "raft log: the last entry has no term")
        return term  # type: ignore[return-value]

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: is a log ending at (last_index, last_term) at least as up to date as ours?"""
        ours = self.last_term()
        return last_term > ours or (last_term == ours and last_index >= self.last_index())

    # --- reading entries --------------------------------------------------------------------

    def entries(
        self, lo: int, hi: int, max_bytes: int | None = None, max_count: int | None = None
    ) -> list[RaftEntry] | None:
        """Entries ``[lo, hi)`` within the byte and count budgets (at least one if any);
        None if *lo* is compacted away (the caller needs a snapshot)."""
        check_invariant(lo <= hi <= self.last_index() + 1, f"raft log: bad range [{lo}, {hi})")
        if lo < self.first_index():
            return None
        if max_count is not None:
            hi = min(hi, lo + max_count)
        out: list[RaftEntry] = []
        size = 0
        store_hi = min(hi, self.unstable_offset)
        if lo < store_hi:
            for entry in self.store.entries(lo, store_hi, max_bytes):
                out.append(as_raft_entry(entry))
                size += len(entry.data)
            if len(out) < store_hi - lo:
                return out  # the byte budget ran out inside the store part
        start = max(lo, self.unstable_offset)
        if start >= hi:
            return out
        for entry in self.unstable[start - self.unstable_offset : hi - self.unstable_offset]:
            size += len(entry.data)
            if out and max_bytes is not None and size > max_bytes:
                break
            out.append(entry)
        return out

    def next_committed_entries(self, max_bytes: int) -> list[RaftEntry]:
        """Committed entries not yet applied, within *max_bytes* (at least one if any).

        Nothing while an incoming snapshot waits to be persisted: it is applied first.
        """
        if self.unstable_snapshot is not None or self.applied >= self.committed:
            return []
        got = self.entries(self.applied + 1, self.committed + 1, max_bytes)
        check_invariant(got is not None, "raft log: unapplied entries were compacted")
        return got  # type: ignore[return-value]

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The last (i, term(i)) with i <= index and term(i) <= term; (origin) if none known.

        The follower's hint on a rejected append, and the leader's use of it, as in etcd:
        every entry between the hint and the probe has a term above *term*, so it cannot match.
        """
        while True:
            found = self.term(index)
            if found is None or found <= term or index == 0:
                return index, found or 0
            index -= 1

    # --- writing ------------------------------------------------------------------------------

    def append(self, entries: Sequence[RaftEntry]) -> int:
        """Append (or overwrite from entries[0].index on) the unstable tail; the new last index."""
        if not entries:
            return self.last_index()
        first = entries[0].index
        check_invariant(first > self.committed, f"raft log: overwriting committed entry {first}")
        check_invariant(
            first <= self.last_index() + 1,
            f"raft log: gap before {first}, last {self.last_index()}",
        )
        end = self.unstable_offset + len(self.unstable)
        if first == end:
            self.unstable.extend(entries)
        elif first <= self.unstable_offset:
            # Replaces everything from first on, including persisted entries: the store
            # truncates its suffix when these are saved.
            self.unstable = list(entries)
            self.unstable_offset = first
        else:
            del self.unstable[first - self.unstable_offset :]
            self.unstable.extend(entries)
        return self.last_index()

    def maybe_append(
        self, prev_index: int, prev_term: int, committed: int, entries: Sequence[RaftEntry]
    ) -> int | None:
        """A follower's append (§5.3): the last new index, or None if prev does not match."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        conflict = self._find_conflict(entries)
        if conflict:
            check_invariant(
                conflict > self.committed,
                f"raft log: entry {conflict} conflicts with committed {self.committed}",
            )
            self.append(entries[conflict - prev_index - 1 :])
        self.commit_to(min(committed, last_new))
        return last_new

    def _find_conflict(self, entries: Sequence[RaftEntry]) -> int:
        """The first index of *entries* whose term differs from ours or that we lack; 0 if none."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            check_invariant(
                index <= self.last_index(),
                f"raft log: commit {index} beyond last index {self.last_index()}",
            )
            self.committed = index

    def applied_to(self, index: int) -> None:
        check_invariant(
            self.applied <= index <= self.committed,
            f"raft log: applied {index} outside [{self.applied}, {self.committed}]",
        )
        self.applied = index

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to (index, term) are persisted; drop them from the unstable tail."""
        if index < self.unstable_offset or not self.unstable:
            return
        pos = index - self.unstable_offset
        if pos >= len(self.unstable) or self.unstable[pos].term != term:
            return  # overwritten since that Ready: the newer entries are still unstable
        del self.unstable[: pos + 1]
        self.unstable_offset = index + 1

    def stable_snapshot_to(self, index: int) -> None:
        if self.unstable_snapshot is not None and self.unstable_snapshot.index == index:
            self.unstable_snapshot = None

    def restore(self, snapshot: RaftSnapshot) -> None:
        """Replace the whole log by *snapshot* (to be persisted through Ready)."""
        check_invariant(
            snapshot.index >= self.committed,
            f"raft log: snapshot {snapshot.index} behind commit {self.committed}",
        )
        self.unstable_snapshot = snapshot
        self.unstable = []
        self.unstable_offset = snapshot.index + 1
        self.committed = snapshot.index
