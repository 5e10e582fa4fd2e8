"""RaftLogStore: the durable half of Raft: hard state, log entries and the latest snapshot.

It follows etcd-raft's ``Storage`` and ``MemoryStorage``. The log is the entries
``first_index() .. last_index()``; everything before them has been compacted into the
*log origin* ``(index, term)``, the last entry dropped, whose term ``term(index)`` still
answers (index 0, term 0 for a new log). Appending at an index at or below the last index
replaces the suffix from that index on, in the same batch, as a follower does when the
leader overwrites uncommitted entries; overwriting a committed entry with another term is
an InvariantViolation. ``save`` writes the hard state and new entries in one synced batch:
what Raft's Ready needs persisted before messages are sent.

``apply_snapshot`` installs a snapshot and drops the entries it covers; if the log does not
contain the snapshot's last entry (or has another term there) the whole log goes. A node
snapshotting its own state uses it too: the log matches, so later entries are kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from protocol import limits
from protocol.errors import InvariantViolation, LocalError, check_invariant
from storage import schema
from storage.errors import CompactedError, CorruptionError, RaftLogError, UnavailableError
from storage.kv import KV, WriteBatch

_U64_MAX = 2**64 - 1


def _check_u64(kind: str, name: str, value: object) -> None:
    if type(value) is not int or not 0 <= value <= _U64_MAX:
        raise LocalError(f"{kind}.{name} must be an int in [0, 2**64), got {value!r}")


@dataclass(frozen=True, slots=True)
class HardState:
    """Raft's persistent state: current term, vote ("" = none) and commit index."""

    term: int
    vote: str
    commit: int

    def __post_init__(self) -> None:
        _check_u64("HardState", "term", self.term)
        _check_u64("HardState", "commit", self.commit)
        if type(self.vote) is not str or len(self.vote) > limits.ID_CHARS_MAX:
            raise LocalError(
                f"HardState.vote must be a node id of at most {limits.ID_CHARS_MAX} chars"
            )


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One Raft log entry; indexes start at 1."""

    index: int
    term: int
    data: bytes

    def __post_init__(self) -> None:
        _check_u64("LogEntry", "index", self.index)
        _check_u64("LogEntry", "term", self.term)
        if self.index == 0:
            raise LocalError("LogEntry.index starts at 1")
        if type(self.data) is not bytes:
            raise LocalError(f"LogEntry.data must be bytes, not {type(self.data).__name__}")


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """The index and term of the last entry a snapshot covers."""

    index: int
    term: int

    def __post_init__(self) -> None:
        _check_u64("SnapshotMeta", "index", self.index)
        _check_u64("SnapshotMeta", "term", self.term)


EMPTY_HARD_STATE = HardState(term=0, vote="", commit=0)
_PAIR = schema.U64.size * 2


class RaftLogStore:
    """Hard state, log entries and snapshot of one Raft node, on one KV."""

    def __init__(self, kv: KV) -> None:
        self.kv = kv
        raw = kv.get(schema.RAFT_LOG_ORIGIN_KEY)
        self._origin = SnapshotMeta(0, 0) if raw is None else _unpack_meta(raw, "log origin")
        self._last = self._origin.index
        last = next(kv.iterate(schema.RAFT_ENTRY, reverse=True), None)
        if last is not None:
            first_key, _ = next(kv.iterate(schema.RAFT_ENTRY))
            first = _index_of(first_key)
            check_invariant(
                first == self._origin.index + 1,
                f"raft log starts at {first}, its origin is {self._origin.index}",
            )
            self._last = _index_of(last[0])

    # --- hard state ---------------------------------------------------------------------------

    def hard_state(self) -> HardState:
        """The stored hard state (term 0, no vote, commit 0 if never set)."""
        raw = self.kv.get(schema.RAFT_HARD_STATE_KEY)
        if raw is None:
            return EMPTY_HARD_STATE
        if len(raw) < _PAIR:
            raise CorruptionError("raft hard state record is too short")
        (term,) = schema.U64.unpack_from(raw)
        (commit,) = schema.U64.unpack_from(raw, schema.U64.size)
        return HardState(term=term, vote=raw[_PAIR:].decode("utf-8"), commit=commit)

    def set_hard_state(self, hard_state: HardState, batch: WriteBatch | None = None) -> None:
        """Store *hard_state*, synced, or staged in *batch* for the caller to commit."""
        record = schema.U64.pack(hard_state.term) + schema.U64.pack(hard_state.commit)
        record += hard_state.vote.encode("utf-8")
        if batch is None:
            self.kv.put(schema.RAFT_HARD_STATE_KEY, record, sync=True)
        else:
            batch.put(schema.RAFT_HARD_STATE_KEY, record)

    # --- reading the log ----------------------------------------------------------------------

    def first_index(self) -> int:
        """The index of the first entry still in the log (log origin + 1)."""
        return self._origin.index + 1

    def last_index(self) -> int:
        """The index of the last entry (the log origin's index if the log is empty)."""
        return self._last

    def term(self, index: int) -> int | None:
        """The term of entry *index*; the log origin answers too; None outside the log."""
        if index == self._origin.index:
            return self._origin.term
        if not self._origin.index < index <= self._last:
            return None
        raw = self.kv.get(schema.raft_entry_key(index))
        if raw is None or len(raw) < schema.U64.size:
            raise CorruptionError(f"raft entry {index} is missing or malformed")
        (term,) = schema.U64.unpack_from(raw)
        return int(term)

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[LogEntry]:
        """Entries ``[lo, hi)``; with *max_bytes*, as many as fit in it counting data bytes,
        but at least one if the range is not empty.

        Raises CompactedError if *lo* is before first_index(), UnavailableError if *hi* is
        past last_index() + 1.
        """
        if lo < self.first_index():
            raise CompactedError(
                f"entries from {lo} compacted; the log starts at {self.first_index()}"
            )
        if hi > self._last + 1:
            raise UnavailableError(
                f"entries up to {hi - 1} asked for; the log ends at {self._last}"
            )
        if lo > hi:
            raise RaftLogError(f"entries [{lo}, {hi}) is not a range")
        out: list[LogEntry] = []
        size = 0
        pairs = self.kv.iterate(
            schema.RAFT_ENTRY, start=schema.raft_entry_key(lo), stop=schema.raft_entry_key(hi)
        )
        for expected, (key, raw) in enumerate(pairs, start=lo):
            entry = _unpack_entry(key, raw)
            check_invariant(entry.index == expected, f"raft log has a gap before {entry.index}")
            size += len(entry.data)
            if out and max_bytes is not None and size > max_bytes:
                break
            out.append(entry)
        check_invariant(
            len(out) == hi - lo or max_bytes is not None, f"raft log has a gap in [{lo}, {hi})"
        )
        return out

    # --- writing the log ----------------------------------------------------------------------

    def append(self, entries: Sequence[LogEntry], *, sync: bool = True) -> None:
        """Append contiguous *entries*, replacing the log's suffix from entries[0].index on.

        Entries at or below the log origin are already compacted and are skipped.
        """
        self.save(None, entries, sync=sync)

    def save(
        self, hard_state: HardState | None, entries: Sequence[LogEntry], *, sync: bool = True
    ) -> None:
        """Store *hard_state* (if given) and append *entries*, in one batch."""
        with self.kv.batch(sync=sync) as batch:
            new_last = self.stage(hard_state, entries, batch)
        self.note_saved(new_last)

    def stage(
        self, hard_state: HardState | None, entries: Sequence[LogEntry], batch: WriteBatch
    ) -> int:
        """Check and stage what :meth:`save` writes into the caller's *batch* (so other writes
        can share its one sync); pass the result to :meth:`note_saved` once it committed."""
        checked = self._checked_new_entries(entries)
        if hard_state is not None:
            self.set_hard_state(hard_state, batch)
        return self._stage_entries(checked, batch)

    def note_saved(self, last: int) -> None:
        """Record the log's new last index after the batch :meth:`stage` filled committed."""
        self._last = last

    def compact(self, index: int) -> None:
        """Drop entries up to *index*, remembering (index, term(index)) as the log origin.

        Compacting at or below the current origin does nothing; beyond last_index() it is
        refused with RaftLogError.
        """
        if index > self._last:
            raise RaftLogError(f"cannot compact to {index}: the log ends at {self._last}")
        if index <= self._origin.index:
            return
        term = self.term(index)
        check_invariant(term is not None, f"raft entry {index} has no term")
        origin = SnapshotMeta(index, int(term))  # type: ignore[arg-type]
        with self.kv.batch(sync=True) as batch:
            for i in range(self._origin.index + 1, index + 1):
                batch.delete(schema.raft_entry_key(i))
            batch.put(schema.RAFT_LOG_ORIGIN_KEY, _pack_meta(origin))
        self._origin = origin

    # --- snapshots ----------------------------------------------------------------------------

    def snapshot(self) -> tuple[SnapshotMeta, bytes] | None:
        """The latest snapshot stored (meta, data), None if there is none."""
        raw = self.kv.get(schema.RAFT_SNAPSHOT_KEY)
        if raw is None:
            return None
        return _unpack_meta(raw[:_PAIR], "snapshot"), raw[_PAIR:]

    def apply_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Install a snapshot and drop the entries it covers, atomically.

        Entries after meta.index are kept if the log holds meta.index with meta.term;
        otherwise the whole log is dropped. A snapshot older than the log origin is refused
        with RaftLogError.
        """
        if type(data) is not bytes:
            raise LocalError(f"snapshot data must be bytes, not {type(data).__name__}")
        origin = self._origin
        if meta.index < origin.index or (meta.index == origin.index and meta.term != origin.term):
            raise RaftLogError(
                f"snapshot at ({meta.index}, {meta.term}) is older than the log origin "
                f"({origin.index}, {origin.term})"
            )
        keep = self.term(meta.index) == meta.term
        drop_to = meta.index if keep else self._last
        with self.kv.batch(sync=True) as batch:
            for i in range(origin.index + 1, drop_to + 1):
                batch.delete(schema.raft_entry_key(i))
            batch.put(schema.RAFT_SNAPSHOT_KEY, _pack_meta(meta) + data)
            batch.put(schema.RAFT_LOG_ORIGIN_KEY, _pack_meta(meta))
        self._origin = meta
        self._last = self._last if keep else meta.index

    # --- internals ----------------------------------------------------------------------------

    def _checked_new_entries(self, entries: Sequence[LogEntry]) -> list[LogEntry]:
        """The entries still to write (compacted ones dropped), after checking they fit."""
        out = list(entries)
        for before, after in itertools.pairwise(out):
            if after.index != before.index + 1:
                raise RaftLogError(f"entries not contiguous: {after.index} after {before.index}")
            if after.term < before.term:
                raise RaftLogError(f"entry {after.index} has a term below entry {before.index}'s")
        out = [e for e in out if e.index > self._origin.index]
        if not out:
            return out
        first = out[0].index
        if first > self._last + 1:
            raise RaftLogError(f"append at {first} leaves a gap: the log ends at {self._last}")
        previous_term = self.term(first - 1)
        if previous_term is not None and out[0].term < previous_term:
            raise RaftLogError(f"entry {first} has a term below entry {first - 1}'s")
        commit = self.hard_state().commit
        for entry in out:
            if entry.index > min(commit, self._last):
                break
            if self.term(entry.index) != entry.term:
                raise InvariantViolation(
                    f"append would overwrite committed raft entry {entry.index} with another term"
                )
        return out

    def _stage_entries(self, entries: list[LogEntry], batch: WriteBatch) -> int:
        """Stage *entries* (already checked) and the truncation of any suffix; the new last."""
        if not entries:
            return self._last
        for entry in entries:
            batch.put(schema.raft_entry_key(entry.index), schema.U64.pack(entry.term) + entry.data)
        new_last = entries[-1].index
        for i in range(new_last + 1, self._last + 1):
            batch.delete(schema.raft_entry_key(i))
        return new_last


def _index_of(key: bytes) -> int:
    (index,) = schema.U64.unpack(key[len(schema.RAFT_ENTRY) :])
    return int(index)


def _unpack_entry(key: bytes, raw: bytes) -> LogEntry:
    if len(raw) < schema.U64.size:
        raise CorruptionError(f"raft entry {_index_of(key)} is malformed")
    (term,) = schema.U64.unpack_from(raw)
    return LogEntry(index=_index_of(key), term=term, data=raw[schema.U64.size :])


def _pack_meta(meta: SnapshotMeta) -> bytes:
    return schema.U64.pack(meta.index) + schema.U64.pack(meta.term)


def _unpack_meta(raw: bytes, what: str) -> SnapshotMeta:
    if len(raw) != _PAIR:
        raise CorruptionError(f"raft {what} record is malformed")
    (index,) = schema.U64.unpack_from(raw)
    (term,) = schema.U64.unpack_from(raw, schema.U64.size)
    return SnapshotMeta(index=index, term=term)
