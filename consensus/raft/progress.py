"""What a leader knows about each follower's log, and how it paces appends to it.

Modelled on etcd-raft's ``tracker.Progress``. Each follower is in one of three states:

* ``PROBE``: the leader does not know where the follower's log diverges. It sends one
  append at a time and waits for the answer (or the next heartbeat response) before sending
  another; each rejection moves ``next`` back (using the follower's hint).
* ``REPLICATE``: the logs match up to ``match``; the leader streams appends optimistically,
  advancing ``next`` as it sends, with at most ``max_inflight_appends`` unacknowledged
  appends (and ``max_inflight_bytes`` bytes) outstanding: the pipelining bound.
* ``SNAPSHOT``: the entries the follower needs are compacted; a snapshot is on its way and
  nothing else is sent until the application reports how it went or the follower answers.
"""

from __future__ import annotations

import enum
from collections import deque

from protocol.errors import check_invariant


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """The appends sent but not acknowledged, as (last index, bytes), oldest first."""

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.queue: deque[tuple[int, int]] = deque()
        self.bytes = 0

    def add(self, last_index: int, size_bytes: int) -> None:
        check_invariant(not self.full(), "raft inflights: add while full")
        self.queue.append((last_index, size_bytes))
        self.bytes += size_bytes

    def free_le(self, index: int) -> None:
        """Forget the appends acknowledged by an answer up to *index*."""
        while self.queue and self.queue[0][0] <= index:
            _, size = self.queue.popleft()
            self.bytes -= size

    def free_first(self) -> None:
        """Forget the oldest append (the window is stuck; see the heartbeat response)."""
        if self.queue:
            _, size = self.queue.popleft()
            self.bytes -= size

    def full(self) -> bool:
        return len(self.queue) >= self.max_count or self.bytes >= self.max_bytes

    def reset(self) -> None:
        self.queue.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.queue)


class Progress:
    """A leader's view of one follower (or learner)."""

    def __init__(self, next_index: int, max_inflight: int, max_inflight_bytes: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_paused = False  # PROBE: an append is out, wait for its answer
        self.pending_snapshot = 0  # SNAPSHOT: the index of the snapshot sent
        self.recent_active = False  # heard from it in the current check-quorum window
        self.inflights = Inflights(max_inflight, max_inflight_bytes)

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_paused = False
        self.pending_snapshot = 0
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index
        self.next = snapshot_index + 1

    def maybe_update(self, index: int) -> bool:
        """An acknowledgement up to *index*; True if it moved ``match``."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_paused = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease_to(self, rejected: int, hint_index: int) -> bool:
        """A rejection of the append after *rejected*; False if the rejection is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1  # back to probing from the known match
            return True
        if self.next - 1 != rejected:
            return False  # answers an older probe
        self.next = max(min(rejected, hint_index + 1), self.match + 1)
        self.probe_paused = False
        return True

    def sent_entries(self, last_index: int, count: int, size_bytes: int) -> None:
        """Account for an append of *count* entries ending at *last_index*."""
        if self.state is ProgressState.REPLICATE:
            if count:
                self.next = last_index + 1
                self.inflights.add(last_index, size_bytes)
        elif self.state is ProgressState.PROBE:
            self.probe_paused = True

    def is_paused(self) -> bool:
        """Whether the leader must hold further appends to this follower."""
        if self.state is ProgressState.PROBE:
            return self.probe_paused
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True
