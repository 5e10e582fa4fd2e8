"""The `medledger` command: network set-up and chain inspection.

Every command finds the network through ``--network DIR`` (default ``var/local``), and every
command that prints has ``--json``. Exit codes: 0 success, 1 a check failed (e.g. a bad
block), 2 bad usage or configuration.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from cli.chain import chain
from cli.cluster import down, node_group, raft_group, submit, up
from cli.contracts import pin_contract_command
from cli.errors import fail, passphrase_from_env
from cli.identity import identity_group
from cli.ledger import block_group, events, state_group
from cli.membership import add_member, add_node_command, add_org_command, remove_member
from cli.network_show import show_command
from cli.revocation import revoke_node_command
from cli.tx import tx_group
from node.bootstrap import InitOptions, init_network
from node.profile import load_profile
from protocol.errors import MedledgerError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_NETWORK = "var/local"


def reports_errors(func: F) -> F:
    """Turn medledger errors into a one-line message and exit code 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MedledgerError as e:
            fail(str(e))

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="medledger")
def cli() -> None:
    """medledger: a permissioned blockchain network for electronic medical records."""


@cli.group()
def network() -> None:
    """Create and describe networks."""


@network.command("init")
@click.option(
    "--profile",
    default="local",
    show_default=True,
    help="A built-in profile name or a profile TOML file.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=DEFAULT_NETWORK,
    show_default=True,
    help="Directory to write the network into.",
)
@click.option("--force", is_flag=True, help="Replace a network already in --out.")
@click.option(
    "--passphrase-env",
    default="",
    help="Encrypt every private key with the passphrase in this environment variable; "
    "nodes read it from the same variable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@reports_errors
def network_init(profile: str, out: Path, force: bool, passphrase_env: str, as_json: bool) -> None:
    """Write a complete network: CAs, certificates, genesis block and node configs."""
    passphrase = passphrase_from_env(passphrase_env)
    spec = load_profile(profile)
    nodes = init_network(
        spec,
        InitOptions(
            out=out,
            force=force,
            now=datetime.now(UTC),
            passphrase=passphrase,
            passphrase_env=passphrase_env,
        ),
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "network": str(out),
                    "network_id": spec.network_id,
                    "nodes": [
                        {
                            "id": n.node_id,
                            "org": n.org_id,
                            "role": n.role,
                            "host": n.host,
                            "p2p_port": n.p2p_port,
                            "api_port": n.api_port,
                            "config": str(n.config),
                        }
                        for n in nodes
                    ],
                },
                indent=2,
            )
        )
        return
    click.echo(f"Initialised network {spec.network_id} in {out} ({len(nodes)} nodes)")
    for n in nodes:
        click.echo(
            f"  {n.node_id:<12} {n.role:<8} p2p {n.host}:{n.p2p_port}  "
            f"api {n.host}:{n.api_port}  {n.config}"
        )


for command in (
    chain,
    up,
    down,
    node_group,
    raft_group,
    submit,
    tx_group,
    block_group,
    state_group,
    identity_group,
    events,
):
    cli.add_command(command)
network.add_command(add_org_command)
network.add_command(add_node_command)
network.add_command(pin_contract_command)
network.add_command(revoke_node_command)
network.add_command(show_command)
raft_group.add_command(add_member)
raft_group.add_command(remove_member)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="medledger")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
