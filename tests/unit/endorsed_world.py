"""A network in memory for endorsement and validation tests: a root CA, a ministry orderer
(not an endorser) and four hospitals, each with an endorsing node whose certificate signs,
and a doctor at northgate who creates proposals."""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import UTC, datetime

from identity.certs import (
    CertificateAuthority,
    cert_to_der,
    create_org_ca,
    create_root_ca,
    issue_node_cert,
    issue_user_cert,
)
from identity.crl import make_crl
from identity.keys import SigningKey
from identity.validate import TrustStore
from node.genesis import build_genesis
from node.metrics import Metrics
from node.ordering import OrderingNode
from node.store import install_genesis
from protocol import limits
from protocol.codec import encode
from protocol.config import BatchConfig, MemberConfig, NetworkConfig, OrgConfig
from protocol.hashing import sha256
from protocol.transaction import (
    Endorsement,
    Envelope,
    KVRead,
    KVWrite,
    Proposal,
    ProposalResponse,
    RwSet,
    Transaction,
    proposal_hash,
)
from storage.memory import MemoryKV
from storage.schema import open_store

NOW = datetime(2026, 11, 1, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
HOSPITALS = ("northgate", "riverside", "stmarys", "westfield")


@dataclasses.dataclass
class World:
    config: NetworkConfig
    trust: TrustStore
    keys: dict[str, SigningKey]  # node id -> node key
    serials: dict[str, int]  # node id -> certificate serial
    creator: bytes
    creator_key: SigningKey
    creator_serial: int

    def transaction(
        self,
        signers: tuple[str, ...],
        *,
        response: bytes = b"ok",
        reads: tuple[KVRead, ...] = (),
        writes: tuple[KVWrite, ...] | None = None,
        network_id: str | None = None,
    ) -> Transaction:
        if writes is None:
            writes = (KVWrite(namespace="registry", key=b"k", value=b"v", is_delete=False),)
        proposal = Proposal(
            network_id=network_id or self.config.network_id,
            contract="registry",
            function="put",
            args=(b"k",),
            creator=self.creator,
            nonce=os.urandom(24),
            timestamp_ms=int(NOW.timestamp() * 1000),
        )
        answer = ProposalResponse(
            proposal_hash=proposal_hash(proposal),
            status=200,
            message="",
            result=response,
            rw_set=RwSet(reads=reads, writes=writes),
            events=(),
        )
        return Transaction(
            proposal=proposal,
            response=answer,
            endorsements=tuple(self.endorse(node, answer) for node in signers),
        )

    def envelope(self, tx: Transaction, key: SigningKey | None = None) -> Envelope:
        """*tx* signed by its creator (or by *key*, to forge)."""
        return Envelope(transaction=tx, signature=(key or self.creator_key).sign(encode(tx)))

    def endorse(self, node: str, answer: ProposalResponse) -> Endorsement:
        return Endorsement(
            cert_hash=sha256(self.cert(node)), signature=self.keys[node].sign(encode(answer))
        )

    def cert(self, node: str) -> bytes:
        member = self.config.member(node)
        assert member is not None
        return member.node_cert

    def ordering_node(self, node_id: str, voters: tuple[str, ...]) -> OrderingNode:
        """*node_id*'s ordering node over in-memory stores holding this network's genesis
        block, in a Raft cluster of *voters*; it sends nothing until the test sets ``send``."""
        stores = open_store(MemoryKV())
        genesis = build_genesis(
            self.config,
            admin_key=self.creator_key,
            admin_cert_der=self.creator,
            signer_key=self.keys["ministry"],
            signer_cert_der=self.cert("ministry"),
            timestamp_ms=int(time.time() * 1000),
            nonce=os.urandom(limits.NONCE_BYTES),
        )
        install_genesis(stores, genesis)
        node = OrderingNode(
            node_id=node_id,
            network=self.config,
            stores=stores,
            trust=self.trust,
            key=self.keys[node_id],
            cert_der=self.cert(node_id),
            metrics=Metrics(),
            bootstrap_voters=voters,
        )
        node.send = lambda msg: None
        return node


def make_world() -> World:
    root_key = SigningKey.generate()
    root = CertificateAuthority(create_root_ca("root", root_key, now=NOW), root_key)
    cas, orgs, members, keys, serials = [], [], [], {}, {}
    creator = b""
    for port, org in enumerate(("ministry", *HOSPITALS)):
        ca_key = SigningKey.generate()
        ca = CertificateAuthority(create_org_ca(root, org, org, ca_key.public_key, now=NOW), ca_key)
        cas.append(ca.cert)
        kind = "ministry" if org == "ministry" else "hospital"
        crl = make_crl(ca, (), number=1, this_update=NOW)
        orgs.append(
            OrgConfig(org_id=org, name=org, kind=kind, ca_cert=cert_to_der(ca.cert), crl=crl)
        )
        key = SigningKey.generate()
        cert = issue_node_cert(ca, org, org, key.public_key, ["127.0.0.1"], now=NOW)
        keys[org], serials[org] = key, cert.serial_number
        members.append(
            MemberConfig(
                node_id=org,
                org_id=org,
                host="127.0.0.1",
                p2p_port=20000 + 2 * port,
                api_port=20001 + 2 * port,
                node_cert=cert_to_der(cert),
                endorser=org != "ministry",
            )
        )
        if org == "northgate":
            doctor_key = SigningKey.generate()
            doctor = issue_user_cert(
                ca, org, "doctor@northgate", "doctor", doctor_key.public_key, now=NOW
            )
            creator = cert_to_der(doctor)
            creator_key, creator_serial = doctor_key, doctor.serial_number
    config = NetworkConfig(
        network_id="net",
        sequence=0,
        root_ca=cert_to_der(root.cert),
        orgs=tuple(orgs),
        members=tuple(members),
        endorsement_rule="2f+1",
        batch=BatchConfig(max_txs=10, max_bytes=1 << 21, timeout_ms=50),
        contracts=(),
    )
    return World(
        config, TrustStore(root.cert, cas), keys, serials, creator, creator_key, creator_serial
    )
