"""Messages between ordering-service members that are not Raft's own.

A member that is not the leader forwards each envelope a client submitted to it with
:class:`ForwardEnvelope` once it has checked it; the leader cuts it into a block (validation
checks it again on every member) and the member answers its client once the block is
applied locally. A Raft snapshot of the ordering
service is a :class:`ChainPoint`; a member catching up from one has the blocks streamed from a peer.
A gateway asks the other endorsers for their endorsement with :class:`EndorseRequest` on the
same streams, and each answers with :class:`EndorseAnswer`.
"""

from __future__ import annotations

from protocol import limits
from protocol.codec import field, message


@message("forward_envelope")
class ForwardEnvelope:
    """An envelope a member received from a client, forwarded to the leader it knows."""

    sender: str = field(max_len=limits.ID_CHARS_MAX)
    recipient: str = field(max_len=limits.ID_CHARS_MAX)
    envelope: bytes = field(max_len=limits.ENVELOPE_BYTES_MAX)


@message("endorse_request")
class EndorseRequest:
    """A gateway's request that the recipient endorse a client's signed proposal, once the
    recipient's chain holds ``chain_height`` blocks (the gateway's own when it asked; see
    :mod:`node.chain_watch`)."""

    sender: str = field(max_len=limits.ID_CHARS_MAX)
    recipient: str = field(max_len=limits.ID_CHARS_MAX)
    request_id: int = field(min=0)
    proposal: bytes = field(max_len=limits.ENVELOPE_BYTES_MAX)  # a SignedProposal's bytes
    chain_height: int = field(min=0)


@message("endorse_answer")
class EndorseAnswer:
    """An endorser's answer to :class:`EndorseRequest` ``request_id``: its EndorseReply's
    bytes, or (``reply`` empty) why it refused."""

    sender: str = field(max_len=limits.ID_CHARS_MAX)
    recipient: str = field(max_len=limits.ID_CHARS_MAX)
    request_id: int = field(min=0)
    reply: bytes = field(max_len=limits.ENVELOPE_BYTES_MAX)
    refusal: str = field(max_len=limits.REASON_CHARS_MAX)


@message("chain_point")
class ChainPoint:
    """The ordering service's snapshot: the chain up to ``height`` blocks ending at ``tip``.

    A member that receives it pulls the blocks it lacks from a peer, checks them against
    this point and the network's certificates, and commits them before it installs the
    snapshot.
    """

    height: int = field(min=1)
    tip: bytes = field(exact_len=limits.HASH_BYTES)
