"""`medledger network init`: lay out a complete network in one directory.

The ministry's root CA signs one CA per organisation; each organisation CA signs its node's
certificate (server and client auth, SAN for the host, localhost and 127.0.0.1) and an admin
identity. The genesis block fixes the configuration; every node's database starts with it
committed. Layout of the output directory::

    network.toml                 what the CLI reads to find the nodes
    genesis.block                block 0, canonical bytes
    ca/root.pem  ca/root.key     the ministry's root CA
    orgs/ORG/ca.pem ca.key       each organisation's CA
    orgs/ORG/admin/admin.pem admin.key
    nodes/NODE/node.toml node.pem node.key data/

Private keys are written 0600, PKCS#8, encrypted when a passphrase is given.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tomllib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509

from chaincode.builtin import builtin_pins
from identity.certs import (
    CertificateAuthority,
    cert_to_der,
    check_id,
    create_org_ca,
    create_root_ca,
    issue_node_cert,
    issue_user_cert,
)
from identity.crl import make_crl
from identity.keys import SigningKey
from identity.keystore import read_cert, read_signing_key, write_cert, write_private_key
from node.config import ListenConfig, node_config_toml
from node.genesis import build_genesis
from node.profile import PORTS_PER_NODE, Profile, choose_base_port
from node.store import install_genesis, open_node_store
from protocol import limits
from protocol.block import Block
from protocol.codec import decode, encode
from protocol.config import MemberConfig, NetworkConfig, OrgConfig
from protocol.errors import ConfigError

NETWORK_FILE = "network.toml"
GENESIS_FILE = "genesis.block"


@dataclasses.dataclass(frozen=True, slots=True)
class NodeEntry:
    """One node of an initialised network, as network.toml lists it."""

    node_id: str
    org_id: str
    role: str
    host: str
    p2p_port: int
    api_port: int
    config: Path


@dataclasses.dataclass(frozen=True, slots=True)
class InitOptions:
    """How to initialise: where, over what, with which passphrase, at what time."""

    out: Path
    force: bool
    now: datetime
    passphrase: bytes | None = None
    passphrase_env: str = ""  # the variable a node reads its passphrase from


def prepare_out_dir(out: Path, *, force: bool) -> None:
    """Refuse a non-empty *out* unless *force*; with force, only a former network is removed."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ConfigError(f"{out} is not empty; pass --force to replace the network there")
        if not (out / NETWORK_FILE).is_file():
            raise ConfigError(
                f"{out} is not empty and holds no {NETWORK_FILE}; refusing to delete it even "
                "with --force (choose an empty directory)"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def init_network(profile: Profile, options: InitOptions) -> list[NodeEntry]:
    """Write a whole network for *profile* under ``options.out``; returns its nodes."""
    out = options.out
    prepare_out_dir(out, force=options.force)
    secret = options.passphrase
    now = options.now

    root_key = SigningKey.generate()
    root = CertificateAuthority(
        create_root_ca(f"{profile.network_id} root CA", root_key, now=now), root_key
    )
    write_private_key(out / "ca" / "root.key", root_key, secret)
    write_cert(out / "ca" / "root.pem", root.cert)

    base = profile.base_port
    if base is None:
        base = choose_base_port(profile.host, len(profile.orgs), str(out.resolve()))

    orgs: list[OrgConfig] = []
    members: list[MemberConfig] = []
    entries: list[NodeEntry] = []
    node_keys: dict[str, tuple[SigningKey, bytes]] = {}
    admin_keys: dict[str, tuple[SigningKey, bytes]] = {}
    for i, spec in enumerate(profile.orgs):
        kind = "ministry" if spec is profile.ministry else "hospital"
        ca, admin_key, admin_cert = _lay_out_org(out, root, spec.org_id, spec.name, now, secret)
        orgs.append(_org_config(ca, spec.org_id, spec.name, kind, now))
        admin_keys[spec.org_id] = (admin_key, cert_to_der(admin_cert))

        node_dir = out / "nodes" / spec.node_id
        node_key = SigningKey.generate()
        hosts = _node_hosts(profile.host)
        node_cert = issue_node_cert(
            ca, spec.org_id, spec.node_id, node_key.public_key, hosts, now=now
        )
        write_private_key(node_dir / "node.key", node_key, secret)
        write_cert(node_dir / "node.pem", node_cert)
        node_keys[spec.node_id] = (node_key, cert_to_der(node_cert))

        listen = ListenConfig(
            host=profile.host,
            p2p_port=base + PORTS_PER_NODE * i,
            api_port=base + PORTS_PER_NODE * i + 1,
        )
        role = "orderer" if kind == "ministry" else "peer"
        (node_dir / "node.toml").write_text(
            node_config_toml(
                node_id=spec.node_id,
                org_id=spec.org_id,
                role=role,
                network_id=profile.network_id,
                listen=listen,
                key_passphrase_env=options.passphrase_env if secret else "",
            ),
            encoding="utf-8",
        )
        members.append(
            MemberConfig(
                node_id=spec.node_id,
                org_id=spec.org_id,
                host=profile.host,
                p2p_port=listen.p2p_port,
                api_port=listen.api_port,
                node_cert=cert_to_der(node_cert),
                endorser=kind == "hospital",
            )
        )
        entries.append(
            NodeEntry(
                spec.node_id,
                spec.org_id,
                role,
                profile.host,
                listen.p2p_port,
                listen.api_port,
                node_dir / "node.toml",
            )
        )

    config = NetworkConfig(
        network_id=profile.network_id,
        sequence=0,
        root_ca=cert_to_der(root.cert),
        orgs=tuple(orgs),
        members=tuple(members),
        endorsement_rule="2f+1",
        batch=profile.batch,
        contracts=builtin_pins(),
    )
    admin_key, admin_der = admin_keys[profile.ministry.org_id]
    signer_key, signer_der = node_keys[profile.ministry.node_id]
    genesis = build_genesis(
        config,
        admin_key=admin_key,
        admin_cert_der=admin_der,
        signer_key=signer_key,
        signer_cert_der=signer_der,
        timestamp_ms=int(now.timestamp() * 1000),
        nonce=os.urandom(limits.NONCE_BYTES),
    )
    (out / GENESIS_FILE).write_bytes(encode(genesis))
    for entry in entries:
        with open_node_store(entry.config.parent / "data", create=True) as store:
            install_genesis(store, genesis)
    _write_network_file(out, profile, entries)
    return entries


def _node_hosts(host: str) -> list[str]:
    hosts = [host, "localhost", "127.0.0.1"]
    return list(dict.fromkeys(hosts))


def _node_row(out: Path, entry: NodeEntry) -> dict[str, object]:
    """One node as network.toml lists it."""
    return {
        "id": entry.node_id,
        "org": entry.org_id,
        "role": entry.role,
        "host": entry.host,
        "p2p_port": entry.p2p_port,
        "api_port": entry.api_port,
        "config": str(entry.config.relative_to(out)),
    }


def _write_network_file(out: Path, profile: Profile, entries: list[NodeEntry]) -> None:
    doc = {
        "network_id": profile.network_id,
        "profile": profile.name,
        "genesis": GENESIS_FILE,
        "nodes": [_node_row(out, e) for e in entries],
    }
    (out / NETWORK_FILE).write_text(tomli_w.dumps(doc), encoding="utf-8")


def _read_network_file(out: Path) -> dict[str, Any]:
    path = out / NETWORK_FILE
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{out}: no network here (run `medledger network init`)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def _rewrite_nodes(out: Path, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    doc = _read_network_file(out)
    doc["nodes"] = edit(list(doc.get("nodes", [])))
    (out / NETWORK_FILE).write_text(tomli_w.dumps(doc), encoding="utf-8")


def network_id_of(out: Path) -> str:
    """The id of the network initialised in *out*."""
    value = _read_network_file(out).get("network_id")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{out / NETWORK_FILE}: field network_id is missing")
    return value


def _lay_out_org(
    out: Path,
    root: CertificateAuthority,
    org_id: str,
    name: str,
    now: datetime,
    passphrase: bytes | None,
) -> tuple[CertificateAuthority, SigningKey, x509.Certificate]:
    """An organisation's CA (issued by *root*) and first admin, written under orgs/ORG."""
    org_dir = out / "orgs" / org_id
    ca_key = SigningKey.generate()
    ca = CertificateAuthority(create_org_ca(root, org_id, name, ca_key.public_key, now=now), ca_key)
    write_private_key(org_dir / "ca.key", ca_key, passphrase)
    write_cert(org_dir / "ca.pem", ca.cert)
    admin_key = SigningKey.generate()
    admin_cert = issue_user_cert(
        ca, org_id, f"admin@{org_id}", "admin", admin_key.public_key, now=now
    )
    write_private_key(org_dir / "admin" / "admin.key", admin_key, passphrase)
    write_cert(org_dir / "admin" / "admin.pem", admin_cert)
    return ca, admin_key, admin_cert


def add_org(
    out: Path,
    org_id: str,
    name: str,
    *,
    now: datetime,
    passphrase: bytes | None = None,
) -> OrgConfig:
    """Lay out a new hospital organisation in *out*: its CA (issued by the network's root,
    whose key the ministry holds in ``ca/root.key``) and its first admin. Returns the
    organisation entry a configuration update adds (`medledger network add-org`)."""
    check_id("org id", org_id)
    org_dir = out / "orgs" / org_id
    if org_dir.exists():
        raise ConfigError(f"{org_dir} already exists")
    root_dir = out / "ca"
    if not (root_dir / "root.key").is_file():
        raise ConfigError(f"{out}: no root CA key here (ca/root.key); the ministry holds it")
    root = CertificateAuthority(
        read_cert(root_dir / "root.pem"), read_signing_key(root_dir / "root.key", passphrase)
    )
    ca, _, _ = _lay_out_org(out, root, org_id, name, now, passphrase)
    return _org_config(ca, org_id, name, "hospital", now)


def _org_config(
    ca: CertificateAuthority, org_id: str, name: str, kind: str, now: datetime
) -> OrgConfig:
    """An organisation's configuration entry, with its CA's first (empty) revocation list."""
    crl = make_crl(ca, (), number=1, this_update=now)
    return OrgConfig(org_id=org_id, name=name, kind=kind, ca_cert=cert_to_der(ca.cert), crl=crl)


def add_node(
    out: Path,
    org_id: str,
    node_id: str,
    *,
    now: datetime,
    passphrase: bytes | None = None,
    passphrase_env: str = "",
) -> NodeEntry:
    """Lay out one more node of *org_id* in the network in *out*, signed by that org's CA.

    The node gets its key and certificate, free ports, a config and a database holding the
    genesis block, and is listed in network.toml; it joins the Raft cluster once the
    ministry adds it (`medledger raft add-member`).
    """
    entries = load_network(out)
    if any(e.node_id == node_id for e in entries):
        raise ConfigError(f"{out}: there is already a node {node_id}")
    org_dir = out / "orgs" / org_id
    if not (org_dir / "ca.key").is_file():
        raise ConfigError(f"{out}: no CA key for org {org_id} here (orgs/{org_id}/ca.key)")
    check_id("node id", node_id)
    ca = CertificateAuthority(
        read_cert(org_dir / "ca.pem"), read_signing_key(org_dir / "ca.key", passphrase)
    )
    host = entries[0].host
    base = choose_base_port(host, 1, f"{out.resolve()}/{node_id}")
    node_dir = out / "nodes" / node_id
    if node_dir.exists():
        raise ConfigError(f"{node_dir} already exists")
    node_key = SigningKey.generate()
    node_cert = issue_node_cert(
        ca, org_id, node_id, node_key.public_key, _node_hosts(host), now=now
    )
    write_private_key(node_dir / "node.key", node_key, passphrase)
    write_cert(node_dir / "node.pem", node_cert)
    listen = ListenConfig(host=host, p2p_port=base, api_port=base + 1)
    network_id = network_id_of(out)
    (node_dir / "node.toml").write_text(
        node_config_toml(
            node_id=node_id,
            org_id=org_id,
            role="peer",
            network_id=network_id,
            listen=listen,
            key_passphrase_env=passphrase_env if passphrase else "",
        ),
        encoding="utf-8",
    )
    genesis = decode((out / GENESIS_FILE).read_bytes(), Block)
    with open_node_store(node_dir / "data", create=True) as store:
        install_genesis(store, genesis)
    entry = NodeEntry(
        node_id, org_id, "peer", host, listen.p2p_port, listen.api_port, node_dir / "node.toml"
    )
    _rewrite_nodes(out, lambda rows: [*rows, _node_row(out, entry)])
    return entry


def drop_node_entry(out: Path, node_id: str) -> None:
    """Take *node_id* out of network.toml (its directory stays, for the record)."""
    _rewrite_nodes(out, lambda rows: [n for n in rows if n.get("id") != node_id])


def load_network(out: Path) -> list[NodeEntry]:
    """The nodes of the network initialised in *out* (ConfigError if there is none)."""
    path = out / NETWORK_FILE
    data = _read_network_file(out)
    entries = []
    for i, node in enumerate(data.get("nodes", [])):
        try:
            entries.append(
                NodeEntry(
                    node_id=str(node["id"]),
                    org_id=str(node["org"]),
                    role=str(node["role"]),
                    host=str(node["host"]),
                    p2p_port=int(node["p2p_port"]),
                    api_port=int(node["api_port"]),
                    config=out / str(node["config"]),
                )
            )
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: field nodes[{i}] is incomplete") from None
    if not entries:
        raise ConfigError(f"{path}: field nodes lists no node")
    return entries
