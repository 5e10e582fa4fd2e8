"""The genesis block: block 0 carries the network configuration, signed twice.

A ministry admin signs the :class:`protocol.config.ConfigEnvelope`; the ministry's node signs
the block header, as the node that cuts any later block signs its header. The configuration
is also written to the world state under :data:`CONFIG_NAMESPACE`, where later
configuration transactions update it.
"""

from __future__ import annotations

from identity.keys import SigningKey
from protocol import limits
from protocol.block import GENESIS_PREVIOUS_HASH, Block, BlockMetadata, ValidationCode, make_header
from protocol.codec import decode, encode
from protocol.config import ConfigEnvelope, ConfigUpdate, NetworkConfig
from protocol.errors import IntegrityError
from protocol.transaction import KVWrite

CONFIG_NAMESPACE = "_system"  # leading underscore: no contract can be named like this
CONFIG_KEY = b"network_config"


def build_genesis(
    config: NetworkConfig,
    *,
    admin_key: SigningKey,
    admin_cert_der: bytes,
    signer_key: SigningKey,
    signer_cert_der: bytes,
    timestamp_ms: int,
    nonce: bytes,
) -> Block:
    """Block 0 holding *config*, signed by a ministry admin and the ministry's node."""
    update = ConfigUpdate(
        network_id=config.network_id,
        config=config,
        creator=admin_cert_der,
        nonce=nonce,
        timestamp_ms=timestamp_ms,
    )
    envelope = ConfigEnvelope(update=update, signature=admin_key.sign(encode(update)))
    transactions = (encode(envelope),)
    header = make_header(0, GENESIS_PREVIOUS_HASH, transactions, timestamp_ms)
    metadata = BlockMetadata(
        signer=signer_cert_der,
        signature=signer_key.sign(encode(header)),
        validation_codes=bytes([ValidationCode.VALID]),
    )
    return Block(header=header, transactions=transactions, metadata=metadata)


def genesis_envelope(block: Block) -> ConfigEnvelope:
    """The configuration envelope of a genesis block (IntegrityError if it has another shape)."""
    if block.header.number != 0 or len(block.transactions) != 1:
        raise IntegrityError("a genesis block is block 0 with exactly one transaction")
    envelope: object = decode(block.transactions[0], max_bytes=limits.CONFIG_BYTES_MAX)
    if not isinstance(envelope, ConfigEnvelope):
        raise IntegrityError("the genesis transaction is not a configuration envelope")
    return envelope


def config_writes(config: NetworkConfig) -> list[KVWrite]:
    """The world-state writes that store *config*."""
    return [
        KVWrite(namespace=CONFIG_NAMESPACE, key=CONFIG_KEY, value=encode(config), is_delete=False)
    ]
