"""`medledger network add-org|add-node` and `medledger raft add-member|remove-member`.

A new hospital joins in three steps, each a command: ``network add-org`` (the ministry lays
out its CA, issued by the network's root, and its first admin, and commits a configuration
update adding the organisation), ``network add-node`` (its node's key, certificate and
config), then, with the node running, ``raft add-member`` (a learner, then a voter and,
as the hospital's first node, an endorser: the endorsement quorum grows with it).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from cli.cluster import json_option, network_option, pick_node
from cli.errors import fail, passphrase_from_env
from identity.certs import cert_to_der
from identity.keystore import read_cert, read_signing_key
from node.bootstrap import add_node, add_org, drop_node_entry, load_network
from node.client import NodeClient, NodeRefused, NodeUnavailable, network_ssl_context
from node.membership import (
    member_from_node_dir,
    signed_update,
    with_member_added,
    with_member_removed,
    with_org_added,
)
from node.supervisor import api_url, running_nodes, stop_nodes
from protocol.codec import decode, encode
from protocol.config import NetworkConfig
from protocol.errors import MedledgerError

PROMOTION_WAIT_S = 60.0


@click.command("add-org")
@network_option
@click.option("--org", required=True, help="The new hospital's organisation id.")
@click.option("--name", required=True, help="Its display name.")
@click.option("--via", default=None, help="Submit through this node (default: the first).")
@click.option("--passphrase-env", default="", help="Variable holding the key passphrase.")
@json_option
def add_org_command(
    network: Path, org: str, name: str, via: str | None, passphrase_env: str, as_json: bool
) -> None:
    """Add a hospital: lay out its CA and admin here and commit the configuration update
    (signed by a ministry admin) that adds it to the network."""
    try:
        client = NodeClient(api_url(pick_node(network, via)), network_ssl_context(network))
        current = current_config(client)
        if current.org(org) is not None:
            fail(f"there is already an organisation {org}")
        passphrase = passphrase_from_env(passphrase_env)
        entry = add_org(network, org, name, now=datetime.now(UTC), passphrase=passphrase)
        new = with_org_added(current, entry)
        key, cert = ministry_admin(network, current, passphrase_env)
        result = client.submit(encode(signed_update(new, key, cert)))
        after = current_config(client)
    except MedledgerError as e:
        fail(str(e))
    if after.org(org) is None:
        fail(f"the update was committed as {result.get('status')}: {result.get('reason')}")
    if as_json:
        click.echo(json.dumps({"org": org, "sequence": after.sequence, "block": result["block"]}))
        return
    click.echo(f"added hospital {org}; configuration sequence {after.sequence}")
    click.echo(
        f"  lay out its node: medledger network add-node --network {network} --org {org} "
        "--node-id NODE"
    )


@click.command("add-node")
@network_option
@click.option("--org", required=True, help="The organisation the node belongs to.")
@click.option("--node-id", required=True, help="The new node's id.")
@click.option("--passphrase-env", default="", help="Variable holding the key passphrase.")
@json_option
def add_node_command(
    network: Path, org: str, node_id: str, passphrase_env: str, as_json: bool
) -> None:
    """Lay out one more node for ORG (key, certificate from the org's CA, config, database)."""
    try:
        entry = add_node(
            network,
            org,
            node_id,
            now=datetime.now(UTC),
            passphrase=passphrase_from_env(passphrase_env),
            passphrase_env=passphrase_env,
        )
    except MedledgerError as e:
        fail(str(e))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": entry.node_id,
                    "org": entry.org_id,
                    "config": str(entry.config),
                    "p2p_port": entry.p2p_port,
                    "api_port": entry.api_port,
                }
            )
        )
        return
    click.echo(f"laid out node {entry.node_id} of {entry.org_id}: {entry.config}")
    click.echo(f"  start it with: medledger node start --config {entry.config}")
    click.echo(
        f"  then add it:   medledger raft add-member --network {network} --node {entry.node_id}"
    )


def current_config(client: NodeClient) -> NetworkConfig:
    """The network configuration in force on the node *client* talks to."""
    return decode(client.config_bytes(), NetworkConfig)


