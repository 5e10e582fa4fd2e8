"""PBFT-lite endorsement quorums: pure rules shared by the gateway and every validating peer.

With n endorsers (the members whose ``endorser`` flag is set, one per hospital) the network
tolerates f = (n - 1) // 3 that lie, and a transaction needs q = 2f + 1 endorsements over
byte-identical responses from distinct endorsers with valid, unrevoked certificates: more
than f, so liars alone never make one. (Only when n = 3f + 1 is q also more than half of n;
with 6 endorsers two responses can each gather 3, and the gateway then takes the larger
group, ties to the smaller bytes. Either is then a response q endorsers vouched for; the
transaction id lets only one transaction of a proposal commit.)

- :func:`gather` is the gateway's side: given each endorser's reply (the canonical response
  bytes and whether its signature checked out), it picks the response a quorum agrees on and
  names the endorsers that diverged (a different response or a bad signature) and those that
  did not answer.
- :func:`endorsement_problem` is the validator's side: whether a transaction in a block
  carries such a quorum under the configuration in force, checked from the bytes alone.

No I/O, no clock: the validation time and revocation list are arguments, so every peer
that applies the same block under the same configuration reaches the same verdict.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from identity.validate import Purpose, TrustStore
from protocol.codec import encode
from protocol.config import MemberConfig, NetworkConfig
from protocol.errors import LocalError, RemoteError
from protocol.hashing import sha256
from protocol.transaction import Endorsement, Transaction, proposal_hash


def fault_tolerance(endorsers: int) -> int:
    """f: how many of *endorsers* may lie without a false response reaching a quorum."""
    if endorsers < 1:
        raise LocalError("a network needs at least one endorser")
    return (endorsers - 1) // 3


def quorum_size(endorsers: int) -> int:
    """q = 2f + 1: matching endorsements a transaction needs among *endorsers*."""
    return 2 * fault_tolerance(endorsers) + 1


def endorsing_members(config: NetworkConfig) -> tuple[MemberConfig, ...]:
    """The members that endorse under *config*, in configuration order."""
    return tuple(m for m in config.members if m.endorser)


def endorsers_by_cert_hash(config: NetworkConfig) -> dict[bytes, MemberConfig]:
    """The endorsing members of *config* by the SHA-256 of their node certificate (what an
    :class:`Endorsement` names its endorser by). Remembered for the last configuration asked
    about: every transaction of every block asks, and configurations change rarely."""
    global _last_by_cert_hash  # noqa: PLW0603 - a one-entry cache, replaced whole
    last = _last_by_cert_hash
    if last is not None and last[0] is config:
        return last[1]
    members = {sha256(m.node_cert): m for m in endorsing_members(config)}
    _last_by_cert_hash = (config, members)
    return members


_last_by_cert_hash: tuple[NetworkConfig, dict[bytes, MemberConfig]] | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """What one endorser answered the gateway: its canonical response bytes (None if it
    refused, failed or timed out) and whether its signature over them verified."""

    endorser: str
    response: bytes | None
    signature_ok: bool


@dataclass(frozen=True, slots=True)
class QuorumOutcome:
    """The gateway's verdict on one proposal's replies."""

    response: bytes | None  # the response a quorum agrees on; None if none does
    agreeing: tuple[str, ...]  # endorsers behind it, or the largest group short of q (sorted)
    diverging: tuple[str, ...]  # answered otherwise, or with a bad signature (sorted)
    missing: tuple[str, ...]  # never answered or refused (sorted)
    needed: int  # q

    @property
    def reached(self) -> bool:
        return self.response is not None


def gather(replies: Iterable[Reply], endorsers: Collection[str]) -> QuorumOutcome:
    """Find the response that q of *endorsers* signed byte for byte.

    Replies from nodes that are not endorsers are ignored; an endorser counts once (its
    first reply). Endorsers whose valid reply differs from the quorum's, or whose signature
    failed, are *diverging*: the caller reports them.
    """
    needed = quorum_size(len(endorsers))
    first: dict[str, Reply] = {}
    for reply in replies:
        if reply.endorser in endorsers and reply.endorser not in first:
            first[reply.endorser] = reply
    groups: dict[bytes, list[str]] = {}
    for reply in first.values():
        if reply.signature_ok and reply.response is not None:
            groups.setdefault(reply.response, []).append(reply.endorser)
    ranked = sorted(groups.items(), key=lambda group: (-len(group[1]), group[0]))
    winner = ranked[0][0] if ranked and len(ranked[0][1]) >= needed else None
    agreeing = sorted(ranked[0][1]) if ranked else []
    answered = {e for e, r in first.items() if r.response is not None}
    diverging = sorted(answered - set(agreeing))
    missing = sorted(set(endorsers) - answered)
    return QuorumOutcome(winner, tuple(agreeing), tuple(diverging), tuple(missing), needed)


def check_endorsement(
    endorsement: Endorsement,
    member: MemberConfig,
    response: bytes,
    trust: TrustStore,
    *,
    at: datetime,
    revoked: frozenset[int] = frozenset(),
) -> None:
    """RemoteError unless *member*'s node certificate validates at *at* and is not in
    *revoked*, and *endorsement*'s signature by it covers the canonical *response* bytes.
    (That the endorsement names *member*, by its certificate hash, is the caller's question.)"""
    identity = trust.validate(member.node_cert, at=at, revoked=revoked, purpose=Purpose.SIGNING)
    trust.verify_signature(identity, response, endorsement.signature)


def endorsement_problem(
    tx: Transaction,
    config: NetworkConfig,
    trust: TrustStore,
    *,
    at: datetime,
    revoked: frozenset[int] = frozenset(),
) -> str | None:
    """Why *tx* lacks an endorsement quorum under *config* (None when it has one).

    The response must answer this proposal; each counted endorsement must come from a
    distinct endorsing member (named by the hash of its node certificate in *config*), that
    certificate must validate at *at* and not be in *revoked*, and its signature must verify
    over the canonical response bytes. Endorsements that fail any of this are not counted;
    too few counted is the problem, named with why the first uncounted one failed.
    """
    if tx.response.proposal_hash != proposal_hash(tx.proposal):
        return "the response answers another proposal"
    members = endorsers_by_cert_hash(config)
    if not members:
        return "the network has no endorsers"
    needed = quorum_size(len(members))
    signed = encode(tx.response)
    counted: set[str] = set()
    first_failure = None
    for endorsement in tx.endorsements:
        member = members.get(endorsement.cert_hash)
        failure = None
        if member is None:
            failure = "an endorsement is not from an endorsing member"
        elif member.node_id in counted:
            failure = f"{member.node_id} endorsed twice"
        else:
            try:
                check_endorsement(endorsement, member, signed, trust, at=at, revoked=revoked)
            except RemoteError as e:
                failure = f"endorsement by {member.node_id}: {e}"
        if failure is None:
            counted.add(member.node_id)  # type: ignore[union-attr]
        elif first_failure is None:
            first_failure = failure
    if len(counted) >= needed:
        return None
    why = f" ({first_failure})" if first_failure else ""
    return f"{len(counted)} valid endorsements of the {needed} needed{why}"
