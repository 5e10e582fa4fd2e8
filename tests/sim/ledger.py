"""Ledger mode of the simulation: endorsed transactions, blocks, and a validating peer per node.

In ledger mode a proposal may carry a block instead of a toy payload. The leader cuts it as
``node/ordering.py`` ``_cut_blocks`` does: numbered and hash-chained after the last block in
its log (its chain's tip, or a later block still uncommitted in its log), and signed with a
member node's key; its envelopes come from :class:`Workload`, built with the in-memory
network of ``tests/unit/endorsed_world.py``.

Every node applies committed block entries as ``node/ordering.py`` ``_validate_committed``
does: a block already in its chain (an entry re-applied after a restart) is skipped, once
checked to be the block the chain holds; the others are validated by the node's own
:class:`node.validator.BlockValidator` (every block of a Ready before any is written, so
later blocks see earlier ones through the validator's overlay) and committed to
:class:`storage.ledger.Stores` on the node's crashable KV, the KV of its Raft log. The blocks
of a Ready are written one batch each, all unsynced but the last: durable together, as the
real node's one synced batch is, and the state hash can be taken after each block.

A snapshot carries the chain point (height, tip) at its index, as the real node's does. A
node installing one first pulls the blocks it lacks from live, connected peers, checks each
as ``node/catchup.py`` does, and commits it through its own validator; the copies arrive
with every validation code set to VALID, so codes that were trusted rather than recomputed
would show. Only then is the snapshot persisted.

The world's certificates are made once per process and envelopes are signed per seed with
random ECDSA nonces, so their bytes (and lengths) differ between processes. Raft's byte
budgets act on entry sizes, so to keep a seed replayable in another process a block entry is
framed and zero-padded to a size that depends only on its number of transactions.
"""

from __future__ import annotations

import functools
import random
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consensus.raft.log import RaftLog
from identity.keys import SigningKey
from node.chain_audit import check_block
from node.genesis import CONFIG_KEY, CONFIG_NAMESPACE, build_genesis
from node.store import install_genesis
from node.validator import BlockValidator, ValidatedBlock
from protocol.block import Block, BlockMetadata, make_header
from protocol.block import ValidationCode as Code
from protocol.codec import decode, encode, replace
from protocol.config import NetworkConfig
from protocol.errors import RemoteError
from protocol.ordering import ChainPoint
from protocol.raft import ENTRY_NORMAL, RaftEntry
from protocol.transaction import KVRead, KVWrite
from storage.kv import KV
from storage.ledger import Stores
from storage.schema import check_schema
from storage.state import WorldState
from tests.unit.endorsed_world import HOSPITALS, NOW_MS, World, make_world

# Block timestamps: an hour after the world's certificates were issued, plus one ms a step.
BLOCK_TIME_BASE_MS = NOW_MS + 3_600_000

# A block entry: magic, block number, header hash, block length, block, zero padding.
_FRAME = struct.Struct(">4sQ32sI")
_MAGIC = b"MLB1"
_FRAME_BASE_BYTES = 1536  # frame, header and metadata (a ~500-byte node certificate)
_FRAME_TX_BYTES = 4096  # an envelope with four endorsements is ~3.3 KB

CONTRACT = "registry"
KEYS = tuple(b"patient-%d" % i for i in range(6))


class LedgerDivergence(AssertionError):
    """A node's chain disagrees with what Raft committed or with what a peer serves."""


@dataclass(frozen=True)
class LedgerWorld:
    """What every seed of a process shares: the network, its genesis block, block signers."""

    world: World
    genesis: Block
    signers: tuple[tuple[SigningKey, bytes], ...]  # member node keys and certificates
    mallory: SigningKey  # signs envelopes in the creator's name, badly

    @property
    def genesis_point(self) -> ChainPoint:
        return ChainPoint(height=1, tip=self.genesis.hash())


@functools.cache
def ledger_world() -> LedgerWorld:
    """The process's ledger world (certificates are slow to make: once per process)."""
    world = make_world()
    ministry_key, ministry_cert = world.keys["ministry"], world.cert("ministry")
    genesis = build_genesis(
        world.config,
        admin_key=ministry_key,
        admin_cert_der=ministry_cert,
        signer_key=ministry_key,
        signer_cert_der=ministry_cert,
        timestamp_ms=NOW_MS,
        nonce=bytes(24),
    )
    signers = tuple((world.keys[m.node_id], m.node_cert) for m in world.config.members)
    return LedgerWorld(world, genesis, signers, SigningKey.generate())


