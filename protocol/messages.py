"""Every message kind in one import, so that all tags are registered before decoding."""

from protocol.block import Block, BlockHeader, BlockMetadata, ValidationCode
from protocol.config import (
    BatchConfig,
    ConfigEnvelope,
    ConfigUpdate,
    ContractPin,
    MemberConfig,
    NetworkConfig,
    OrgConfig,
)
from protocol.ordering import ForwardEnvelope
from protocol.transaction import (
    ContractEvent,
    Endorsement,
    Envelope,
    KVRead,
    KVWrite,
    Proposal,
    ProposalResponse,
    RwSet,
    SignedProposal,
    Transaction,
)

__all__ = [
    "BatchConfig",
    "Block",
    "BlockHeader",
    "BlockMetadata",
    "ConfigEnvelope",
    "ConfigUpdate",
    "ContractEvent",
    "ContractPin",
    "Endorsement",
    "Envelope",
    "ForwardEnvelope",
    "KVRead",
    "KVWrite",
    "MemberConfig",
    "NetworkConfig",
    "OrgConfig",
    "Proposal",
    "ProposalResponse",
    "RwSet",
    "SignedProposal",
    "Transaction",
    "ValidationCode",
]
