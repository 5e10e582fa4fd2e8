"""Validating committed blocks on one peer, in block order, against its own stores.

The rules are :func:`consensus.validation.validate_block`'s; this adapter feeds them this
node's committed state. The ordering service validates every block of a Ready before it
writes them all in one synced batch, so a block must see the blocks validated before it in
that batch as if they were already committed: :class:`BlockValidator` keeps their writes,
tx ids and revocations in an overlay until the batch is on disk (the write runs inside
:meth:`BlockValidator.writing`).

Transactions this node already decoded when it checked them at ingress are handed over
(:meth:`BlockValidator.note_decoded`), so each is decoded once per node, not twice.

It also keeps the revocation list (the registry contract's ``revoked/`` keys) in memory,
read once at start and updated from the writes of each valid block, so neither validation
nor endorsement reads it from LevelDB per call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from chaincode.builtin import revoked_serials
from chaincode.contracts.registry import REVOKED, Registry
from consensus.validation import validate_block
from identity.validate import TrustStore
from node.genesis import config_writes
from node.tls import trust_store
from protocol.block import Block, decode_tx
from protocol.codec import replace
from protocol.config import ConfigEnvelope, NetworkConfig, OrgConfig
from protocol.transaction import Envelope, KVWrite
from storage.ledger import Stores

_NOT_PENDING = object()
# Transactions decoded at ingress and not yet met in a block: a client's envelope is in a
# block within seconds, so this covers the leader's pending envelopes many times over.
DECODED_MAX = 8_192


@dataclass(frozen=True, slots=True)
class ValidatedBlock:
    """A committed block with its validation codes set, ready to be written."""

    block: Block
    tx_ids: list[bytes]
    writes: list[tuple[int, list[KVWrite]]]  # (tx index, writes) of the valid transactions
    reasons: tuple[str, ...]  # per transaction, "" when valid
    config: NetworkConfig  # the network configuration once this block is applied
    entry_index: int  # its Raft entry (0 for a block pulled during catch-up)

    @property
    def codes(self) -> bytes:
        return self.block.metadata.validation_codes


class BlockValidator:
    """Validates this node's blocks against its stores plus the not-yet-written overlay."""

    def __init__(self, stores: Stores, trust: TrustStore, orgs: tuple[OrgConfig, ...]) -> None:
        self.stores = stores
        self.trust = trust  # the trust store of *orgs*
        self._trust_orgs = orgs
        self._versions: dict[tuple[str, bytes], tuple[int, int] | None] = {}
        self._tx_ids: set[bytes] = set()
        self._decoded: dict[bytes, Envelope | ConfigEnvelope] = {}  # raw bytes -> decoded
        self._revoked = revoked_serials(stores.state)

    @property
    def revoked(self) -> frozenset[int]:
        """The revoked certificate serials, including blocks validated but not yet written."""
        return self._revoked

    def validate(self, block: Block, config: NetworkConfig, entry_index: int = 0) -> ValidatedBlock:
        """Validate *block* under *config* (the configuration the blocks before it leave).

        Codes are always recomputed, never trusted: blocks pulled during catch-up come
        here too. The block's writes join the overlay until the write (:meth:`writing`).
        """
        decoded = self._decoded
        txs = [decoded.pop(raw, None) or decode_tx(raw) for raw in block.transactions]
        verdict = validate_block(
            txs,
            block_time_ms=block.header.timestamp_ms,
            config=config,
            trust=self.trust_for(config),
            committed_version=self._version,
            tx_committed=self._tx_committed,
            revoked=self._revoked,
            config_writes=config_writes,
        )
        writes = [(index, list(tx_writes)) for index, tx_writes in verdict.writes]
        self._note(block.number, writes, verdict.tx_ids)
        metadata = replace(block.metadata, validation_codes=bytes(verdict.codes))
        return ValidatedBlock(
            block=replace(block, metadata=metadata),
            tx_ids=list(verdict.tx_ids),
            writes=writes,
            reasons=verdict.reasons,
            config=verdict.config,
            entry_index=entry_index,
        )

    def note_decoded(self, raw: bytes, tx: Envelope | ConfigEnvelope) -> None:
        """*tx* is ``decode_tx(raw)``, decoded at ingress: its block need not decode it again."""
        decoded = self._decoded
        decoded[raw] = tx
        if len(decoded) > DECODED_MAX:
            del decoded[next(iter(decoded))]  # the oldest: its block never came

    def trust_for(self, config: NetworkConfig) -> TrustStore:
        """The trust store of *config*'s organisations: a function of the configuration,
        so every peer validates a block with the same CAs however its blocks were batched."""
        if config.orgs != self._trust_orgs:
            self.trust = trust_store(config, self.trust.signatures)
            self._trust_orgs = config.orgs
        return self.trust

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Around the write of the validated blocks: afterwards the overlay is dropped, as
        they are in the stores now; if the write fails, they are forgotten, revocations too."""
        try:
            yield
        except BaseException:
            self._revoked = revoked_serials(self.stores.state)
            raise
        finally:
            self._versions.clear()
            self._tx_ids.clear()

    def _version(self, namespace: str, key: bytes) -> tuple[int, int] | None:
        pending = self._versions.get((namespace, key), _NOT_PENDING)
        if pending is not _NOT_PENDING:
            return pending  # type: ignore[return-value]
        found = self.stores.state.get(namespace, key)
        return None if found is None else (found[1].block, found[1].tx)

    def _tx_committed(self, tx_id: bytes) -> bool:
        return tx_id in self._tx_ids or self.stores.blocks.locate_tx(tx_id) is not None

    def _note(
        self,
        number: int,
        writes: Sequence[tuple[int, Sequence[KVWrite]]],
        tx_ids: Sequence[bytes],
    ) -> None:
        self._tx_ids.update(tx_ids)
        revoked = None  # a copy of the list, made at the first revocation write
        for index, tx_writes in writes:
            for write in tx_writes:
                self._versions[(write.namespace, write.key)] = (
                    None if write.is_delete else (number, index)
                )
                if write.namespace != Registry.name or not write.key.startswith(REVOKED):
                    continue
                digits = write.key[len(REVOKED) :]
                if not digits.isdigit():
                    continue  # not a key the registry contract writes
                revoked = set(self._revoked) if revoked is None else revoked
                if write.is_delete:
                    revoked.discard(int(digits))
                else:
                    revoked.add(int(digits))
        if revoked is not None:
            self._revoked = frozenset(revoked)
