"""The network configuration: what the genesis block fixes and configuration transactions change.

It names the root CA, the organisations (the ministry and the hospitals) with their CA
certificates, the Raft members with their endpoints and node certificates, which members
endorse, the batch parameters of block cutting and the pinned contracts. A
:class:`ConfigEnvelope` carries a configuration signed by a ministry admin.
"""

from __future__ import annotations

from protocol import limits
from protocol.codec import field, message
from protocol.errors import FieldError
from protocol.hashing import tx_id_of

_ID = limits.ID_CHARS_MAX
_CERT = limits.CERTIFICATE_BYTES_MAX

ORG_KINDS = ("ministry", "hospital")
ENDORSEMENT_RULES = ("2f+1",)  # PBFT-lite: q = 2f+1 of n endorsers, f = (n-1)//3


@message("org_config")
class OrgConfig:
    """One organisation: its id, display name, kind, CA certificate (DER) and that CA's
    current certificate revocation list (DER; every node's TLS checks it, so a network
    whose organisations all publish one refuses a revoked node at the handshake)."""

    org_id: str = field(max_len=_ID)
    name: str = field(max_len=limits.NAME_CHARS_MAX)
    kind: str = field(max_len=_ID)
    ca_cert: bytes = field(max_len=_CERT)
    crl: bytes = field(max_len=limits.CRL_BYTES_MAX)

    def check(self) -> None:
        if not self.org_id:
            raise FieldError("org_config", "org_id", "empty")
        if self.kind not in ORG_KINDS:
            raise FieldError("org_config", "kind", f"must be one of {', '.join(ORG_KINDS)}")


@message("member_config")
class MemberConfig:
    """One Raft member (every node is one); hospital peers also endorse."""

    node_id: str = field(max_len=_ID)
    org_id: str = field(max_len=_ID)
    host: str = field(max_len=limits.HOST_CHARS_MAX)
    p2p_port: int = field(min=1, max=65535)
    api_port: int = field(min=1, max=65535)
    node_cert: bytes = field(max_len=_CERT)
    endorser: bool

    def check(self) -> None:
        if not self.node_id:
            raise FieldError("member_config", "node_id", "empty")
        if self.p2p_port == self.api_port:
            raise FieldError("member_config", "api_port", "equals p2p_port")


@message("batch_config")
class BatchConfig:
    """When the leader cuts a block: at max_txs, at max_bytes, or timeout_ms after the first tx."""

    max_txs: int = field(min=1, max=limits.BLOCK_TXS_MAX)
    max_bytes: int = field(min=limits.ENVELOPE_BYTES_MAX, max=limits.BLOCK_BYTES_MAX)
    timeout_ms: int = field(min=1, max=60_000)


@message("contract_pin")
class ContractPin:
    """A contract the network runs, pinned by name, version and code hash."""

    name: str = field(max_len=_ID)
    version: str = field(max_len=_ID)
    code_hash: bytes = field(exact_len=limits.HASH_BYTES)


@message("network_config")
class NetworkConfig:
    """The whole network configuration at one sequence number (0 in the genesis block)."""

    network_id: str = field(max_len=_ID)
    sequence: int = field(min=0)
    root_ca: bytes = field(max_len=_CERT)
    orgs: tuple[OrgConfig, ...] = field(max_len=limits.ORGS_MAX)
    members: tuple[MemberConfig, ...] = field(max_len=limits.MEMBERS_MAX)
    endorsement_rule: str = field(max_len=_ID)
    batch: BatchConfig
    contracts: tuple[ContractPin, ...] = field(max_len=limits.CONTRACTS_MAX)

    def check(self) -> None:
        kind = "network_config"
        if not self.network_id:
            raise FieldError(kind, "network_id", "empty")
        org_ids = [o.org_id for o in self.orgs]
        if len(set(org_ids)) != len(org_ids):
            raise FieldError(kind, "orgs", "duplicate org_id")
        if sum(o.kind == "ministry" for o in self.orgs) != 1:
            raise FieldError(kind, "orgs", "exactly one ministry org is required")
        node_ids = [m.node_id for m in self.members]
        if len(set(node_ids)) != len(node_ids):
            raise FieldError(kind, "members", "duplicate node_id")
        # DNS names are case-insensitive: "Node1.example" and "node1.example" are one host.
        endpoints = [(m.host.lower(), p) for m in self.members for p in (m.p2p_port, m.api_port)]
        if len(set(endpoints)) != len(endpoints):
            raise FieldError(kind, "members", "two members share a host and port")
        known = set(org_ids)
        for i, m in enumerate(self.members):
            if m.org_id not in known:
                raise FieldError(kind, f"members[{i}].org_id", "names no org")
        if not self.members:
            raise FieldError(kind, "members", "at least one Raft member is required")
        if self.endorsement_rule not in ENDORSEMENT_RULES:
            raise FieldError(kind, "endorsement_rule", f"must be one of {ENDORSEMENT_RULES}")
        names = [c.name for c in self.contracts]
        if len(set(names)) != len(names):
            raise FieldError(kind, "contracts", "duplicate contract name")

    def org(self, org_id: str) -> OrgConfig | None:
        """The org with this id, if any."""
        return next((o for o in self.orgs if o.org_id == org_id), None)

    def member(self, node_id: str) -> MemberConfig | None:
        """The member with this node id, if any."""
        return next((m for m in self.members if m.node_id == node_id), None)


@message("config_update")
class ConfigUpdate:
    """A new configuration proposed by a ministry admin."""

    network_id: str = field(max_len=_ID)
    config: NetworkConfig
    creator: bytes = field(max_len=_CERT)
    nonce: bytes = field(exact_len=limits.NONCE_BYTES)
    timestamp_ms: int = field(min=0)

    def check(self) -> None:
        if self.network_id != self.config.network_id:
            raise FieldError("config_update", "network_id", "differs from config.network_id")

    @property
    def tx_id(self) -> bytes:
        return tx_id_of(self.nonce, self.creator)


@message("config_envelope")
class ConfigEnvelope:
    """A configuration update signed by its creator; the genesis block holds exactly one."""

    update: ConfigUpdate
    signature: bytes = field(max_len=limits.SIGNATURE_BYTES_MAX)

    @property
    def tx_id(self) -> bytes:
        return self.update.tx_id