# --- block entries ------------------------------------------------------------------------------


def frame_block(block: Block) -> bytes:
    """The Raft payload carrying *block*, padded to a size set by its transaction count."""
    raw = encode(block)
    size = _FRAME_BASE_BYTES + _FRAME_TX_BYTES * len(block.transactions)
    head = _FRAME.pack(_MAGIC, block.number, block.hash(), len(raw))
    if len(head) + len(raw) > size:
        raise ValueError(f"block {block.number} of {len(raw)} bytes outgrows its frame")
    return head + raw + bytes(size - len(head) - len(raw))


def framed_position(payload: bytes) -> tuple[int, bytes] | None:
    """(number, hash) of the block a payload carries, without decoding it; None if a toy."""
    if not payload.startswith(_MAGIC):
        return None
    _, number, block_hash, _ = _FRAME.unpack_from(payload)
    return number, block_hash


def unframe_block(payload: bytes) -> Block | None:
    """The block a Raft payload carries, None for a toy payload."""
    if not payload.startswith(_MAGIC):
        return None
    _, number, block_hash, length = _FRAME.unpack_from(payload)
    block = decode(payload[_FRAME.size : _FRAME.size + length], Block)
    if block.number != number or block.hash() != block_hash:
        raise LedgerDivergence(f"a block entry's frame names block {number}, it holds another")
    return block


def is_block_entry(entry: RaftEntry) -> bool:
    return entry.kind == ENTRY_NORMAL and entry.payload.startswith(_MAGIC)


def cut_block(
    lw: LedgerWorld,
    signer: int,
    tail: tuple[int, bytes],
    transactions: tuple[bytes, ...],
    time_ms: int,
) -> Block:
    """The block after *tail* (number, hash) holding *transactions*, signed by member *signer*."""
    key, cert = lw.signers[signer % len(lw.signers)]
    header = make_header(tail[0] + 1, tail[1], transactions, time_ms)
    metadata = BlockMetadata(signer=cert, signature=key.sign(encode(header)), validation_codes=b"")
    return Block(header=header, transactions=transactions, metadata=metadata)


# --- a node's peer side -------------------------------------------------------------------------

BlockHook = Callable[[ValidatedBlock, bytes], None]


