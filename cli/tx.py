"""``medledger tx``: run contract functions.

``tx query CONTRACT FUNCTION [ARG]...`` signs a proposal (as an organisation's admin),
has one endorsing peer simulate it against its committed state and prints the answer;
nothing is ordered or written. ``tx invoke`` has a peer's gateway collect a quorum of
endorsements, signs the transaction, submits it and waits for its validation code in the
committed block. Arguments are passed as UTF-8 bytes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from chaincode.runtime import answer_text
from cli.cluster import (
    F,
    admin_identity,
    admin_org_option,
    admin_passphrase_option,
    json_option,
    network_option,
    options,
    pick_node,
)
from cli.errors import EXIT_CHECK_FAILED, fail, passphrase_from_env
from cli.ledger import client_for, party, when
from identity.certs import cert_to_der
from identity.keys import SigningKey
from identity.keystore import read_cert, read_signing_key
from node.bootstrap import NodeEntry, load_network, network_id_of
from node.client import NodeClient, network_ssl_context
from node.supervisor import api_url
from protocol import limits
from protocol.block import ValidationCode
from protocol.codec import decode, encode
from protocol.errors import MedledgerError
from protocol.transaction import (
    EndorseReply,
    Envelope,
    Proposal,
    ProposalResponse,
    SignedProposal,
    Transaction,
)

identity_option = click.option(
    "--identity",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Sign as the person enrolled in this directory (`identity enroll --out`).",
)


def signer(
    network: Path, org: str | None, identity: Path | None, passphrase_env: str
) -> tuple[SigningKey, bytes]:
    """The key and certificate a command signs with: an enrolled person's, or an admin's."""
    if identity is None:
        return admin_identity(network, org, passphrase_env)  # type: ignore[no-any-return]
    key = read_signing_key(identity / "signing.key", passphrase_from_env(passphrase_env))
    return key, cert_to_der(read_cert(identity / "cert.pem"))


def _call_options(node_help: str) -> Callable[[F], F]:
    """What query and invoke share: CONTRACT FUNCTION [ARG]..., who signs, which node."""
    return options(
        network_option,
        click.argument("contract"),
        click.argument("function"),
        click.argument("args", nargs=-1),
        admin_org_option,
        identity_option,
        click.option("--node", default=None, help=node_help),
        admin_passphrase_option,
        json_option,
    )


@click.group("tx")
def tx_group() -> None:
    """Run contract functions."""


@tx_group.command("query")
@_call_options("Ask this endorsing peer (default: the first).")
def query(
    network: Path,
    contract: str,
    function: str,
    args: tuple[str, ...],
    org: str | None,
    identity: Path | None,
    node: str | None,
    passphrase_env: str,
    as_json: bool,
) -> None:
    """Evaluate CONTRACT FUNCTION ARGS on one peer without ordering it; exit 1 unless the
    contract answered 200."""
    try:
        caller = Caller.open(network, node, *signer(network, org, identity, passphrase_env))
        response, endorsed = caller.evaluate(contract, function, _utf8(args))
    except MedledgerError as e:
        fail(str(e))
    result = readable(response.result)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "node": caller.node.node_id,
                    "status": response.status,
                    "message": response.message,
                    "result": result,
                    "endorsed": endorsed,
                }
            )
        )
    elif response.status == 200:
        click.echo(result)
    else:
        click.echo(
            f"{caller.node.node_id}: {answer_text(response.status, response.message)}", err=True
        )
    if response.status != 200:
        raise SystemExit(1)


@tx_group.command("invoke")
@_call_options("Use this peer's gateway (default: the first peer).")
def invoke(
    network: Path,
    contract: str,
    function: str,
    args: tuple[str, ...],
    org: str | None,
    identity: Path | None,
    node: str | None,
    passphrase_env: str,
    as_json: bool,
) -> None:
    """Endorse CONTRACT FUNCTION ARGS on a quorum of peers, order it and wait for its
    validation; exit 1 unless it committed VALID."""
    try:
        caller = Caller.open(network, node, *signer(network, org, identity, passphrase_env))
        started = time.perf_counter()
        transaction, result = caller.invoke(contract, function, _utf8(args))
        elapsed_ms = (time.perf_counter() - started) * 1000
    except MedledgerError as e:
        fail(str(e))
    valid = result["code"] == ValidationCode.VALID
    answer = readable(transaction.response.result)
    if as_json:
        click.echo(
            json.dumps(
                {**result, "result": answer, "valid": valid, "latency_ms": round(elapsed_ms, 2)}
            )
        )
    elif valid:
        if answer:
            click.echo(answer)
        click.echo(
            f"VALID in block {result['block']}: tx {result['tx_id']} ({elapsed_ms:.1f} ms)",
            err=True,
        )
    else:
        click.echo(
            f"{result['status']} in block {result['block']}: {result['reason']} "
            f"(tx {result['tx_id']}); nothing was written",
            err=True,
        )
    if not valid:
        raise SystemExit(1)


@tx_group.command("show")
@network_option
@click.argument("tx_id")
@click.option("--node", default=None, help="Ask this node (default: the first).")
@json_option
def show(network: Path, tx_id: str, node: str | None, as_json: bool) -> None:
    """Show where transaction TX_ID (hex) was committed, who made and endorsed it, and its
    validation code; exit 1 if the node's chain does not hold it."""
    try:
        node_id, client = client_for(network, node)
        info = client.tx_info(tx_id.lower())
    except MedledgerError as e:
        fail(str(e))
    if info is None:
        fail(f"{node_id} has no transaction {tx_id}", code=EXIT_CHECK_FAILED)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"tx {info['tx_id']}")
    click.echo(f"  block       {info['block']} (index {info['index']})")
    click.echo(f"  status      {info['status']}: {info['meaning']}")
    click.echo(f"  created     {when(info['timestamp_ms'])} by {party(info['creator'])}")
    if info["kind"] == "config":
        click.echo(f"  call        configuration update #{info['sequence']}")
        return
    click.echo(f"  call        {info['contract']}.{info['function']} ({len(info['args'])} args)")
    click.echo(f"  endorsed by {', '.join(info['endorsers']) or '-'}")
    click.echo(f"  rw set      {info['reads']} reads, {info['writes']} writes")


