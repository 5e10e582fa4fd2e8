"""BlockStore: the hash chain of blocks, with indexes by header hash and by transaction id.

A block is appended only at the current height and only on top of the current tip hash
(the genesis block on :data:`protocol.block.GENESIS_PREVIOUS_HASH`); anything else is
refused with :class:`storage.errors.BlockOrderError` and leaves the store unchanged. The
block bytes, its hash index and its transaction index go into one batch. A transaction id
that is already indexed keeps its first location: validation marks the duplicate invalid,
the store just records where the id first appeared.

The height and tip hash are cached. ``append(block)`` commits its own synced batch and
advances the cache; ``append(block, batch)`` only stages the writes, and the caller calls
:meth:`BlockStore.note_committed` once that batch has committed (:func:`storage.ledger.commit_block`
is the path that does this). Several blocks may be staged into one batch, each on top of the
one staged before it; blocks staged into a batch that never committed are forgotten when the
next batch is used.
One BlockStore per KV: it is the only writer of its keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from protocol import limits
from protocol.block import GENESIS_PREVIOUS_HASH, Block, tx_ids_of
from protocol.codec import decode, encode
from protocol.errors import LocalError, RemoteError, check_invariant
from protocol.hashing import short_hex
from storage import schema
from storage.errors import BlockOrderError, CorruptionError
from storage.kv import KV, WriteBatch

# A stored block is a block plus its framing, exactly what fits in one message.
_BLOCK_RECORD_BYTES_MAX = limits.BLOCK_BYTES_MAX + limits.BLOCK_FRAMING_BYTES_MAX
_TX_LOCATION = schema.U64.size + schema.U32.size


class BlockStore:
    """Blocks by number, block hash -> number, tx_id -> (number, tx index)."""

    def __init__(self, kv: KV) -> None:
        self.kv = kv
        self._height = 0
        self._tip_hash: bytes | None = None
        last = next(kv.iterate(schema.BLOCK, reverse=True), None)
        if last is not None:
            key, raw = last
            (number,) = schema.U64.unpack(key[len(schema.BLOCK) :])
            block = self._decode(number, raw)
            check_invariant(
                block.number == number, f"block stored under number {number} says {block.number}"
            )
            self._height = number + 1
            self._tip_hash = block.hash()
        self._staged: list[Block] = []  # appended into a batch not yet noted committed
        self._staged_tx: set[bytes] = set()
        self._staged_in: WriteBatch | None = None

    @property
    def height(self) -> int:
        """The number of blocks stored: the number the next block must carry."""
        return self._height

    @property
    def tip_hash(self) -> bytes | None:
        """The header hash of the last block, None before genesis."""
        return self._tip_hash

    @property
    def next_number(self) -> int:
        """The number the next appended block must carry, counting blocks staged in a batch
        that has not committed yet (equal to :attr:`height` when none are)."""
        return self._next()[0]

    def append(
        self,
        block: Block,
        batch: WriteBatch | None = None,
        tx_ids: Sequence[bytes] | None = None,
    ) -> None:
        """Append *block* at the tip; with *batch*, stage it there (see note_committed).

        *tx_ids*, when the caller has already decoded the transactions, saves decoding
        them again; it must list the block's transaction ids in order.
        """
        self._check_order(block, batch)
        if tx_ids is None:
            tx_ids = tx_ids_of(block)  # may raise on a bad transaction: nothing written yet
        elif len(tx_ids) != len(block.transactions):
            raise LocalError("append: tx_ids do not match the block's transactions")
        if batch is None:
            with self.kv.batch(sync=True) as own:
                self._stage(block, tx_ids, own)
            self._advance(block)
        else:
            self._stage(block, tx_ids, batch)
            self._staged.append(block)
            self._staged_tx.update(tx_ids)
            self._staged_in = batch

    def note_committed(self, block: Block) -> None:
        """Advance height and tip hash after the batch that *block* was staged in committed
        (blocks staged together are noted in the order they were appended)."""
        check_invariant(
            bool(self._staged) and self._staged[0] is block,
            f"note_committed for block {block.number}, which is not the next staged block",
        )
        check_invariant(
            self.kv.get(schema.block_hash_key(block.hash())) == schema.U64.pack(block.number),
            f"note_committed for block {block.number} before its batch committed",
        )
        self._staged.pop(0)
        if not self._staged:
            self._forget_staged()
        self._advance(block)

    def get(self, number: int) -> Block | None:
        """The block numbered *number*, None if not stored."""
        raw = self.get_raw(number)
        return None if raw is None else self._decode(number, raw)

    def get_raw(self, number: int) -> bytes | None:
        """The stored bytes of block *number* (for chain verification to report corruption)."""
        if not 0 <= number < self._height:
            return None
        return self.kv.get(schema.block_key(number))

    def get_by_hash(self, block_hash: bytes) -> Block | None:
        """The block whose header hash is *block_hash*, None if not stored."""
        raw = self.kv.get(schema.block_hash_key(block_hash))
        if raw is None:
            return None
        (number,) = schema.U64.unpack(raw)
        return self.get(number)

    def locate_tx(self, tx_id: bytes) -> tuple[int, int] | None:
        """(block number, index in block) where *tx_id* first appeared, None if never."""
        raw = self.kv.get(schema.tx_key(tx_id))
        if raw is None:
            return None
        if len(raw) != _TX_LOCATION:
            raise CorruptionError(f"tx index entry for {short_hex(tx_id)} is malformed")
        (number,) = schema.U64.unpack_from(raw)
        (index,) = schema.U32.unpack_from(raw, schema.U64.size)
        return number, index

    def iter_blocks(self, start: int = 0) -> Iterator[Block]:
        """Blocks from number *start* up to the height when called, in order."""
        stop = self._height
        if start >= stop:
            return
        pairs = self.kv.iterate(
            schema.BLOCK, start=schema.block_key(max(start, 0)), stop=schema.block_key(stop)
        )
        for key, raw in pairs:
            (number,) = schema.U64.unpack(key[len(schema.BLOCK) :])
            yield self._decode(number, raw)

    # --- internals ----------------------------------------------------------------------------

    def _forget_staged(self) -> None:
        self._staged.clear()
        self._staged_tx.clear()
        self._staged_in = None

    def _next(self) -> tuple[int, bytes | None]:
        """(number, previous hash) the next block must carry, staged blocks counted."""
        if self._staged:
            return self._staged[-1].number + 1, self._staged[-1].hash()
        return self._height, self._tip_hash

    def _check_order(self, block: Block, batch: WriteBatch | None = None) -> None:
        if self._staged and batch is not self._staged_in:
            self._forget_staged()  # staged into a batch that was abandoned: nothing was written
        height, tip = self._next()
        if block.number != height:
            raise BlockOrderError(f"block {block.number} offered at height {height}")
        expected = GENESIS_PREVIOUS_HASH if tip is None else tip
        if block.header.previous_hash != expected:
            raise BlockOrderError(
                f"block {block.number} has previous hash {short_hex(block.header.previous_hash)},"
                f" the tip is {short_hex(expected)}"
            )

    def _stage(self, block: Block, tx_ids: Sequence[bytes], batch: WriteBatch) -> None:
        number = block.number
        batch.put(schema.block_key(number), encode(block))
        batch.put(schema.block_hash_key(block.hash()), schema.U64.pack(number))
        seen: set[bytes] = set()
        for index, tx_id in enumerate(tx_ids):
            if tx_id in seen or tx_id in self._staged_tx:
                continue  # a duplicate inside this batch: the first location wins
            seen.add(tx_id)
            key = schema.tx_key(tx_id)
            if self.kv.get(key) is None:
                batch.put(key, schema.U64.pack(number) + schema.U32.pack(index))

    def _advance(self, block: Block) -> None:
        self._height = block.number + 1
        self._tip_hash = block.hash()

    @staticmethod
    def _decode(number: int, raw: bytes) -> Block:
        try:
            return decode(raw, Block, max_bytes=_BLOCK_RECORD_BYTES_MAX)
        except RemoteError as e:
            raise CorruptionError(f"stored block {number} does not decode: {e}") from None