class SimLedger:
    """One node's chain and world state on its KV, with its validator; rebuilt on each start."""

    def __init__(self, kv: KV, lw: LedgerWorld, point: ChainPoint | None) -> None:
        """Open the stores on *kv* (stamping and installing genesis if it is new); *point* is
        the chain point of the node's Raft snapshot, if it has one."""
        check_schema(kv)
        self.kv = kv
        self.lw = lw
        self.stores = Stores.on(kv)
        if self.stores.blocks.height == 0:
            install_genesis(self.stores, lw.genesis)
        self.validator = BlockValidator(self.stores, lw.world.trust, lw.world.config.orgs)
        stored = self.stores.state.get(CONFIG_NAMESPACE, CONFIG_KEY)
        if stored is None:
            raise LedgerDivergence("the world state holds no network configuration")
        self.config = decode(stored[0], NetworkConfig)
        # The chain point after the last applied Raft entry (what a snapshot there records).
        self.point = point or lw.genesis_point
        self.on_block: BlockHook = lambda validated, state_hash: None
        self._check_holds(self.point, "after a restart, the snapshot's")

    @property
    def height(self) -> int:
        return self.stores.blocks.height

    @property
    def tip(self) -> bytes:
        return self.stores.blocks.tip_hash or b""

    def state_hash(self) -> bytes:
        return self.stores.state.state_hash()

    def tail(self, log: RaftLog) -> tuple[int, bytes]:
        """The last block in this leader's chain or log: what its next block follows."""
        tail = (self.height - 1, self.tip)
        entries = log.entries(log.applied + 1, log.last_index() + 1)
        assert entries is not None, "a leader's log is never compacted past its applied index"
        for entry in entries:
            position = framed_position(entry.payload) if entry.kind == ENTRY_NORMAL else None
            if position is not None and position[0] > tail[0]:
                tail = position
        return tail

    def apply(self, entries: Sequence[RaftEntry]) -> list[ValidatedBlock]:
        """Validate and commit the blocks of committed *entries* not yet in the chain."""
        pending: list[ValidatedBlock] = []
        for entry in entries:
            if not is_block_entry(entry):
                continue
            block = unframe_block(entry.payload)
            assert block is not None
            next_number = self.stores.blocks.next_number + len(pending)
            if block.number < next_number:
                held = self._held(block.number, pending)
                if held != block.hash():
                    raise LedgerDivergence(
                        f"entry {entry.index} commits another block {block.number} than the "
                        "chain holds"
                    )
            elif block.number > next_number:
                raise LedgerDivergence(
                    f"entry {entry.index} commits block {block.number}, the chain is at "
                    f"{next_number}"
                )
            else:
                validated = self.validator.validate(block, self.config, entry.index)
                self.config = validated.config
                pending.append(validated)
            self.point = ChainPoint(height=block.number + 1, tip=block.hash())
        self._write(pending)
        return pending

    def catch_up(self, point: ChainPoint, peers: Sequence[SimLedger]) -> int | None:
        """Pull, check, validate and commit blocks until the chain reaches *point*.

        Returns how many blocks were added, or None if no peer could serve the next one.
        """
        blocks = self.stores.blocks
        added = 0
        while blocks.height < point.height:
            number = blocks.height
            raw = next((p.stores.blocks.get_raw(number) for p in peers if p.height > number), None)
            if raw is None:
                return None
            block = decode(raw, Block)
            try:
                check_block(block, number, self.tip, self.lw.world.trust, self.config)
            except RemoteError as e:
                raise LedgerDivergence(f"catch-up: a peer serves a bad block {number}: {e}") from e
            # Codes from a peer are never trusted: claim every transaction valid.
            claimed = bytes([Code.VALID]) * len(block.transactions)
            block = replace(block, metadata=replace(block.metadata, validation_codes=claimed))
            validated = self.validator.validate(block, self.config)
            self.config = validated.config
            self._write([validated])
            added += 1
        self._check_holds(point, "a snapshot's")
        return added

    def _held(self, number: int, pending: list[ValidatedBlock]) -> bytes | None:
        stored = self.stores.blocks.next_number
        if number >= stored:
            return pending[number - stored].block.hash()
        block = self.stores.blocks.get(number)
        return None if block is None else block.hash()

    def _write(self, validated: list[ValidatedBlock]) -> None:
        with self.validator.writing():
            for i, v in enumerate(validated):
                with self.kv.batch(sync=i == len(validated) - 1) as batch:
                    self.stores.stage_block(v.block, v.writes, batch, v.tx_ids)
                self.stores.blocks.note_committed(v.block)
                self.on_block(v, self.state_hash())

    def _check_holds(self, point: ChainPoint, what: str) -> None:
        if self.height < point.height:
            raise LedgerDivergence(
                f"{what} chain point is at height {point.height}, the chain at {self.height}"
            )
        held = self.stores.blocks.get(point.height - 1)
        if held is None or held.hash() != point.tip:
            raise LedgerDivergence(f"{what} tip is not the block at height {point.height}")


# --- the workload -------------------------------------------------------------------------------

_FIRST_CODES = {
    # kind: the codes the first appearance of its tx_id in the chain may get
    "write": frozenset({Code.VALID}),
    "delete": frozenset({Code.VALID}),
    "update": frozenset({Code.VALID, Code.MVCC_READ_CONFLICT}),
    "stale": frozenset({Code.MVCC_READ_CONFLICT}),
    "forged": frozenset({Code.ENDORSEMENT_POLICY_FAILURE}),
    "few": frozenset({Code.ENDORSEMENT_POLICY_FAILURE}),
    "wrong-network": frozenset({Code.WRONG_NETWORK}),
    "bad-rwset": frozenset({Code.BAD_RWSET}),
    "bad-creator": frozenset({Code.BAD_CREATOR}),
}
# Kinds whose failure is checked before duplicates: a replay fails the same way again.
# Checked before duplicates (consensus.validation): the network, the endorsement count, the
# creator.
_FAIL_BEFORE_DUPLICATES = ("wrong-network", "few", "bad-creator")
_KIND_WEIGHTS = (
    ("write", 30),
    ("delete", 4),
    ("update", 16),
    ("stale", 8),
    ("replay", 12),
    ("forged", 5),
    ("few", 5),
    ("wrong-network", 4),
    ("bad-rwset", 4),
    ("bad-creator", 4),
)


@dataclass(frozen=True)
class Expect:
    """The codes a transaction may get: on the first appearance of its tx_id, and after."""

    kind: str
    first: frozenset[int]
    again: frozenset[int]


