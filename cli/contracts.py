"""`medledger network pin-contract`: let the network run a contract installed on its nodes.

A third-party contract is a Python package declaring its class in the ``medledger.contracts``
entry-point group (see :mod:`chaincode.registry`). Installing it on the nodes is not enough:
the network configuration pins the name, version and code hash each endorser must run, and
an endorser refuses a proposal for a contract it cannot match. This command reads the pin
from the contract as installed where it runs (the ministry's copy), and commits the
configuration update, signed by a ministry admin, that pins it: a new contract, or a new
version of a pinned one. Nodes without that exact code refuse to endorse it ("not
installed", "its code differs"), so install it on the hospitals' nodes first.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from chaincode.builtin import node_registry
from cli.cluster import json_option, network_option, pick_node
from cli.errors import fail
from cli.membership import current_config, ministry_admin
from node.client import NodeClient, network_ssl_context
from node.membership import signed_update, with_contract_pinned
from node.supervisor import api_url
from protocol.codec import encode
from protocol.config import ContractPin
from protocol.errors import MedledgerError


@click.command("pin-contract")
@network_option
@click.argument("name")
@click.option("--via", default=None, help="Submit through this node (default: the first).")
@click.option(
    "--passphrase-env", default="", help="Variable holding the ministry admin key passphrase."
)
@json_option
def pin_contract_command(
    network: Path, name: str, via: str | None, passphrase_env: str, as_json: bool
) -> None:
    """Pin contract NAME, as installed here, in the network configuration (a configuration
    update signed by a ministry admin); endorsers then run it."""
    try:
        registered = node_registry().get(name)
        if registered is None:
            fail(f"contract {name!r} is not installed here (entry-point group medledger.contracts)")
        pin = ContractPin(name=name, version=registered.version, code_hash=registered.code_hash)
        client = NodeClient(api_url(pick_node(network, via)), network_ssl_context(network))
        current = current_config(client)
        new = with_contract_pinned(current, pin)
        key, cert = ministry_admin(network, current, passphrase_env)
        result = client.submit(encode(signed_update(new, key, cert)))
        after = current_config(client)
    except MedledgerError as e:
        fail(str(e))
    if pin not in after.contracts:
        fail(f"the update was committed as {result.get('status')}: {result.get('reason')}")
    doc = {
        "contract": name,
        "version": pin.version,
        "code_hash": pin.code_hash.hex(),
        "sequence": after.sequence,
        "block": result["block"],
    }
    if as_json:
        click.echo(json.dumps(doc))
        return
    click.echo(
        f"pinned {name} {pin.version} (code sha256 {pin.code_hash.hex()[:16]}...); "
        f"configuration sequence {after.sequence}"
    )
