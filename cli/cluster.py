"""`medledger up|down`, `node start`, `raft status` and `submit`: run and use a network."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from cli.errors import fail, passphrase_from_env
from node.bootstrap import (
    NETWORK_FILE,
    InitOptions,
    NodeEntry,
    init_network,
    load_network,
    network_id_of,
)
from node.client import NodeClient, NodeRefused, NodeUnavailable, network_ssl_context
from node.profile import load_profile
from node.supervisor import (
    RunningNode,
    api_url,
    start_nodes,
    stop_nodes,
    wait_for_leader,
    watch,
)
from protocol.errors import MedledgerError

network_option = click.option(
    "--network",
    type=click.Path(path_type=Path),
    default="var/local",
    show_default=True,
    help="The network directory.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")

F = TypeVar("F", bound=Callable[..., Any])


def options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several click decorators as one, applied as if stacked in the order given."""

    def apply(f: F) -> F:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


# Who signs what a command sends: an organisation's admin (see admin_identity).
admin_org_option = click.option(
    "--org", default=None, help="Sign as this org's admin (default: the first hospital)."
)
admin_passphrase_option = click.option(
    "--passphrase-env", default="", help="Variable holding the admin key passphrase."
)


def _describe(nodes: list[RunningNode], leader: str, network: Path, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "network": str(network),
                    "leader": leader,
                    "nodes": [
                        {
                            "id": n.entry.node_id,
                            "role": n.entry.role,
                            "pid": n.pid,
                            "api": api_url(n.entry),
                            "p2p": f"{n.entry.host}:{n.entry.p2p_port}",
                            "data": str(n.entry.config.parent / "data"),
                            "log": str(n.entry.config.parent / "node.log"),
                        }
                        for n in nodes
                    ],
                },
                indent=2,
            )
        )
        return
    click.echo(f"network {network}: {len(nodes)} nodes up, leader {leader}")
    for n in nodes:
        e = n.entry
        click.echo(
            f"  {e.node_id:<10} {e.role:<7} pid {n.pid:<7} api {api_url(e)}  "
            f"p2p {e.host}:{e.p2p_port}\n"
            f"  {'':<10} data {e.config.parent / 'data'}  log {e.config.parent / 'node.log'}"
        )


@click.command("up")
@network_option
@click.option("--detach", is_flag=True, help="Start in the background and return.")
@json_option
def up(network: Path, detach: bool, as_json: bool) -> None:
    """Start every node of the network (initialising it if missing) and wait for a leader."""
    try:
        if not (network / NETWORK_FILE).is_file():
            click.echo(f"no network in {network}: initialising the local profile", err=True)
            init_network(
                load_profile("local"), InitOptions(out=network, force=False, now=datetime.now(UTC))
            )
        nodes = start_nodes(network, detach=detach)
    except MedledgerError as e:
        fail(str(e))
    try:
        leader = wait_for_leader(network, nodes)
    except MedledgerError as e:
        stop_nodes(network, nodes)
        fail(str(e))
    _describe(nodes, leader, network, as_json)
    if detach:
        return
    click.echo("press Ctrl-C to stop every node", err=True)

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with contextlib.suppress(KeyboardInterrupt):
        watch(
            nodes, lambda n, code: click.echo(f"node {n.entry.node_id} exited ({code})", err=True)
        )
    stopped = stop_nodes(network, nodes)
    click.echo(f"stopped {', '.join(stopped) or 'nothing'}", err=True)


@click.command("down")
@network_option
@json_option
def down(network: Path, as_json: bool) -> None:
    """Stop the nodes `up --detach` started."""
    try:
        stopped = stop_nodes(network)
    except MedledgerError as e:
        fail(str(e))
    if as_json:
        click.echo(json.dumps({"stopped": stopped}))
    else:
        click.echo(f"stopped {', '.join(stopped)}" if stopped else "no node was running")


@click.group("node")
def node_group() -> None:
    """Run a single node."""


@node_group.command("start")
@click.option(
    "--config", "config", type=click.Path(path_type=Path), required=True, help="NODE.toml"
)
def node_start(config: Path) -> None:
    """Run one node in the foreground until SIGTERM or Ctrl-C (what a systemd unit calls)."""
    from node.daemon import run_node

    try:
        run_node(config)
    except MedledgerError as e:
        fail(str(e))


