"""Building configuration updates that add or remove a Raft member (the ministry's job).

The update is an ordinary :class:`protocol.config.ConfigEnvelope`: the current
configuration with one member added or removed and the next sequence number, signed by a
ministry admin. Members check it with :func:`consensus.config_change.update_problem` at
ingress and again when they apply its block; the leader then moves Raft's membership to
match (learner first, voter once caught up).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from identity.certs import cert_to_der
from identity.keys import SigningKey
from identity.keystore import read_cert
from node.config import load_node_config
from protocol import limits
from protocol.codec import encode, replace
from protocol.config import (
    ConfigEnvelope,
    ConfigUpdate,
    ContractPin,
    MemberConfig,
    NetworkConfig,
    OrgConfig,
)
from protocol.errors import ConfigError


def member_from_node_dir(node_dir: Path, config: NetworkConfig) -> MemberConfig:
    """The member entry for the node laid out in *node_dir* (its node.toml and node.pem)."""
    node = load_node_config(node_dir / "node.toml")
    org = config.org(node.org_id)
    if org is None:
        raise ConfigError(f"{node.path}: org {node.org_id} is not in the network")
    return MemberConfig(
        node_id=node.node_id,
        org_id=node.org_id,
        host=node.listen.host,
        p2p_port=node.listen.p2p_port,
        api_port=node.listen.api_port,
        node_cert=cert_to_der(read_cert(node.tls.cert)),
        # One endorser per hospital: the quorum counts hospitals, so a second node of the
        # same hospital orders and validates but does not endorse.
        endorser=org.kind == "hospital"
        and not any(m.endorser and m.org_id == org.org_id for m in config.members),
    )


def with_member_added(config: NetworkConfig, member: MemberConfig) -> NetworkConfig:
    """*config* with *member* added and the next sequence number."""
    if config.member(member.node_id) is not None:
        raise ConfigError(f"{member.node_id} is already a member")
    return replace(config, sequence=config.sequence + 1, members=(*config.members, member))


def with_org_added(config: NetworkConfig, org: OrgConfig) -> NetworkConfig:
    """*config* with organisation *org* added and the next sequence number."""
    if config.org(org.org_id) is not None:
        raise ConfigError(f"there is already an organisation {org.org_id}")
    return replace(config, sequence=config.sequence + 1, orgs=(*config.orgs, org))


def with_contract_pinned(config: NetworkConfig, pin: ContractPin) -> NetworkConfig:
    """*config* pinning *pin* (in place of an earlier pin of its name, or last) with the
    next sequence number."""
    pins = list(config.contracts)
    at = next((i for i, p in enumerate(pins) if p.name == pin.name), None)
    if at is not None and pins[at] == pin:
        raise ConfigError(f"{pin.name} {pin.version} is pinned with this code already")
    if at is None:
        pins.append(pin)
    else:
        pins[at] = pin
    return replace(config, sequence=config.sequence + 1, contracts=tuple(pins))


def with_crl(config: NetworkConfig, org_id: str, crl: bytes) -> NetworkConfig:
    """*config* with *crl* as organisation *org_id*'s revocation list and the next sequence."""
    org = config.org(org_id)
    if org is None:
        raise ConfigError(f"no organisation {org_id}")
    orgs = tuple(replace(o, crl=crl) if o is org else o for o in config.orgs)
    return replace(config, sequence=config.sequence + 1, orgs=orgs)


def with_member_removed(config: NetworkConfig, node_id: str) -> NetworkConfig:
    """*config* without member *node_id* and with the next sequence number."""
    if config.member(node_id) is None:
        raise ConfigError(f"{node_id} is not a member")
    members = tuple(m for m in config.members if m.node_id != node_id)
    if not members:
        raise ConfigError("the last member cannot be removed")
    return replace(config, sequence=config.sequence + 1, members=members)


def signed_update(config: NetworkConfig, key: SigningKey, cert_der: bytes) -> ConfigEnvelope:
    """A configuration envelope for *config*, signed by the admin holding *key*."""
    update = ConfigUpdate(
        network_id=config.network_id,
        config=config,
        creator=cert_der,
        nonce=os.urandom(limits.NONCE_BYTES),
        timestamp_ms=int(time.time() * 1000),
    )
    return ConfigEnvelope(update=update, signature=key.sign(encode(update)))
