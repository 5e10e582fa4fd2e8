"""Why the Raft core refuses a request from its application.

All of them are ``LocalError``s: the caller asked for something this node cannot do now
(propose on a follower, start a second membership change, ...). The node layer turns them
into answers ("forward to the leader", "retry later"); they never mean broken state. Broken
state raises ``protocol.errors.InvariantViolation`` instead.
"""

from __future__ import annotations

from protocol.errors import LocalError


class RaftRefused(LocalError):
    """The Raft node refused a request; the subclass says why."""


class NotLeader(RaftRefused):
    """Only the leader accepts proposals, membership changes and transfers."""

    def __init__(self, leader: str) -> None:
        super().__init__(f"not the leader (leader: {leader or 'unknown'})")
        self.leader = leader


class TransferInProgress(RaftRefused):
    """The leader is handing over leadership and accepts no proposals meanwhile."""


class UncommittedBytesExceeded(RaftRefused):
    """Too many proposed bytes are not committed yet: back-pressure, retry later."""


class MembershipChangeRefused(RaftRefused):
    """A membership change that is pending, invalid for the current membership, or premature."""


class TransferRefused(RaftRefused):
    """Leadership cannot go to that node (unknown, a learner, or this node itself)."""


class CampaignRefused(RaftRefused):
    """This node may not campaign (not a voter, or unapplied membership changes)."""
