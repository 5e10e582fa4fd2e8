"""Hypothesis strategies for every protocol message kind, for any test that needs messages.

``STRATEGIES`` maps each registered message class to a strategy of *valid* instances (they
pass their constructor checks, including cross-field rules such as "exactly one ministry");
``strategy_for(cls)`` looks one up and ``messages()`` draws any kind. A test in
``test_codec.py`` fails when a kind is registered without an entry here, so add one with
every new message class.

Sizes stay small (a few items, short byte strings) so that a hundred examples take
milliseconds; ints range over the whole field range so that every msgpack int width is
exercised. Limits at their edges are tested in ``test_protocol_messages.py``, not here.

``blocks()`` draws blocks whose header commits to their transactions (tx_count, data_hash)
and whose transactions are canonical envelopes and configuration envelopes, so
``protocol.block.data_problems(block)`` is empty; signatures are arbitrary bytes.

Import it as ``from tests.unit.strategies import messages, strategy_for, blocks``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from protocol import limits
from protocol.batch import FrameBatch
from protocol.block import Block, BlockHeader, BlockMetadata, make_header
from protocol.client_stream import KINDS, ClientAnswer, ClientRequest, CommitReceipt
from protocol.codec import INT64_MIN, UINT64_MAX, encode
from protocol.config import (
    ENDORSEMENT_RULES,
    BatchConfig,
    ConfigEnvelope,
    ConfigUpdate,
    ContractPin,
    MemberConfig,
    NetworkConfig,
    OrgConfig,
)
from protocol.ordering import (
    ChainPoint,
    EndorseAnswer,
    EndorseRequest,
    ForwardEnvelope,
)
from protocol.transaction import (
    ContractEvent,
    Endorsement,
    EndorseReply,
    Envelope,
    KVRead,
    KVWrite,
    Proposal,
    ProposalResponse,
    RwSet,
    SignedProposal,
    Transaction,
)
from tests.sim.raft_strategies import RAFT_STRATEGIES

__all__ = [
    "STRATEGIES",
    "blocks",
    "hashes",
    "ids",
    "messages",
    "network_configs",
    "strategy_for",
    "u64",
]

# --- primitives -----------------------------------------------------------------------------

# Any Unicode text hypothesis can draw (it never draws lone surrogates, which the codec
# rejects), short enough for every id field. Non-ASCII on purpose: str8 vs fixstr is decided
# by UTF-8 length, not character count.
ids = st.text(max_size=12)
nonempty_ids = st.text(min_size=1, max_size=12)
short_bytes = st.binary(max_size=40)
certs = st.binary(max_size=80)  # stands in for DER; the codec only bounds the length
signatures = st.binary(max_size=limits.SIGNATURE_BYTES_MAX)
hashes = st.binary(min_size=limits.HASH_BYTES, max_size=limits.HASH_BYTES)
nonces = st.binary(min_size=limits.NONCE_BYTES, max_size=limits.NONCE_BYTES)
u64 = st.integers(min_value=0, max_value=UINT64_MAX)
i64 = st.integers(min_value=INT64_MIN, max_value=UINT64_MAX)  # the codec's whole int range


def _tuples(elements: st.SearchStrategy[Any], max_size: int = 3) -> st.SearchStrategy[tuple]:
    return st.lists(elements, max_size=max_size).map(tuple)


# --- proposals and transactions -------------------------------------------------------------

proposals = st.builds(
    Proposal,
    network_id=ids,
    contract=ids,
    function=ids,
    args=_tuples(short_bytes, max_size=4),
    creator=certs,
    nonce=nonces,
    timestamp_ms=u64,
)
signed_proposals = st.builds(SignedProposal, proposal=proposals, signature=signatures)
kv_reads = st.builds(
    KVRead,
    namespace=ids,
    key=short_bytes,
    exists=st.booleans(),
    version_block=u64,
    version_tx=u64,
)
kv_writes = st.builds(
    KVWrite, namespace=ids, key=short_bytes, value=short_bytes, is_delete=st.booleans()
)
rw_sets = st.builds(RwSet, reads=_tuples(kv_reads), writes=_tuples(kv_writes))
contract_events = st.builds(ContractEvent, name=ids, payload=short_bytes)
proposal_responses = st.builds(
    ProposalResponse,
    proposal_hash=hashes,
    status=st.integers(min_value=0, max_value=999),
    message=st.text(max_size=20),
    result=short_bytes,
    rw_set=rw_sets,
    events=_tuples(contract_events, max_size=2),
)
endorsements = st.builds(Endorsement, cert_hash=hashes, signature=signatures)
transactions = st.builds(
    Transaction,
    proposal=proposals,
    response=proposal_responses,
    endorsements=_tuples(endorsements, max_size=4),
)
envelopes = st.builds(Envelope, transaction=transactions, signature=signatures)
endorse_replies = st.builds(
    EndorseReply,
    response=proposal_responses.map(encode),
    endorsements=_tuples(endorsements, max_size=1),
)

# --- network configuration ------------------------------------------------------------------

org_configs = st.builds(
    OrgConfig,
    org_id=nonempty_ids,
    name=st.text(max_size=20),
    kind=st.sampled_from(("ministry", "hospital")),
    ca_cert=certs,
)
ports = st.integers(min_value=1, max_value=65535)
member_configs = (
    st.tuples(ports, ports)
    .filter(lambda pp: pp[0] != pp[1])
    .flatmap(
        lambda pp: st.builds(
            MemberConfig,
            node_id=nonempty_ids,
            org_id=ids,
            host=st.text(max_size=20),
            p2p_port=st.just(pp[0]),
            api_port=st.just(pp[1]),
            node_cert=certs,
            endorser=st.booleans(),
        )
    )
)
batch_configs = st.builds(
    BatchConfig,
    max_txs=st.integers(min_value=1, max_value=limits.BLOCK_TXS_MAX),
    max_bytes=st.integers(min_value=limits.ENVELOPE_BYTES_MAX, max_value=limits.BLOCK_BYTES_MAX),
    timeout_ms=st.integers(min_value=1, max_value=60_000),
)
contract_pins = st.builds(ContractPin, name=ids, version=ids, code_hash=hashes)


@st.composite
def network_configs(draw: st.DrawFn, network_id: str | None = None) -> NetworkConfig:
    """A configuration that passes NetworkConfig.check: one ministry, unique ids and endpoints."""
    org_ids = draw(st.lists(nonempty_ids, min_size=1, max_size=4, unique=True))
    ministry = draw(st.sampled_from(org_ids))
    orgs = tuple(
        OrgConfig(
            org_id=org_id,
            name=draw(st.text(max_size=20)),
            kind="ministry" if org_id == ministry else "hospital",
            ca_cert=draw(certs),
            crl=draw(st.binary(max_size=64)),
        )
        for org_id in org_ids
    )
    node_ids = draw(st.lists(nonempty_ids, min_size=1, max_size=4, unique=True))
    # Distinct ports for every endpoint make (host, port) pairs distinct whatever the hosts.
    all_ports = draw(
        st.lists(ports, min_size=2 * len(node_ids), max_size=2 * len(node_ids), unique=True)
    )
    members = tuple(
        MemberConfig(
            node_id=node_id,
            org_id=draw(st.sampled_from(org_ids)),
            host=draw(st.sampled_from(("127.0.0.1", "node.example", "ünïcode.example"))),
            p2p_port=all_ports[2 * i],
            api_port=all_ports[2 * i + 1],
            node_cert=draw(certs),
            endorser=draw(st.booleans()),
        )
        for i, node_id in enumerate(node_ids)
    )
    pins = draw(st.lists(contract_pins, max_size=3, unique_by=lambda c: c.name))
    return NetworkConfig(
        network_id=network_id if network_id is not None else draw(nonempty_ids),
        sequence=draw(u64),
        root_ca=draw(certs),
        orgs=orgs,
        members=members,
        endorsement_rule=draw(st.sampled_from(ENDORSEMENT_RULES)),
        batch=draw(batch_configs),
        contracts=tuple(pins),
    )


@st.composite
def config_updates(draw: st.DrawFn) -> ConfigUpdate:
    config = draw(network_configs())
    return ConfigUpdate(
        network_id=config.network_id,
        config=config,
        creator=draw(certs),
        nonce=draw(nonces),
        timestamp_ms=draw(u64),
    )


config_envelopes = st.builds(ConfigEnvelope, update=config_updates(), signature=signatures)

# --- blocks ---------------------------------------------------------------------------------

block_headers = st.builds(
    BlockHeader,
    number=u64,
    previous_hash=hashes,
    data_hash=hashes,
    tx_count=st.integers(min_value=0, max_value=limits.BLOCK_TXS_MAX),
    timestamp_ms=u64,
)
block_metadatas = st.builds(
    BlockMetadata, signer=certs, signature=signatures, validation_codes=short_bytes
)


@st.composite
def blocks(draw: st.DrawFn, max_txs: int = 3) -> Block:
    """A block whose header commits to its transactions: ``data_problems(block) == []``."""
    txs = tuple(
        draw(st.lists(st.one_of(envelopes, config_envelopes).map(encode), max_size=max_txs))
    )
    header = make_header(draw(u64), draw(hashes), txs, draw(u64))
    codes = draw(st.sampled_from((b"", None)))
    if codes is None:
        codes = bytes(draw(st.lists(st.integers(0, 255), min_size=len(txs), max_size=len(txs))))
    metadata = BlockMetadata(signer=draw(certs), signature=draw(signatures), validation_codes=codes)
    return Block(header=header, transactions=txs, metadata=metadata)


chain_points = st.builds(ChainPoint, height=st.integers(1, UINT64_MAX), tip=hashes)
frame_batches = st.builds(FrameBatch, frames=_tuples(short_bytes))
forward_envelopes = st.builds(
    ForwardEnvelope, sender=nonempty_ids, recipient=nonempty_ids, envelope=short_bytes
)
endorse_requests = st.builds(
    EndorseRequest,
    sender=nonempty_ids,
    recipient=nonempty_ids,
    request_id=st.integers(0, UINT64_MAX),
    proposal=short_bytes,
    chain_height=st.integers(0, UINT64_MAX),
)
endorse_answers = st.builds(
    EndorseAnswer,
    sender=nonempty_ids,
    recipient=nonempty_ids,
    request_id=st.integers(0, UINT64_MAX),
    reply=short_bytes,
    refusal=st.text(max_size=40),
)
client_requests = st.builds(
    ClientRequest,
    request_id=st.integers(0, UINT64_MAX),
    kind=st.sampled_from(KINDS),
    body=short_bytes,
)
client_answers = st.builds(
    ClientAnswer,
    request_id=st.integers(0, UINT64_MAX),
    status=st.integers(100, 599),
    body=short_bytes,
)
commit_receipts = st.builds(
    CommitReceipt,
    tx_id=hashes,
    block=st.integers(0, UINT64_MAX),
    index=st.integers(0, limits.BLOCK_TXS_MAX),
    duplicate=st.booleans(),
    code=st.integers(0, 255),
    reason=st.text(max_size=40),
)


# --- the registry ---------------------------------------------------------------------------

STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    Proposal: proposals,
    SignedProposal: signed_proposals,
    KVRead: kv_reads,
    KVWrite: kv_writes,
    RwSet: rw_sets,
    ContractEvent: contract_events,
    ProposalResponse: proposal_responses,
    Endorsement: endorsements,
    EndorseReply: endorse_replies,
    Transaction: transactions,
    Envelope: envelopes,
    OrgConfig: org_configs,
    MemberConfig: member_configs,
    BatchConfig: batch_configs,
    ContractPin: contract_pins,
    NetworkConfig: network_configs(),
    ConfigUpdate: config_updates(),
    ConfigEnvelope: config_envelopes,
    BlockHeader: block_headers,
    BlockMetadata: block_metadatas,
    Block: blocks(),
    ForwardEnvelope: forward_envelopes,
    FrameBatch: frame_batches,
    EndorseRequest: endorse_requests,
    EndorseAnswer: endorse_answers,
    ChainPoint: chain_points,
    ClientRequest: client_requests,
    ClientAnswer: client_answers,
    CommitReceipt: commit_receipts,
}


# The Raft wire messages' strategies live beside the simulator that also uses them.
STRATEGIES.update(RAFT_STRATEGIES)


def strategy_for(cls: type) -> st.SearchStrategy[Any]:
    """The strategy of valid instances of message class *cls* (KeyError if there is none)."""
    return STRATEGIES[cls]


def messages() -> st.SearchStrategy[Any]:
    """Any message of any registered kind."""
    return st.one_of(*(STRATEGIES[cls] for cls in sorted(STRATEGIES, key=_tag)))


def _tag(cls: type) -> str:
    return cls.TAG  # type: ignore[attr-defined, no-any-return]
