"""Signed envelopes at the edge: build one for a client, check one arriving at a node.

Until contracts and endorsement exist (issue 4), the ordering service carries *opaque*
envelopes: a proposal for the reserved contract ``_opaque`` whose single argument is the
payload, with an empty response and no endorsements, signed by its creator. The check at
ingress is the one every later envelope gets too: canonical decoding within the size limit,
the network id, a creator certificate that chains to the network root (unrevoked, fit for
signing), and the creator's signature over the transaction's canonical bytes.
"""

from __future__ import annotations

import os
from datetime import datetime

from consensus.config_change import update_problem
from identity.keys import SigningKey
from identity.validate import Identity, Purpose, TrustStore
from protocol import limits
from protocol.block import decode_tx
from protocol.codec import decode, encode
from protocol.config import ConfigEnvelope, NetworkConfig
from protocol.errors import FieldError
from protocol.transaction import (
    Envelope,
    Proposal,
    ProposalResponse,
    RwSet,
    Transaction,
    proposal_hash,
)

OPAQUE_CONTRACT = "_opaque"
OPAQUE_FUNCTION = "submit"


def opaque_envelope(
    payload: bytes, *, network_id: str, key: SigningKey, cert_der: bytes, timestamp_ms: int
) -> Envelope:
    """An envelope carrying *payload* for the ordering service, signed with *key*."""
    if len(payload) > limits.ARG_BYTES_MAX:
        raise FieldError("proposal", "args[0]", f"payload over the limit {limits.ARG_BYTES_MAX}")
    proposal = Proposal(
        network_id=network_id,
        contract=OPAQUE_CONTRACT,
        function=OPAQUE_FUNCTION,
        args=(payload,),
        creator=cert_der,
        nonce=os.urandom(limits.NONCE_BYTES),
        timestamp_ms=timestamp_ms,
    )
    response = ProposalResponse(
        proposal_hash=proposal_hash(proposal),
        status=200,
        message="",
        result=b"",
        rw_set=RwSet(reads=(), writes=()),
        events=(),
    )
    transaction = Transaction(proposal=proposal, response=response, endorsements=())
    return Envelope(transaction=transaction, signature=key.sign(encode(transaction)))


def check_envelope(
    raw: bytes,
    *,
    trust: TrustStore,
    network_id: str,
    at: datetime,
    revoked: frozenset[int] = frozenset(),
) -> tuple[Envelope, Identity]:
    """Decode and authenticate an envelope; RemoteError (typed) for anything wrong with it."""
    envelope = decode(raw, Envelope, max_bytes=limits.ENVELOPE_BYTES_MAX)
    return envelope, authenticate_envelope(
        envelope, trust=trust, network_id=network_id, at=at, revoked=revoked
    )


def authenticate_envelope(
    envelope: Envelope,
    *,
    trust: TrustStore,
    network_id: str,
    at: datetime,
    revoked: frozenset[int] = frozenset(),
) -> Identity:
    """The creator of a decoded envelope, if its network, certificate and signature check out."""
    proposal = envelope.transaction.proposal
    if proposal.network_id != network_id:
        raise FieldError("proposal", "network_id", "names another network")
    creator = trust.validate(proposal.creator, at=at, revoked=revoked, purpose=Purpose.SIGNING)
    trust.verify_signature(creator, encode(envelope.transaction), envelope.signature)
    return creator


def check_submission(
    raw: bytes,
    *,
    trust: TrustStore,
    network: NetworkConfig,
    at: datetime,
    revoked: frozenset[int] = frozenset(),
) -> Envelope | ConfigEnvelope:
    """Check anything a client may submit for ordering; returns it decoded.

    An :class:`Envelope` gets :func:`check_envelope` (a creator in *revoked* is refused);
    a :class:`ConfigEnvelope` must follow from *network* by
    :func:`consensus.config_change.update_problem` (FieldError naming why).
    """
    tx = decode_tx(raw)
    if isinstance(tx, ConfigEnvelope):
        problem = update_problem(network, tx, trust)
        if problem is not None:
            raise FieldError("config_envelope", "update", problem)
        return tx
    authenticate_envelope(tx, trust=trust, network_id=network.network_id, at=at, revoked=revoked)
    return tx