def admin_identity(network: Path, org: str | None, passphrase_env: str) -> tuple[Any, bytes]:
    """(signing key, certificate DER) of *org*'s admin (default: the first hospital's)."""
    from identity.certs import cert_to_der
    from identity.keystore import read_cert, read_signing_key

    entries = load_network(network)
    org_id = org or next((e.org_id for e in entries if e.role == "peer"), entries[0].org_id)
    admin_dir = network / "orgs" / org_id / "admin"
    key = read_signing_key(admin_dir / "admin.key", passphrase_from_env(passphrase_env))
    return key, cert_to_der(read_cert(admin_dir / "admin.pem"))


def pick_node(network: Path, node: str | None) -> NodeEntry:
    """The named node of *network*, or its first node."""
    entries = load_network(network)
    if node is None:
        return entries[0]
    for entry in entries:
        if entry.node_id == node:
            return entry
    fail(f"no node {node!r} in {network}")


@click.group("raft")
def raft_group() -> None:
    """Inspect and change the Raft cluster."""


@raft_group.command("status")
@network_option
@json_option
def raft_status(network: Path, as_json: bool) -> None:
    """Term, role, leader, commit/applied/last index, lag, snapshot and peers of every member."""
    try:
        entries = load_network(network)
        ctx = network_ssl_context(network)
    except MedledgerError as e:
        fail(str(e))
    rows: list[dict[str, Any]] = []
    for entry in entries:
        try:
            status = NodeClient(api_url(entry), ctx, timeout_s=5).raft_status()
        except (NodeUnavailable, NodeRefused) as e:
            status = {"node": entry.node_id, "error": str(e)}
        rows.append(status)
    leader_last = max(
        (r.get("last_index", 0) for r in rows if r.get("role") == "leader"), default=None
    )
    for r in rows:
        if "error" not in r and leader_last is not None:
            r["lag"] = max(0, leader_last - r.get("applied_index", 0))
    if as_json:
        click.echo(json.dumps({"members": rows}, indent=2))
        return
    click.echo(
        f"{'NODE':<10} {'ROLE':<10} {'TERM':>5} {'LEADER':<10} {'COMMIT':>7} {'APPLIED':>7} "
        f"{'LAST':>7} {'LAG':>5} {'SNAP':>6}  PEERS"
    )
    for r in rows:
        if "error" in r:
            click.echo(f"{r['node']:<10} unreachable: {r['error']}")
            continue
        click.echo(
            f"{r['node']:<10} {r['role']:<10} {r['term']:>5} {r.get('leader') or '-':<10} "
            f"{r['commit_index']:>7} {r['applied_index']:>7} {r['last_index']:>7} "
            f"{r.get('lag', '-')!s:>5} {r['snapshot_index']:>6}  {','.join(r.get('reachable', []))}"
        )


@click.command("submit")
@network_option
@click.option("--payload-file", type=click.Path(path_type=Path, dir_okay=False), required=True)
@admin_org_option
@click.option("--node", default=None, help="Submit through this node (default: the first).")
@admin_passphrase_option
@json_option
def submit(
    network: Path,
    payload_file: Path,
    org: str | None,
    node: str | None,
    passphrase_env: str,
    as_json: bool,
) -> None:
    """Sign a payload as an admin, submit it, and wait until it is in a committed block.

    The payload is ordered and kept in the chain as it is; carrying no endorsements, it is
    marked ENDORSEMENT_POLICY_FAILURE and writes no state (run contracts with `tx invoke`).
    """

    from node.envelopes import opaque_envelope
    from protocol.codec import encode

    try:
        target = pick_node(network, node)
        key, cert = admin_identity(network, org, passphrase_env)
        payload = payload_file.read_bytes()
        network_id = network_id_of(network)
        envelope = opaque_envelope(
            payload,
            network_id=network_id,
            key=key,
            cert_der=cert,
            timestamp_ms=int(time.time() * 1000),
        )
        started = time.perf_counter()
        result = NodeClient(api_url(target), network_ssl_context(network)).submit(encode(envelope))
        elapsed_ms = (time.perf_counter() - started) * 1000
    except OSError as e:
        fail(f"{payload_file}: {e.strerror}")
    except MedledgerError as e:
        fail(str(e))
    if as_json:
        click.echo(json.dumps({**result, "latency_ms": round(elapsed_ms, 2)}))
    else:
        dup = " (already committed before)" if result.get("duplicate") else ""
        click.echo(
            f"committed in block {result['block']} at index {result['index']}{dup}: "
            f"tx {result['tx_id'][:16]} ({elapsed_ms:.1f} ms), {result['status']}"
        )
