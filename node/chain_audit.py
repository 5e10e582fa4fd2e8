"""Full verification of a node's chain: what `medledger chain verify` runs.

For every block in order: its bytes decode as a canonical block; its number is its height;
its previous_hash is the previous header's hash; its data hash and transaction count match
its transactions; every transaction decodes; and its header signature verifies under a node
certificate that chains to the network's root through a member organisation's CA, valid at
the block's time, of a member in the configuration as the chain's valid configuration updates
have made it so far. The genesis block must also carry a configuration signed by a ministry
admin, and, when the network's genesis file is given, be byte-identical to it. The audit
stops at the first bad block and names it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

from consensus.config_change import update_problem
from identity.validate import Purpose, TrustStore
from node.genesis import genesis_envelope
from node.tls import trust_store
from protocol.block import GENESIS_PREVIOUS_HASH, Block, data_problems, decode_tx
from protocol.codec import decode, encode
from protocol.config import ConfigEnvelope, NetworkConfig
from protocol.errors import IntegrityError, RemoteError
from protocol.transaction import Envelope


@dataclasses.dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of an audit: how far it got and the first bad block, if any."""

    height: int  # blocks present
    verified: int  # blocks that passed, from 0
    tip_hash: bytes | None  # hash of the last verified block
    bad_block: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.bad_block is None


class BlockRejected(IntegrityError):
    """A block that fails verification; the message says why."""


def audit_chain(
    height: int, raw_block: Callable[[int], bytes | None], *, genesis_bytes: bytes | None = None
) -> ChainReport:
    """Verify blocks 0..height-1 as read by *raw_block*; stop at the first bad one."""
    previous_hash = GENESIS_PREVIOUS_HASH
    trust: TrustStore | None = None
    config: NetworkConfig | None = None
    for number in range(height):
        try:
            raw = raw_block(number)
            if raw is None:
                raise BlockRejected("missing from the store")
            block = _decode_block(raw)
            if number == 0:
                if genesis_bytes is not None and raw != genesis_bytes:
                    raise BlockRejected("differs from the network's genesis block")
                config, trust = _check_genesis(block)
            if trust is None or config is None:  # unreachable: block 0 sets both
                raise BlockRejected("no genesis configuration")
            transactions = check_block(block, number, previous_hash, trust, config)
            config = _config_after(transactions, config, trust)
        except RemoteError as e:  # BlockRejected included
            return ChainReport(height, number, _hex_or_none(previous_hash, number), number, str(e))
        previous_hash = block.hash()
    return ChainReport(height, height, previous_hash if height else None)


def _config_after(
    transactions: list[Envelope | ConfigEnvelope], config: NetworkConfig, trust: TrustStore
) -> NetworkConfig:
    """The configuration once a block's valid configuration updates are applied, by the
    rules every member applied when it committed the block."""
    for tx in transactions:
        if isinstance(tx, ConfigEnvelope) and update_problem(config, tx, trust) is None:
            config = tx.update.config
    return config


def _hex_or_none(previous_hash: bytes, number: int) -> bytes | None:
    return previous_hash if number > 0 else None


def _decode_block(raw: bytes) -> Block:
    try:
        return decode(raw, Block)
    except RemoteError as e:
        raise BlockRejected(f"does not decode: {e}") from None


def _check_genesis(block: Block) -> tuple[NetworkConfig, TrustStore]:
    envelope = genesis_envelope(block)
    update = envelope.update
    config = update.config
    trust = trust_store(config)
    creator = trust.validate(update.creator, at=_at(update.timestamp_ms), purpose=Purpose.SIGNING)
    org = config.org(creator.org_id)
    if org is None or org.kind != "ministry" or creator.role != "admin":
        raise BlockRejected("the genesis configuration is not signed by a ministry admin")
    creator.public_key.verify(encode(update), envelope.signature)
    if update.network_id != config.network_id:
        raise BlockRejected("the genesis configuration names another network")
    return config, trust


def check_block(
    block: Block, number: int, previous_hash: bytes, trust: TrustStore, config: NetworkConfig
) -> list[Envelope | ConfigEnvelope]:
    """Verify one non-genesis block at height *number* after *previous_hash*
    (BlockRejected or another RemoteError if it fails); returns its decoded transactions."""
    header = block.header
    if header.number != number:
        raise BlockRejected(f"stored at height {number} but numbered {header.number}")
    if header.previous_hash != previous_hash:
        raise BlockRejected("previous_hash does not match the previous block's hash")
    problems = data_problems(block)
    if problems:
        raise BlockRejected("; ".join(problems))
    transactions = []
    for index, raw_tx in enumerate(block.transactions):
        try:
            transactions.append(decode_tx(raw_tx))
        except RemoteError as e:
            raise BlockRejected(f"transaction {index} does not decode: {e}") from None
    signer = trust.validate(
        block.metadata.signer, at=_at(header.timestamp_ms), purpose=Purpose.SIGNING
    )
    member = config.member(signer.subject_id)
    if signer.role != "node" or member is None or member.org_id != signer.org_id:
        raise BlockRejected("signed by a certificate that is not a member node's")
    signer.public_key.verify(encode(header), block.metadata.signature)
    return transactions


def _at(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
