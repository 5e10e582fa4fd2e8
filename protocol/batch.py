"""A frame of several messages on a member stream.

What a node sends one peer in the same pass of its event loop, after the first message of
that pass, may travel together in one :class:`FrameBatch` (see :mod:`node.bursts`); the
receiver takes each message as if it had come alone.
"""

from __future__ import annotations

from protocol import limits
from protocol.codec import field, message

# Messages one FrameBatch may carry: bursts to one peer in one event-loop pass were about 20
# messages at 512 closed-loop clients; a batch also stays within MESSAGE_BYTES_MAX.
FRAME_BATCH_MESSAGES_MAX = 1024


@message("frame_batch")
class FrameBatch:
    """Several messages in one stream frame, in the order they were sent: each is a
    message's canonical bytes, checked on arrival as if it had come alone. A batch names no
    sender or recipient of its own (a member's messages do), and holds no batch."""

    frames: tuple[bytes, ...] = field(
        max_len=FRAME_BATCH_MESSAGES_MAX, item_max_len=limits.MESSAGE_BYTES_MAX
    )
