"""Named integer counters: what the node counts (dropped frames, refused peers, ...).

Deliberately tiny: a counter springs into existence at its first increment, and
:meth:`Metrics.snapshot` copies them all for ``/metrics``, ``raft status`` and tests. One
instance per node; endorsements run on executor threads and count too, so increments take
a lock (uncontended, it costs well under a microsecond).
"""

from __future__ import annotations

import threading

from protocol.errors import LocalError


class Metrics:
    """A registry of monotonically increasing integer counters, by name."""

    __slots__ = ("_counters", "_lock")

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()

    def inc(self, name: str, amount: int = 1) -> None:
        """Add *amount* (a non-negative int) to the counter *name*."""
        if type(amount) is not int or amount < 0:
            raise LocalError(f"counter {name}: increment must be a non-negative int")
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + amount

    def value(self, name: str) -> int:
        """The counter's current value (0 if it was never incremented)."""
        return self._counters.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        """Every counter's value, sorted by name (a copy)."""
        with self._lock:
            return dict(sorted(self._counters.items()))
