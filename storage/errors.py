"""Errors raised by the stores, placed in the two families of :mod:`protocol.errors`.

Misuse by the caller (a block out of order, a Raft log append with a gap) is a
``LocalError``: the store refuses and is left unchanged. Stored bytes that no longer decode
or no longer match what they commit to are an ``InvariantViolation``: the node stops.
"""

from __future__ import annotations

from protocol.errors import ConfigError, InvariantViolation, LocalError


class BlockOrderError(LocalError):
    """A block whose number is not the height, or whose previous hash is not the tip hash."""


class RaftLogError(LocalError):
    """A Raft log operation the log cannot honour (a gap, non-contiguous entries, ...)."""


class CompactedError(RaftLogError):
    """Entries asked for have been compacted away; the follower needs a snapshot."""


class UnavailableError(RaftLogError):
    """Entries asked for lie beyond the last index of the log."""


class CorruptionError(InvariantViolation):
    """Stored bytes that do not decode or do not match their key: stop the node."""


class DatabaseLockedError(ConfigError):
    """The database is open in another process or object: LevelDB holds one lock per
    database, and a running node keeps its own."""
