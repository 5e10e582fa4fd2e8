"""`medledger network revoke-node`: a node's certificate joins its organisation's CRL.

People's certificates are revoked in the registry contract (`medledger identity revoke`).
A node's certificate is what it presents in TLS, so it is revoked where TLS looks: its
organisation CA's certificate revocation list, which the network configuration carries.
This command, run where the organisation's CA key is (``orgs/ORG/ca.key``), issues the CA's
next list with the node's serial added and commits the configuration update, signed by the
organisation's admin, that publishes it. Every node then refuses the revoked node's
handshakes (OpenSSL checks the list), closes the streams it has open with it, and no longer
counts its endorsements (the application layer checks the list again).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from cli.cluster import json_option, network_option
from cli.errors import fail, passphrase_from_env
from cli.membership import current_config
from identity.certs import CertificateAuthority, cert_from_der, cert_to_der
from identity.crl import make_crl, read_crl
from identity.keystore import read_cert, read_signing_key
from node.bootstrap import load_network
from node.client import NodeClient, network_ssl_context
from node.membership import signed_update, with_crl
from node.supervisor import api_url
from protocol.codec import encode
from protocol.errors import MedledgerError


@click.command("revoke-node")
@network_option
@click.argument("node")
@click.option("--via", default=None, help="Submit through this node (default: another one).")
@click.option(
    "--passphrase-env", default="", help="Variable holding the CA and admin key passphrase."
)
@json_option
def revoke_node_command(
    network: Path, node: str, via: str | None, passphrase_env: str, as_json: bool
) -> None:
    """Revoke NODE's certificate: its organisation's CA issues a new revocation list naming
    it, published by a configuration update its organisation's admin signs."""
    try:
        others = [e for e in load_network(network) if e.node_id != node]
        entry = next((e for e in others if e.node_id == via), None) if via else others[0]
        if entry is None:
            fail(f"no other node {via!r} in {network} to submit through")
        client = NodeClient(api_url(entry), network_ssl_context(network))
        current = current_config(client)
        member = current.member(node)
        if member is None:
            fail(f"{node} is not a member of the network")
        org = current.org(member.org_id)
        assert org is not None  # NetworkConfig.check: every member's org exists
        passphrase = passphrase_from_env(passphrase_env)
        org_dir = network / "orgs" / org.org_id
        ca_cert = cert_from_der(org.ca_cert)
        if cert_to_der(read_cert(org_dir / "ca.pem")) != org.ca_cert:
            fail(f"{org_dir / 'ca.pem'} is not {org.org_id}'s CA in the network configuration")
        ca = CertificateAuthority(ca_cert, read_signing_key(org_dir / "ca.key", passphrase))
        serial = cert_from_der(member.node_cert).serial_number
        before = read_crl(org.crl, ca_cert) if org.crl else None
        if before is not None and serial in before.serials:
            fail(f"{node}'s certificate is revoked already")
        now = datetime.now(UTC).replace(microsecond=0)
        if before is not None and now <= before.this_update:
            now = before.this_update + timedelta(seconds=1)  # each list is later than the last
        crl = make_crl(
            ca,
            (before.serials if before else frozenset()) | {serial},
            number=before.number + 1 if before else 1,
            this_update=now,
        )
        admin = org_dir / "admin"
        key = read_signing_key(admin / "admin.key", passphrase)
        update = signed_update(
            with_crl(current, org.org_id, crl), key, cert_to_der(read_cert(admin / "admin.pem"))
        )
        result = client.submit(encode(update))
        after = current_config(client)
    except MedledgerError as e:
        fail(str(e))
    published = after.org(org.org_id)
    if published is None or published.crl != crl:
        fail(f"the update was committed as {result.get('status')}: {result.get('reason')}")
    doc = {"node": node, "org": org.org_id, "serial": serial, "sequence": after.sequence}
    if as_json:
        click.echo(json.dumps(doc))
        return
    click.echo(
        f"revoked {node}'s certificate (serial {serial:x}) in {org.org_id}'s revocation list; "
        f"configuration sequence {after.sequence}"
    )
    click.echo(
        f"  remove it from Raft: medledger raft remove-member --network {network} --node {node}"
    )
