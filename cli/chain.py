"""`medledger chain show|verify`: read a node's chain straight from its LevelDB."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import click

from cli.errors import EXIT_CHECK_FAILED, fail
from identity.certs import cert_from_der
from identity.validate import subject_fields
from node.bootstrap import GENESIS_FILE, load_network
from node.chain_audit import ChainReport, audit_chain
from node.client import NodeClient, network_ssl_context
from node.config import load_node_config
from node.store import open_node_store
from protocol.errors import MedledgerError


@dataclasses.dataclass(frozen=True, slots=True)
class NodeData:
    """Where one node's database is, and the genesis file it must start with (if known)."""

    name: str
    data_dir: Path
    genesis: Path | None


def _node_data(data: Path) -> NodeData:
    """A node directory (holding node.toml) or a bare database directory."""
    config_file = data / "node.toml"
    if config_file.is_file():
        config = load_node_config(config_file)
        return NodeData(config.node_id, config.data_dir, config.genesis)
    return NodeData(data.name, data, None)


def _targets(network: Path, data: Path | None, node: str | None) -> list[NodeData]:
    if data is not None:
        return [_node_data(data)]
    entries = load_network(network)
    if node is not None:
        entries = [e for e in entries if e.node_id == node]
        if not entries:
            fail(f"no node {node!r} in {network}")
    out = []
    for e in entries:
        nd = _node_data(e.config.parent)
        out.append(dataclasses.replace(nd, genesis=nd.genesis or network / GENESIS_FILE))
    return out


_network_option = click.option(
    "--network",
    type=click.Path(path_type=Path),
    default="var/local",
    show_default=True,
    help="The network directory `network init` wrote.",
)
_data_option = click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="A node directory (with node.toml) or a node database; overrides --network.",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def chain() -> None:
    """Inspect and verify a node's chain."""


@chain.command("show")
@_network_option
@_data_option
@click.option("--node", default=None, help="Which node of --network (default: the first).")
@click.option("--from", "start", type=int, default=0, show_default=True, help="First block.")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many blocks.")
@_json_option
def show(
    network: Path, data: Path | None, node: str | None, start: int, limit: int, as_json: bool
) -> None:
    """List block headers as a table."""
    try:
        target = _targets(network, data, node)[0]
        rows = _header_rows(target, start, limit)
    except MedledgerError as e:
        fail(str(e))
    if as_json:
        click.echo(json.dumps({"node": target.name, "blocks": rows}, indent=2))
        return
    click.echo(f"{target.name}: {len(rows)} block(s) from {start}")
    click.echo(
        f"{'BLOCK':>6}  {'HASH':<16}  {'PREVIOUS':<16}  {'TXS':>5}  {'TIME (UTC)':<19}  SIGNER"
    )
    for r in rows:
        click.echo(
            f"{r['number']:>6}  {r['hash'][:16]:<16}  {r['previous_hash'][:16]:<16}  "
            f"{r['tx_count']:>5}  {r['time'][:19]:<19}  {r['signer']}"
        )


def _header_rows(target: NodeData, start: int, limit: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with open_node_store(target.data_dir) as store:
        for block in store.blocks.iter_blocks(start):
            if len(rows) >= limit:
                break
            h = block.header
            rows.append(
                {
                    "number": h.number,
                    "hash": block.hash().hex(),
                    "previous_hash": h.previous_hash.hex(),
                    "data_hash": h.data_hash.hex(),
                    "tx_count": h.tx_count,
                    "time": datetime.fromtimestamp(h.timestamp_ms / 1000, tz=UTC).isoformat(),
                    "signer": _signer_name(block.metadata.signer),
                }
            )
    return rows


def _signer_name(der: bytes) -> str:
    try:
        fields = subject_fields(cert_from_der(der))
    except MedledgerError:
        return "?"
    return f"{fields.subject_id} ({fields.org_id})"


@chain.command("verify")
@_network_option
@_data_option
@click.option(
    "--node",
    default=None,
    help="Only this node of --network, by id, or a running node's API URL "
    "(https://HOST:PORT; trust and genesis come from --network).",
)
@_json_option
def verify(network: Path, data: Path | None, node: str | None, as_json: bool) -> None:
    """Verify hash chain, data hashes and signatures; non-zero exit names the first bad block."""
    results: list[tuple[NodeData, ChainReport]] = []
    try:
        if node is not None and node.startswith(("https://", "http://")):
            results.append((NodeData(node, Path(), None), _audit_remote(network, node)))
        else:
            for target in _targets(network, data, node):
                results.append((target, _audit(target)))
    except MedledgerError as e:
        fail(str(e))
    diverged = _diverged(results)
    heights = {r.height for _, r in results if r.ok}
    identical = not diverged and len(heights) <= 1 and len({r.tip_hash for _, r in results}) <= 1
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": all(r.ok for _, r in results) and not diverged,
                    "identical": identical,
                    "diverged": diverged,
                    "nodes": [
                        {
                            "node": t.name,
                            "ok": r.ok,
                            "height": r.height,
                            "verified": r.verified,
                            "tip_hash": r.tip_hash.hex() if r.tip_hash else None,
                            "bad_block": r.bad_block,
                            "reason": r.reason,
                        }
                        for t, r in results
                    ],
                },
                indent=2,
            )
        )
    else:
        for t, r in results:
            if r.ok:
                tip = r.tip_hash.hex()[:16] if r.tip_hash else "-"
                click.echo(f"{t.name}: ok, {r.height} block(s) verified, tip {tip}")
            else:
                click.echo(
                    f"{t.name}: BAD block {r.bad_block}: {r.reason} "
                    f"({r.verified} of {r.height} verified before it)"
                )
        if diverged:
            click.echo("chains differ between nodes: two nodes hold different blocks")
        elif len(heights) > 1:
            top = max(heights)
            behind = [
                f"{t.name} by {top - r.height}" for t, r in results if r.ok and r.height < top
            ]
            click.echo(f"chains agree; behind the longest: {', '.join(behind)}")
    if diverged or not all(r.ok for _, r in results):
        raise SystemExit(EXIT_CHECK_FAILED)


def _audit(target: NodeData) -> ChainReport:
    genesis = None
    if target.genesis is not None:
        try:
            genesis = target.genesis.read_bytes()
        except OSError:
            fail(f"{target.genesis}: cannot read the network's genesis block")
    with open_node_store(target.data_dir) as store:
        return audit_chain(store.blocks.height, store.blocks.get_raw, genesis_bytes=genesis)


def _audit_remote(network: Path, url: str) -> ChainReport:
    """Audit a running node's chain over its API, against *network*'s genesis and CAs."""
    client = NodeClient(url, network_ssl_context(network))
    height = int(client.chain_info()["height"])
    try:
        genesis = (network / GENESIS_FILE).read_bytes()
    except OSError:
        fail(f"{network / GENESIS_FILE}: cannot read the network's genesis block")
    return audit_chain(height, client.block_bytes, genesis_bytes=genesis)


def _diverged(results: list[tuple[NodeData, ChainReport]]) -> bool:
    """Whether two verified local chains hold different blocks at some common height.

    Chains are hash-linked, so comparing the block at each distinct height among the nodes
    that reach it compares whole prefixes.
    """
    local = [(t, r) for t, r in results if r.ok and r.height > 0 and t.data_dir != Path()]
    for height in sorted({r.height for _, r in local}):
        hashes = set()
        for target, report in local:
            if report.height < height:
                continue
            with open_node_store(target.data_dir) as stores:
                block = stores.blocks.get(height - 1)
            hashes.add(block.hash() if block is not None else None)
        if len(hashes) > 1:
            return True
    return False
