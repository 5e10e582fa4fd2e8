"""`medledger chain show|verify`: read a node's chain straight from its LevelDB, or, while the
node runs (and so holds its database's lock), through the node's API with the network's CAs."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
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
from node.supervisor import api_url
from protocol.block import Block
from protocol.codec import decode
from protocol.errors import ConfigError, MedledgerError
from storage.errors import DatabaseLockedError


@dataclasses.dataclass(frozen=True, slots=True)
class NodeData:
    """Where one node's database is, the genesis file it must start with (if known), and
    its API (if known), for when the running node holds the database."""

    name: str
    data_dir: Path | None  # None: only through the API
    genesis: Path | None
    api: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Chain:
    """One node's chain, opened for reading: its height and a reader of raw blocks."""

    height: int
    block_bytes: Callable[[int], bytes | None]
    via_api: str | None  # the API URL it is read through, None for the database


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
        out.append(
            dataclasses.replace(nd, genesis=nd.genesis or network / GENESIS_FILE, api=api_url(e))
        )
    return out


@contextlib.contextmanager
def open_chain(network: Path, target: NodeData) -> Iterator[Chain]:
    """*target*'s chain from its database; if its node is running (the database is locked)
    and its API is known, through the API, trusting *network*'s CAs."""
    with contextlib.ExitStack() as stack:
        stores = None
        if target.data_dir is not None:
            try:
                stores = stack.enter_context(open_node_store(target.data_dir))
            except DatabaseLockedError:
                if target.api is None:
                    raise
        if stores is not None:
            yield Chain(stores.blocks.height, stores.blocks.get_raw, None)
            return
        if target.api is None:
            raise ConfigError(f"{target.name}: neither a database nor an API to read")
        client = NodeClient(target.api, network_ssl_context(network))
        yield Chain(int(client.chain_info()["height"]), client.block_bytes, target.api)


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
        rows, via = _header_rows(network, target, start, limit)
    except MedledgerError as e:
        fail(str(e))
    if as_json:
        doc = {"node": target.name, "read_through": via, "blocks": rows}
        click.echo(json.dumps(doc, indent=2))
        return
    through = f" (read through {via})" if via is not None else ""
    click.echo(f"{target.name}: {len(rows)} block(s) from {start}{through}")
    click.echo(
        f"{'BLOCK':>6}  {'HASH':<16}  {'PREVIOUS':<16}  {'TXS':>5}  {'TIME (UTC)':<19}  SIGNER"
    )
    for r in rows:
        click.echo(
            f"{r['number']:>6}  {r['hash'][:16]:<16}  {r['previous_hash'][:16]:<16}  "
            f"{r['tx_count']:>5}  {r['time'][:19]:<19}  {r['signer']}"
        )


def _header_rows(
    network: Path, target: NodeData, start: int, limit: int
) -> tuple[list[dict[str, object]], str | None]:
    """Up to *limit* block headers from *start*, and the API they were read through (None:
    the node's database)."""
    rows: list[dict[str, object]] = []
    with open_chain(network, target) as chain:
        for number in range(max(start, 0), min(chain.height, max(start, 0) + limit)):
            raw = chain.block_bytes(number)
            if raw is None:
                break  # a running node's chain can only grow; this is the end of a local one
            block = decode(raw, Block)
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
        return rows, chain.via_api


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
    via: dict[str, str] = {}  # node -> the API its chain was read through (it was running)
    try:
        if node is not None and node.startswith(("https://", "http://")):
            targets = [NodeData(node, None, network / GENESIS_FILE, api=node)]
        else:
            targets = _targets(network, data, node)
        for target in targets:
            report, url = _audit(network, target)
            results.append((target, report))
            if url is not None:
                via[target.name] = url
        diverged = _diverged(network, results)
    except MedledgerError as e:
        fail(str(e))
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
                            "read_through": via.get(t.name),
                        }
                        for t, r in results
                    ],
                },
                indent=2,
            )
        )
    else:
        for t, r in results:
            through = f" (read through {via[t.name]})" if t.name in via else ""
            if r.ok:
                tip = r.tip_hash.hex()[:16] if r.tip_hash else "-"
                click.echo(f"{t.name}: ok, {r.height} block(s) verified, tip {tip}{through}")
            else:
                click.echo(
                    f"{t.name}: BAD block {r.bad_block}: {r.reason} "
                    f"({r.verified} of {r.height} verified before it){through}"
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


def _audit(network: Path, target: NodeData) -> tuple[ChainReport, str | None]:
    """*target*'s chain audited, and the API it was read through (None: its database)."""
    genesis = None
    if target.genesis is not None:
        try:
            genesis = target.genesis.read_bytes()
        except OSError:
            fail(f"{target.genesis}: cannot read the network's genesis block")
    with open_chain(network, target) as chain:
        report = audit_chain(chain.height, chain.block_bytes, genesis_bytes=genesis)
        return report, chain.via_api


def _diverged(network: Path, results: list[tuple[NodeData, ChainReport]]) -> bool:
    """Whether two verified chains hold different blocks at some common height.

    Chains are hash-linked, so comparing the block at each distinct height among the nodes
    that reach it compares whole prefixes. A running node's chain may have grown since it
    was audited; only heights its audit reached are compared.
    """
    verified = [(t, r) for t, r in results if r.ok and r.height > 0]
    heights = sorted({r.height for _, r in verified})
    hashes: dict[int, set[bytes | None]] = {height: set() for height in heights}
    for target, report in verified:  # each chain opened once (a running one: one client)
        with open_chain(network, target) as chain:
            for height in heights:
                if height > report.height:
                    break
                raw = chain.block_bytes(height - 1)
                hashes[height].add(None if raw is None else decode(raw, Block).hash())
    return any(len(found) > 1 for found in hashes.values())
