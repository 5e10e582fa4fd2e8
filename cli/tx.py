"""``medledger tx``: run contract functions.

``tx query CONTRACT FUNCTION [ARG]...`` signs a proposal (as an organisation's admin),
has one endorsing peer simulate it against its committed state and prints the answer;
nothing is ordered or written. Arguments are passed as UTF-8 bytes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from cli.cluster import (
    admin_identity,
    admin_org_option,
    admin_passphrase_option,
    json_option,
    network_option,
    pick_node,
)
from cli.errors import fail
from node.bootstrap import load_network, network_id_of
from node.client import NodeClient, network_ssl_context
from node.supervisor import api_url
from protocol import limits
from protocol.codec import decode, encode
from protocol.errors import MedledgerError
from protocol.transaction import EndorseReply, Proposal, SignedProposal


@click.group("tx")
def tx_group() -> None:
    """Run contract functions."""


@tx_group.command("query")
@network_option
@click.argument("contract")
@click.argument("function")
@click.argument("args", nargs=-1)
@admin_org_option
@click.option("--node", default=None, help="Ask this endorsing peer (default: the first).")
@admin_passphrase_option
@json_option
def query(
    network: Path,
    contract: str,
    function: str,
    args: tuple[str, ...],
    org: str | None,
    node: str | None,
    passphrase_env: str,
    as_json: bool,
) -> None:
    """Evaluate CONTRACT FUNCTION ARGS on one peer without ordering it; exit 1 unless the
    contract answered 200."""
    try:
        if node is None:
            node = next((e.node_id for e in load_network(network) if e.role == "peer"), None)
        target = pick_node(network, node)
        key, cert = admin_identity(network, org, passphrase_env)
        proposal = Proposal(
            network_id=network_id_of(network),
            contract=contract,
            function=function,
            args=tuple(a.encode("utf-8") for a in args),
            creator=cert,
            nonce=os.urandom(limits.NONCE_BYTES),
            timestamp_ms=int(time.time() * 1000),
        )
        signed = SignedProposal(proposal=proposal, signature=key.sign(encode(proposal)))
        raw = NodeClient(api_url(target), network_ssl_context(network)).endorse(encode(signed))
        reply = decode(raw, EndorseReply)
    except MedledgerError as e:
        fail(str(e))
    response = reply.response
    result = _readable(response.result)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "node": target.node_id,
                    "status": response.status,
                    "message": response.message,
                    "result": result,
                    "endorsed": bool(reply.endorsements),
                }
            )
        )
    elif response.status == 200:
        click.echo(result)
    else:
        click.echo(f"{target.node_id}: {response.status} {response.message}", err=True)
    if response.status != 200:
        raise SystemExit(1)


def _readable(result: bytes) -> str:
    """The result as text when it is UTF-8, else as hex."""
    try:
        return result.decode("utf-8")
    except UnicodeDecodeError:
        return result.hex()