def ministry_admin(network: Path, config: NetworkConfig, passphrase_env: str) -> tuple[Any, bytes]:
    """The ministry admin's signing key and certificate (DER), who signs configuration
    updates."""
    ministry = next(o.org_id for o in config.orgs if o.kind == "ministry")
    admin = network / "orgs" / ministry / "admin"
    key = read_signing_key(admin / "admin.key", passphrase_from_env(passphrase_env))
    return key, cert_to_der(read_cert(admin / "admin.pem"))


def _submit_change(
    network: Path, via: str | None, passphrase_env: str, change: str, node: str
) -> tuple[NodeClient, NetworkConfig]:
    ctx = network_ssl_context(network)
    client = NodeClient(api_url(pick_node(network, via)), ctx)
    current = current_config(client)
    if change == "add":
        new = with_member_added(current, member_from_node_dir(network / "nodes" / node, current))
    else:
        new = with_member_removed(current, node)
    key, cert = ministry_admin(network, current, passphrase_env)
    client.submit(encode(signed_update(new, key, cert)))
    after = current_config(client)
    if after.sequence < new.sequence or (after.member(node) is None) != (change == "remove"):
        fail(
            "the configuration update was committed but rejected by validation "
            "(another update came first?); check `medledger raft status` and retry"
        )
    return client, after


def _wait_for_role(network: Path, node: str, want: str, timeout_s: float) -> dict[str, Any]:
    ctx = network_ssl_context(network)
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        for entry in load_network(network):
            try:
                status = NodeClient(api_url(entry), ctx, timeout_s=3).raft_status()
            except (NodeUnavailable, NodeRefused):
                continue
            if status.get("role") != "leader":
                continue
            if want == "voter" and node in status["voters"]:
                return status
            if want == "gone" and node not in status["voters"] + status["learners"]:
                return status
        time.sleep(0.2)
    fail(f"{node} did not become {want} within {timeout_s:.0f} s (is it running and caught up?)")


@click.command("add-member")
@network_option
@click.option("--node", "node", required=True, help="The node to add (laid out by add-node).")
@click.option("--via", default=None, help="Submit through this node (default: the first).")
@click.option(
    "--passphrase-env", default="", help="Variable holding the ministry admin key passphrase."
)
@click.option("--no-wait", is_flag=True, help="Return once the change is committed.")
@json_option
def add_member(
    network: Path, node: str, via: str | None, passphrase_env: str, no_wait: bool, as_json: bool
) -> None:
    """Add a node to the network: a configuration update signed by a ministry admin; the
    leader adds it to Raft as a learner, then promotes it to voter once it has caught up."""
    try:
        _, after = _submit_change(network, via, passphrase_env, "add", node)
        status = None if no_wait else _wait_for_role(network, node, "voter", PROMOTION_WAIT_S)
    except MedledgerError as e:
        fail(str(e))
    result = {"node": node, "sequence": after.sequence, "voter": status is not None}
    if as_json:
        click.echo(json.dumps(result))
    else:
        state = "a voter" if status is not None else "added (promotion to voter pending)"
        click.echo(f"{node} is {state}; configuration sequence {after.sequence}")


@click.command("remove-member")
@network_option
@click.option("--node", "node", required=True, help="The member to remove.")
@click.option("--via", default=None, help="Submit through this node (default: the first).")
@click.option(
    "--passphrase-env", default="", help="Variable holding the ministry admin key passphrase."
)
@json_option
def remove_member(
    network: Path, node: str, via: str | None, passphrase_env: str, as_json: bool
) -> None:
    """Remove a member: a configuration update signed by a ministry admin; the leader then
    removes it from Raft; a process `up` started for it is stopped and it leaves network.toml."""
    try:
        _, after = _submit_change(network, via, passphrase_env, "remove", node)
        _wait_for_role(network, node, "gone", PROMOTION_WAIT_S)
        stopped = stop_nodes(
            network, [n for n in running_nodes(network) if n.entry.node_id == node]
        )
        drop_node_entry(network, node)
    except MedledgerError as e:
        fail(str(e))
    if as_json:
        click.echo(json.dumps({"node": node, "sequence": after.sequence, "removed": True}))
    else:
        note = " and its process was stopped" if stopped else ""
        click.echo(f"{node} is no longer a member{note}; configuration sequence {after.sequence}")
