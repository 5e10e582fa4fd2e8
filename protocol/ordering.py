"""Messages between ordering-service members that are not Raft's own.

A member that is not the leader forwards each envelope a client submitted to it with
:class:`ForwardEnvelope`; the leader checks it again, cuts it into a block and the member
answers its client once the block is applied locally. A Raft snapshot of the ordering
service is a :class:`ChainPoint`; a member catching up from one pulls :class:`BlockBatch`es.
"""

from __future__ import annotations

from protocol import limits
from protocol.codec import field, message
from protocol.errors import FieldError

# Blocks per catch-up response: one request per 256 blocks keeps round trips few without
# holding many large blocks in memory at once; bytes keep the response within one frame.
BLOCK_BATCH_MAX = 256
BLOCK_BATCH_BYTES_MAX = limits.BLOCK_BYTES_MAX


@message("forward_envelope")
class ForwardEnvelope:
    """An envelope a member received from a client, forwarded to the leader it knows."""

    sender: str = field(max_len=limits.ID_CHARS_MAX)
    recipient: str = field(max_len=limits.ID_CHARS_MAX)
    envelope: bytes = field(max_len=limits.ENVELOPE_BYTES_MAX)


@message("chain_point")
class ChainPoint:
    """The ordering service's snapshot: the chain up to ``height`` blocks ending at ``tip``.

    A member that receives it pulls the blocks it lacks from a peer, checks them against
    this point and the network's certificates, and commits them before it installs the
    snapshot.
    """

    height: int = field(min=1)
    tip: bytes = field(exact_len=limits.HASH_BYTES)


@message("block_batch")
class BlockBatch:
    """Consecutive blocks' canonical bytes, as a member serves them to a peer catching up."""

    start: int = field(min=0)
    blocks: tuple[bytes, ...] = field(max_len=BLOCK_BATCH_MAX, item_max_len=limits.BLOCK_BYTES_MAX)

    def check(self) -> None:
        if sum(map(len, self.blocks)) > BLOCK_BATCH_BYTES_MAX:
            raise FieldError("block_batch", "blocks", f"over {BLOCK_BATCH_BYTES_MAX} bytes")
