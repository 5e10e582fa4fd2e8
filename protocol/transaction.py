"""Proposals, endorsements and envelopes: the messages of the execute-order-validate flow.

A client signs a :class:`Proposal`; each endorser simulates it and signs an
:class:`Endorsement` over the canonical bytes of its :class:`ProposalResponse`, naming itself
by the SHA-256 of its node certificate (the certificate is in the network configuration, so
an envelope does not carry it again: each would cost about 500 bytes, on every node, in the
Raft log and in the chain); the gateway
gathers a quorum of byte-identical responses into a :class:`Transaction`, which the client
signs into an :class:`Envelope`. ``tx_id = sha256(nonce || creator)``.
"""

from __future__ import annotations

from protocol import limits
from protocol.codec import decode, encode, field, message
from protocol.errors import FieldError
from protocol.hashing import sha256, tx_id_of

_ID = limits.ID_CHARS_MAX


@message("proposal")
class Proposal:
    """A client's request to run one contract function; signed by the creator."""

    network_id: str = field(max_len=_ID)
    contract: str = field(max_len=_ID)
    function: str = field(max_len=_ID)
    args: tuple[bytes, ...] = field(max_len=limits.ARGS_MAX, item_max_len=limits.ARG_BYTES_MAX)
    creator: bytes = field(max_len=limits.CERTIFICATE_BYTES_MAX)  # DER X.509 certificate
    nonce: bytes = field(exact_len=limits.NONCE_BYTES)
    timestamp_ms: int = field(min=0)

    @property
    def tx_id(self) -> bytes:
        """sha256(nonce || creator)."""
        return tx_id_of(self.nonce, self.creator)


@message("signed_proposal")
class SignedProposal:
    """A proposal with the creator's signature over its canonical bytes."""

    proposal: Proposal
    signature: bytes = field(max_len=limits.SIGNATURE_BYTES_MAX)


@message("kv_read")
class KVRead:
    """One key read during simulation, with the committed version seen (absent: exists=False)."""

    namespace: str = field(max_len=_ID)
    key: bytes = field(max_len=limits.STATE_KEY_BYTES_MAX)
    exists: bool
    version_block: int = field(min=0)
    version_tx: int = field(min=0)


@message("kv_write")
class KVWrite:
    """One key written (or deleted) by a simulated transaction."""

    namespace: str = field(max_len=_ID)
    key: bytes = field(max_len=limits.STATE_KEY_BYTES_MAX)
    value: bytes = field(max_len=limits.STATE_VALUE_BYTES_MAX)
    is_delete: bool


@message("rw_set")
class RwSet:
    """What a simulation read (with versions) and wrote."""

    reads: tuple[KVRead, ...] = field(max_len=limits.RW_SET_KEYS_MAX)
    writes: tuple[KVWrite, ...] = field(max_len=limits.RW_SET_KEYS_MAX)

    def check(self) -> None:
        if len(self.reads) + len(self.writes) > limits.RW_SET_KEYS_MAX:
            raise FieldError("rw_set", "reads+writes", f"over the limit {limits.RW_SET_KEYS_MAX}")


@message("contract_event")
class ContractEvent:
    """An event a contract emitted; delivered to listeners once the transaction commits."""

    name: str = field(max_len=_ID)
    payload: bytes = field(max_len=limits.RESULT_BYTES_MAX)


@message("proposal_response")
class ProposalResponse:
    """An endorser's simulation result; endorsers of one quorum agree on it byte for byte."""

    proposal_hash: bytes = field(exact_len=limits.HASH_BYTES)
    status: int = field(min=0, max=999)
    message: str = field(max_len=limits.REASON_CHARS_MAX)
    result: bytes = field(max_len=limits.RESULT_BYTES_MAX)
    rw_set: RwSet
    events: tuple[ContractEvent, ...] = field(max_len=limits.EVENTS_MAX)


@message("endorsement")
class Endorsement:
    """An endorser's signature over the canonical response bytes, and which endorser made it:
    the SHA-256 of its DER node certificate, as the network configuration holds it."""

    cert_hash: bytes = field(exact_len=limits.HASH_BYTES)
    signature: bytes = field(max_len=limits.SIGNATURE_BYTES_MAX)


@message("endorse_reply")
class EndorseReply:
    """An endorser's answer to a signed proposal: its response, as the canonical bytes its
    endorsement signs, and that endorsement when the contract answered 200 (none for a
    refusal or an unknown function).

    The response travels as the signed bytes themselves, so that a gateway compares
    endorsers' answers and checks their signatures without decoding and re-encoding each,
    and decodes only the one a quorum agreed on (:meth:`decoded_response`)."""

    response: bytes = field(max_len=limits.ENVELOPE_BYTES_MAX)
    endorsements: tuple[Endorsement, ...] = field(max_len=1)

    def decoded_response(self) -> ProposalResponse:
        """The response these bytes encode (a RemoteError if they are not one)."""
        return decode(self.response, ProposalResponse, max_bytes=limits.ENVELOPE_BYTES_MAX)


@message("transaction")
class Transaction:
    """A proposal, the agreed response and the endorsements that vouch for it."""

    proposal: Proposal
    response: ProposalResponse
    endorsements: tuple[Endorsement, ...] = field(max_len=limits.ENDORSEMENTS_MAX)

    @property
    def tx_id(self) -> bytes:
        return self.proposal.tx_id


@message("envelope")
class Envelope:
    """A transaction signed by its creator: what clients submit and blocks carry."""

    transaction: Transaction
    signature: bytes = field(max_len=limits.SIGNATURE_BYTES_MAX)

    @property
    def tx_id(self) -> bytes:
        return self.transaction.proposal.tx_id


def proposal_hash(proposal: Proposal, canonical: bytes | None = None) -> bytes:
    """The hash an endorsement's response commits to; *canonical* is ``encode(proposal)``
    when the caller already has it (the endorser, which verified the creator's signature
    over those bytes)."""
    return sha256(encode(proposal) if canonical is None else canonical)