class Workload:
    """One seed's clients: envelopes for the blocks the leaders cut, and what each may get.

    Mostly valid endorsed writes to the registry contract's keys, mixed with transactions
    that must be invalid, and replays of envelopes sent before (clients retry).
    """

    def __init__(self, lw: LedgerWorld, seed: int, rng: random.Random) -> None:
        self.lw = lw
        self.seed = seed
        self.rng = rng
        self.sent: list[bytes] = []  # every envelope sent, for replays
        self.expect: dict[bytes, Expect] = {}  # by tx_id
        self.versions: dict[bytes, set[tuple[int, int]]] = {key: set() for key in KEYS}
        self.kinds: Counter[str] = Counter()
        self._kinds = [kind for kind, _ in _KIND_WEIGHTS]
        self._weights = [weight for _, weight in _KIND_WEIGHTS]
        self._last_key = KEYS[0]

    def transactions(self, state: WorldState) -> tuple[bytes, ...]:
        """One to three envelopes for a block; *state* is the proposer's committed state."""
        return tuple(self._one(state) for _ in range(self.rng.choice((1, 1, 2, 3))))

    def _one(self, state: WorldState) -> bytes:
        rng, world = self.rng, self.lw.world
        kind = rng.choices(self._kinds, self._weights)[0]
        if kind == "replay":
            if self.sent:
                # A client retrying, mostly soon: the original may still be in flight.
                self.kinds[kind] += 1
                return rng.choice(self.sent[-3:] if rng.random() < 0.5 else self.sent)
            kind = "write"
        # Hot keys: half the transactions touch the key of the one before, so blocks cut
        # close together (and validated in one Ready) read and write the same keys.
        key = self._last_key if rng.random() < 0.5 else rng.choice(KEYS)
        self._last_key = key
        current = self._observe(state, key)
        signers = tuple(sorted(rng.sample(HOSPITALS, rng.choice((3, 3, 4)))))
        value = b"s%d-%d" % (self.seed, len(self.sent))
        writes = (KVWrite(namespace=CONTRACT, key=key, value=value, is_delete=False),)
        reads: tuple[KVRead, ...] = ()
        network_id = None
        if kind == "delete":
            writes = (KVWrite(namespace=CONTRACT, key=key, value=b"", is_delete=True),)
        elif kind == "update":
            reads = (_read(key, current),)
        elif kind == "stale":
            seen = sorted(self.versions[key])
            if len(seen) > 1:
                reads = (_read(key, rng.choice(seen[:-1])),)  # older than one committed
            else:
                kind = "write"  # no change seen yet: no read is surely stale
        elif kind == "few":
            signers = signers[:2]
        elif kind == "forged":
            signers = signers[:3]
        elif kind == "wrong-network":
            network_id = "another-network"
        elif kind == "bad-rwset":
            writes = (*writes, KVWrite(namespace="records", key=key, value=value, is_delete=False))
        tx = world.transaction(signers, reads=reads, writes=writes, network_id=network_id)
        if kind == "forged":
            # One of three endorsements signed with another endorser's key: two count.
            victim, *rest = tx.endorsements
            other = next(h for h in HOSPITALS if h != signers[0])
            forged = world.keys[other].sign(encode(tx.response))
            tx = replace(tx, endorsements=(replace(victim, signature=forged), *rest))
        envelope = world.envelope(tx, key=self.lw.mallory if kind == "bad-creator" else None)
        first = _FIRST_CODES[kind]
        again = first if kind in _FAIL_BEFORE_DUPLICATES else frozenset({Code.DUPLICATE_TXID})
        self.expect[tx.tx_id] = Expect(kind, first, again)
        self.kinds[kind] += 1
        raw = encode(envelope)
        self.sent.append(raw)
        return raw

    def _observe(self, state: WorldState, key: bytes) -> tuple[int, int] | None:
        """The key's committed version in *state*; every version seen is remembered (a
        version older than the newest seen can never match again: versions only grow)."""
        found = state.get(CONTRACT, key)
        if found is None:
            return None
        version = (found[1].block, found[1].tx)
        self.versions[key].add(version)
        return version


def _read(key: bytes, version: tuple[int, int] | None) -> KVRead:
    return KVRead(
        namespace=CONTRACT,
        key=key,
        exists=version is not None,
        version_block=version[0] if version else 0,
        version_tx=version[1] if version else 0,
    )
