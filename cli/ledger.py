"""``medledger block show N``, ``state get NS KEY`` and ``events``: read the ledger through a
node's API while the network runs (``chain show`` reads a stopped node's database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from cli.cluster import json_option, network_option, pick_node
from cli.errors import fail
from node.client import NodeClient, network_ssl_context
from node.ledger_view import describe_block, endorser_names
from node.supervisor import api_url
from protocol.block import Block
from protocol.codec import decode
from protocol.config import NetworkConfig
from protocol.errors import MedledgerError

node_option = click.option("--node", default=None, help="Ask this node (default: the first).")


def client_for(network: Path, node: str | None) -> tuple[str, NodeClient]:
    """The chosen node's id and a client of its API."""
    target = pick_node(network, node)
    return target.node_id, NodeClient(api_url(target), network_ssl_context(network))


def when(timestamp_ms: int) -> str:
    """A millisecond timestamp as ISO 8601 UTC."""
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def party(who: dict[str, str]) -> str:
    return f"{who['org']}/{who['role']}/{who['subject']}"


@click.group("block")
def block_group() -> None:
    """Inspect blocks."""


@block_group.command("show")
@network_option
@click.argument("number", type=click.IntRange(min=0))
@node_option
@json_option
def block_show(network: Path, number: int, node: str | None, as_json: bool) -> None:
    """Show block NUMBER: header, signer and each transaction with its validation code."""
    try:
        node_id, client = client_for(network, node)
        raw = client.block_bytes(number)
        if raw is None:
            fail(f"{node_id} has no block {number}")
        names = endorser_names(decode(client.config_bytes(), NetworkConfig))
        info = describe_block(decode(raw, Block), names)
    except MedledgerError as e:
        fail(str(e))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(
        f"block {info['number']}  hash {info['hash'][:16]}  previous {info['previous_hash'][:16]}"
        f"  {when(info['timestamp_ms'])}  cut by {party(info['signer'])}"
    )
    click.echo(f"  {'#':>4}  {'STATUS':<26}  {'TX':<16}  {'CALL':<32}  CREATOR")
    for tx in info["transactions"]:
        click.echo(
            f"  {tx['index']:>4}  {tx['status']:<26}  {tx['tx_id'][:16]}  {_call(tx):<32}  "
            f"{party(tx['creator'])}"
        )


def _call(tx: dict[str, Any]) -> str:
    if tx["kind"] == "config":
        return f"config update #{tx['sequence']}"
    return f"{tx['contract']}.{tx['function']}"


@click.group("state")
def state_group() -> None:
    """Read the world state."""


@state_group.command("get")
@network_option
@click.argument("namespace")
@click.argument("key")
@node_option
@json_option
def state_get(network: Path, namespace: str, key: str, node: str | None, as_json: bool) -> None:
    """Print the committed value of KEY (UTF-8) in NAMESPACE (a contract's name) and the
    version that wrote it; exit 1 if it is absent."""
    try:
        node_id, client = client_for(network, node)
        entry = client.state_info(namespace, key.encode("utf-8"))
    except MedledgerError as e:
        fail(str(e))
    if entry is None:
        if as_json:
            click.echo(json.dumps({"node": node_id, "found": False}))
        else:
            click.echo(f"{node_id}: no key {key!r} in {namespace}", err=True)
        raise SystemExit(1)
    if as_json:
        click.echo(json.dumps({"node": node_id, "found": True, **entry}))
        return
    version = entry["version"]
    click.echo(entry.get("value", entry["value_hex"]))
    click.echo(f"(written by block {version['block']}, tx {version['tx']})", err=True)


@click.command("events")
@network_option
@click.option("--from", "start", type=click.IntRange(min=0), default=None, help="First block.")
@click.option("--follow", is_flag=True, help="Keep printing blocks as they commit (Ctrl-C ends).")
@node_option
@json_option
def events(network: Path, start: int | None, follow: bool, node: str | None, as_json: bool) -> None:
    """Print committed transactions with their status and contract events, one line each
    (with --json, one JSON object per block), from block --from (default: 0, or the next
    block with --follow)."""
    if start is None and not follow:
        start = 0

    def show(block: dict[str, Any]) -> None:
        if as_json:
            click.echo(json.dumps(block))
            return
        for tx in block["transactions"]:
            names = ",".join(e["name"] for e in tx["events"])
            click.echo(
                f"block {block['block']:>6} #{tx['index']:<4} {tx['status']:<26} "
                f"{tx['tx_id'][:16]}  {_call(tx):<32} {party(tx['creator'])}"
                + (f"  events: {names}" if names else "")
            )

    try:
        _, client = client_for(network, node)
        client.follow_events(start, show, follow=follow)
    except MedledgerError as e:
        fail(str(e))
    except KeyboardInterrupt:
        pass