def peer_client(network: Path, node: str | None) -> tuple[NodeEntry, NodeClient]:
    """The named node, or the network's first hospital peer, and a client of its API."""
    if node is None:
        node = next((e.node_id for e in load_network(network) if e.role == "peer"), None)
    target = pick_node(network, node)
    return target, NodeClient(api_url(target), network_ssl_context(network))


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who calls contracts (a key and its certificate) and through which peer."""

    node: NodeEntry
    client: NodeClient
    network_id: str
    key: SigningKey
    cert: bytes

    @classmethod
    def open(cls, network: Path, node: str | None, key: SigningKey, cert: bytes) -> Caller:
        """A caller signing with *key* through *node* (default: the first hospital peer)."""
        return cls(*peer_client(network, node), network_id_of(network), key, cert)

    def evaluate(
        self, contract: str, function: str, args: tuple[bytes, ...]
    ) -> tuple[ProposalResponse, bool]:
        """The peer's simulation of CONTRACT FUNCTION ARGS, and whether it endorsed it;
        nothing is ordered."""
        raw = self.client.endorse(encode(self._signed(contract, function, args)))
        reply = decode(raw, EndorseReply)
        return reply.decoded_response(), bool(reply.endorsements)

    def invoke(
        self, contract: str, function: str, args: tuple[bytes, ...]
    ) -> tuple[Transaction, dict[str, Any]]:
        """Have the peer's gateway endorse CONTRACT FUNCTION ARGS, sign the transaction,
        submit it and wait for the commit: the transaction and the node's answer (block,
        index, code, status, reason)."""
        signed = self._signed(contract, function, args)
        transaction = decode(self.client.gateway_endorse(encode(signed)), Transaction)
        envelope = Envelope(transaction=transaction, signature=self.key.sign(encode(transaction)))
        return transaction, self.client.submit(encode(envelope))

    def _signed(self, contract: str, function: str, args: tuple[bytes, ...]) -> SignedProposal:
        proposal = Proposal(
            network_id=self.network_id,
            contract=contract,
            function=function,
            args=args,
            creator=self.cert,
            nonce=os.urandom(limits.NONCE_BYTES),
            timestamp_ms=int(time.time() * 1000),
        )
        return SignedProposal(proposal=proposal, signature=self.key.sign(encode(proposal)))


def _utf8(args: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(a.encode("utf-8") for a in args)


def readable(result: bytes) -> str:
    """The result as text when it is UTF-8, else as hex."""
    try:
        return result.decode("utf-8")
    except UnicodeDecodeError:
        return result.hex()
