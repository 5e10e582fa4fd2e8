"""Validating a block's transactions: the rules every peer applies, in block order, before any
write reaches the world state. Pure: the committed state, the chain's tx index, the time
and the revocation list come in as arguments, so all peers reach the same codes.

For an :class:`protocol.transaction.Envelope`, in this order (the first failure is its code):

1. the proposal names this network (WRONG_NETWORK);
1a. it carries at least q endorsements at all (ENDORSEMENT_POLICY_FAILURE): a cheap count
    that spares a signature check on envelopes that can never be valid;
2. the creator's certificate validates at the block's time and is not revoked, and the
   creator's signature covers the transaction (BAD_CREATOR);
3. its tx_id is neither in the chain nor earlier in this block (DUPLICATE_TXID);
4. every read and write is in the contract's own namespace (BAD_RWSET);
5. q valid endorsements cover its response (ENDORSEMENT_POLICY_FAILURE, see
   :mod:`consensus.endorse`);
6. MVCC: every key it read still has the version it read, and no earlier valid transaction
   of this block wrote it (MVCC_READ_CONFLICT).

A :class:`protocol.config.ConfigEnvelope` must follow from the configuration in force
(:mod:`consensus.config_change`); a valid one is in force for the rest of the block.
Invalid transactions stay in the block with their code and write nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from consensus.config_change import update_problem
from consensus.endorse import endorsement_problem, endorsing_members, quorum_size
from identity.validate import Purpose, TrustStore
from protocol.block import ValidationCode
from protocol.codec import encode
from protocol.config import ConfigEnvelope, NetworkConfig
from protocol.errors import RemoteError
from protocol.transaction import Envelope, KVWrite

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class VersionReader(Protocol):
    """The committed version of a key: (block, tx), None if absent."""

    def __call__(self, namespace: str, key: bytes) -> tuple[int, int] | None: ...


@dataclass(frozen=True, slots=True)
class BlockVerdict:
    """What validation decided for one block."""

    codes: tuple[int, ...]  # one ValidationCode per transaction
    reasons: tuple[str, ...]  # why, per transaction ("" when valid); ids and counts only
    writes: tuple[tuple[int, tuple[KVWrite, ...]], ...]  # (tx index, writes) of valid ones
    config: NetworkConfig  # the configuration in force after the block
    tx_ids: tuple[bytes, ...]


def validate_block(
    txs: Sequence[Envelope | ConfigEnvelope],
    *,
    block_time_ms: int,
    config: NetworkConfig,
    trust: TrustStore,
    committed_version: VersionReader,
    tx_committed: Callable[[bytes], bool],
    revoked: frozenset[int] = frozenset(),
    config_writes: Callable[[NetworkConfig], Sequence[KVWrite]] = lambda config: (),
) -> BlockVerdict:
    """Validate decoded *txs* of one block; see the module docstring for the rules.

    *block_time_ms* (the block header's timestamp) is the time certificates are checked
    at; *config_writes* gives the state writes a valid configuration update makes.
    """
    at = _EPOCH + timedelta(milliseconds=block_time_ms)
    codes: list[int] = []
    reasons: list[str] = []
    writes: list[tuple[int, tuple[KVWrite, ...]]] = []
    seen: set[bytes] = set()
    written: set[tuple[str, bytes]] = set()
    for index, tx in enumerate(txs):
        tx_id = tx.tx_id
        if isinstance(tx, ConfigEnvelope):
            problem = update_problem(config, tx, trust)
            code = ValidationCode.VALID if problem is None else ValidationCode.BAD_CONFIG_UPDATE
            if problem is None:
                config = tx.update.config
                writes.append((index, tuple(config_writes(config))))
        else:
            code, problem = _envelope_problem(
                tx,
                tx_id,
                config,
                trust,
                at,
                revoked,
                seen,
                written,
                committed_version,
                tx_committed,
            )
            if code == ValidationCode.VALID:
                tx_writes = tx.transaction.response.rw_set.writes
                written.update((w.namespace, w.key) for w in tx_writes)
                writes.append((index, tuple(tx_writes)))
        seen.add(tx_id)
        codes.append(code)
        reasons.append(problem or "")
    return BlockVerdict(
        tuple(codes), tuple(reasons), tuple(writes), config, tuple(tx.tx_id for tx in txs)
    )


def _envelope_problem(
    envelope: Envelope,
    tx_id: bytes,
    config: NetworkConfig,
    trust: TrustStore,
    at: datetime,
    revoked: frozenset[int],
    seen: set[bytes],
    written: set[tuple[str, bytes]],
    committed_version: VersionReader,
    tx_committed: Callable[[bytes], bool],
) -> tuple[int, str | None]:
    tx = envelope.transaction
    proposal = tx.proposal
    if proposal.network_id != config.network_id:
        return ValidationCode.WRONG_NETWORK, "the proposal names another network"
    needed = quorum_size(len(endorsing_members(config)) or 1)
    if len(tx.endorsements) < needed:
        return (
            ValidationCode.ENDORSEMENT_POLICY_FAILURE,
            f"{len(tx.endorsements)} endorsements of the {needed} needed",
        )
    try:
        creator = trust.validate(proposal.creator, at=at, revoked=revoked, purpose=Purpose.SIGNING)
        trust.verify_signature(creator, encode(tx), envelope.signature)
    except RemoteError as e:
        return ValidationCode.BAD_CREATOR, f"creator: {e}"
    if tx_id in seen or tx_committed(tx_id):
        return ValidationCode.DUPLICATE_TXID, "the tx_id is already in the chain or this block"
    rw_set = tx.response.rw_set
    if any(item.namespace != proposal.contract for item in (*rw_set.reads, *rw_set.writes)):
        return ValidationCode.BAD_RWSET, "it reads or writes outside its contract's namespace"
    problem = endorsement_problem(tx, config, trust, at=at, revoked=revoked)
    if problem is not None:
        return ValidationCode.ENDORSEMENT_POLICY_FAILURE, problem
    for read in rw_set.reads:
        if (read.namespace, read.key) in written:
            return (
                ValidationCode.MVCC_READ_CONFLICT,
                "a key it read was written earlier in the block",
            )
        now = committed_version(read.namespace, read.key)
        expected = (read.version_block, read.version_tx) if read.exists else None
        if now != expected:
            return ValidationCode.MVCC_READ_CONFLICT, "a key it read has changed since"
    return ValidationCode.VALID, None
