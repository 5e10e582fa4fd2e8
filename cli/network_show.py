"""`medledger network show`: the network configuration in force, as a node applied it.

What an admin checks after a configuration update: the sequence number, the organisations
with their CA's revocation list (number and how many certificates it revokes), the members
and which of them endorse (and so the quorum), the pinned contracts and the batch settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cli.cluster import json_option, network_option, pick_node
from cli.errors import fail
from cli.membership import current_config
from consensus.endorse import endorsing_members, quorum_size
from identity.certs import cert_from_der
from identity.crl import read_crl
from node.client import NodeClient, network_ssl_context
from node.supervisor import api_url
from protocol.config import NetworkConfig, OrgConfig
from protocol.errors import MedledgerError


@click.command("show")
@network_option
@click.option("--node", "node", default=None, help="Ask this node (default: the first).")
@json_option
def show_command(network: Path, node: str | None, as_json: bool) -> None:
    """Print the network configuration in force on a node."""
    try:
        client = NodeClient(api_url(pick_node(network, node)), network_ssl_context(network))
        doc = describe_config(current_config(client))
    except MedledgerError as e:
        fail(str(e))
    if as_json:
        click.echo(json.dumps(doc))
        return
    endorsement = doc["endorsement"]
    click.echo(
        f"network {doc['network_id']}, configuration sequence {doc['sequence']}; "
        f"endorsement {endorsement['rule']}: {endorsement['quorum']} of "
        f"{endorsement['endorsers']} endorsers"
    )
    click.echo("organisations:")
    for org in doc["orgs"]:
        crl = org["crl"]
        listed = (
            "no revocation list"
            if crl is None
            else (f"CRL #{crl['number']}, {crl['revoked']} revoked")
        )
        click.echo(f"  {org['id']:<12} {org['kind']:<9} {listed}")
    click.echo("members:")
    for m in doc["members"]:
        role = "endorser" if m["endorser"] else "orderer"
        click.echo(
            f"  {m['id']:<12} {m['org']:<12} {role:<9} {m['host']} p2p {m['p2p_port']} "
            f"api {m['api_port']}"
        )
    click.echo("contracts:")
    for c in doc["contracts"]:
        click.echo(f"  {c['name']} {c['version']}  code sha256 {c['code_hash'][:16]}...")
    batch = doc["batch"]
    click.echo(
        f"blocks: at most {batch['max_txs']} transactions or {batch['max_bytes']} bytes, "
        f"cut {batch['timeout_ms']} ms after the first"
    )


def describe_config(config: NetworkConfig) -> dict[str, Any]:
    """*config* as JSON-ready data (certificates summarised, never printed whole)."""
    endorsers = endorsing_members(config)
    return {
        "network_id": config.network_id,
        "sequence": config.sequence,
        "endorsement": {
            "rule": config.endorsement_rule,
            "endorsers": len(endorsers),
            "quorum": quorum_size(len(endorsers)),
        },
        "orgs": [
            {"id": o.org_id, "name": o.name, "kind": o.kind, "crl": _crl(o)} for o in config.orgs
        ],
        "members": [
            {
                "id": m.node_id,
                "org": m.org_id,
                "endorser": m.endorser,
                "host": m.host,
                "p2p_port": m.p2p_port,
                "api_port": m.api_port,
            }
            for m in config.members
        ],
        "contracts": [
            {"name": c.name, "version": c.version, "code_hash": c.code_hash.hex()}
            for c in config.contracts
        ],
        "batch": {
            "max_txs": config.batch.max_txs,
            "max_bytes": config.batch.max_bytes,
            "timeout_ms": config.batch.timeout_ms,
        },
    }


def _crl(org: OrgConfig) -> dict[str, Any] | None:
    if not org.crl:
        return None
    info = read_crl(org.crl, cert_from_der(org.ca_cert))
    return {
        "number": info.number,
        "this_update": info.this_update.isoformat(),
        "revoked": len(info.serials),
    }
