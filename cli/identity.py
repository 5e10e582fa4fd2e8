"""``medledger identity register|enroll|revoke|show``: people on the chain.

- ``register SUBJECT --role ROLE``: an organisation's admin registers a person under a
  pseudonymous subject id (never a name or a national id) and gets a one-time enrolment
  secret, printed once; only its sha256 goes on chain.
- ``enroll SUBJECT --org ORG --secret-env VAR``: the person's client makes its own signing
  and encryption keys and a CSR; the organisation's CA (its key in the network directory,
  ``orgs/ORG/ca.key``) checks the on-chain record and the secret and issues the
  certificate; signed with it, the client enrols on chain and publishes its encryption
  public key. Keys and certificate are written to ``--out`` (default
  ``NETWORK/people/SUBJECT``), private keys 0600.
- ``revoke SUBJECT``: an admin of the person's organisation or of the ministry revokes
  them; every peer then refuses their transactions and endorsements.
- ``show SUBJECT``: the on-chain record (role, organisation, status, serial, key).
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from cli.cluster import (
    admin_identity,
    admin_org_option,
    admin_passphrase_option,
    json_option,
    network_option,
    options,
)
from cli.errors import EXIT_CHECK_FAILED, fail, passphrase_from_env
from cli.tx import Caller, peer_client
from identity.certs import CertificateAuthority, cert_to_der
from identity.enrolment import issue_enrolment_cert, make_csr, secret_hash
from identity.keys import EncryptionKey, SigningKey
from identity.keystore import read_cert, read_signing_key, write_cert, write_private_key
from node.bootstrap import network_id_of
from protocol.block import ValidationCode
from protocol.errors import MedledgerError

ROLES = ("admin", "doctor", "nurse", "patient")
SECRET_BYTES = 24  # 192 random bits: the on-chain sha256 of it cannot be guessed back
node_option = click.option("--node", default=None, help="Use this peer (default: the first).")


_admin_on_subject = options(
    network_option,
    click.argument("subject"),
    admin_org_option,
    node_option,
    admin_passphrase_option,
    json_option,
)


@click.group("identity")
def identity_group() -> None:
    """Register, enrol, revoke and show the people of the network."""


def _invoke(caller: Caller, function: str, *args: bytes) -> dict[str, Any]:
    """Run a registry function through the gateway; fail unless it commits VALID."""
    _, result = caller.invoke("registry", function, args)
    if result["code"] != ValidationCode.VALID:
        fail(f"{result['status']}: {result['reason']}", code=EXIT_CHECK_FAILED)
    return result


@identity_group.command("register")
@network_option
@click.argument("subject")
@click.option("--role", type=click.Choice(ROLES), required=True)
@admin_org_option
@node_option
@admin_passphrase_option
@json_option
def register(
    network: Path,
    subject: str,
    role: str,
    org: str | None,
    node: str | None,
    passphrase_env: str,
    as_json: bool,
) -> None:
    """Register SUBJECT (a pseudonymous id) with ROLE in the admin's organisation and print
    its one-time enrolment secret."""
    secret = secrets.token_urlsafe(SECRET_BYTES)
    try:
        admin = Caller.open(network, node, *admin_identity(network, org, passphrase_env))
        result = _invoke(
            admin,
            "register",
            subject.encode("utf-8"),
            role.encode("ascii"),
            secret_hash(secret.encode("ascii")).encode("ascii"),
        )
    except MedledgerError as e:
        fail(str(e))
    if as_json:
        click.echo(json.dumps({"subject": subject, "role": role, "secret": secret, **result}))
        return
    click.echo(f"registered {subject} as {role} (block {result['block']})")
    click.echo(f"one-time enrolment secret (shown once, give it to {subject}): {secret}")


@identity_group.command("enroll")
@network_option
@click.argument("subject")
@click.option("--org", required=True, help="The organisation that registered SUBJECT.")
@click.option("--secret-env", required=True, help="Variable holding the enrolment secret.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Where keys go.")
@click.option("--key-passphrase-env", default="", help="Variable to encrypt the keys with.")
@click.option("--ca-passphrase-env", default="", help="Variable holding the CA key passphrase.")
@node_option
@json_option
def enroll(
    network: Path,
    subject: str,
    org: str,
    secret_env: str,
    out: Path | None,
    key_passphrase_env: str,
    ca_passphrase_env: str,
    node: str | None,
    as_json: bool,
) -> None:
    """Make SUBJECT's keys, get its certificate from ORG's CA and enrol it on chain."""
    secret = os.environ.get(secret_env, "").encode("utf-8")
    if not secret:
        fail(f"the variable {secret_env} holding the enrolment secret is empty or unset")
    out = out or network / "people" / subject
    try:
        target, client = peer_client(network, node)
        entry = client.state_info("registry", b"id/" + subject.encode("utf-8"))
        if entry is None:
            fail(f"{subject} is not registered", code=EXIT_CHECK_FAILED)
        record = json.loads(entry["value"])
        org_dir = network / "orgs" / org
        ca = CertificateAuthority(
            read_cert(org_dir / "ca.pem"),
            read_signing_key(org_dir / "ca.key", passphrase_from_env(ca_passphrase_env)),
        )
        signing = SigningKey.generate()
        cert = issue_enrolment_cert(
            ca, record, make_csr(signing, subject), secret, now=datetime.now(UTC)
        )
        passphrase = passphrase_from_env(key_passphrase_env)
        write_private_key(out / "signing.key", signing, passphrase)
        write_cert(out / "cert.pem", cert)
        encryption = EncryptionKey.generate()
        write_private_key(out / "encryption.key", encryption, passphrase)
        person = Caller(target, client, network_id_of(network), signing, cert_to_der(cert))
        enrolled = _invoke(person, "enroll", secret)
        _invoke(person, "set_encryption_key", encryption.public_point())
    except MedledgerError as e:
        fail(str(e))
    if as_json:
        click.echo(
            json.dumps(
                {"subject": subject, "serial": cert.serial_number, "out": str(out), **enrolled}
            )
        )
        return
    click.echo(f"enrolled {subject} (certificate serial {cert.serial_number:x}); keys in {out}")


@identity_group.command("revoke")
@_admin_on_subject
def revoke(
    network: Path,
    subject: str,
    org: str | None,
    node: str | None,
    passphrase_env: str,
    as_json: bool,
) -> None:
    """Revoke SUBJECT: its certificate can no longer submit or endorse anywhere."""
    try:
        admin = Caller.open(network, node, *admin_identity(network, org, passphrase_env))
        result = _invoke(admin, "revoke", subject.encode("utf-8"))
    except MedledgerError as e:
        fail(str(e))
    if as_json:
        click.echo(json.dumps({"subject": subject, **result}))
        return
    click.echo(f"revoked {subject} (block {result['block']})")


@identity_group.command("show")
@_admin_on_subject
def show(
    network: Path,
    subject: str,
    org: str | None,
    node: str | None,
    passphrase_env: str,
    as_json: bool,
) -> None:
    """Show SUBJECT's on-chain record; exit 1 if there is none."""
    try:
        admin = Caller.open(network, node, *admin_identity(network, org, passphrase_env))
        response, _ = admin.evaluate("registry", "show", (subject.encode("utf-8"),))
    except MedledgerError as e:
        fail(str(e))
    if response.status != 200:
        fail(response.message, code=EXIT_CHECK_FAILED)
    record = json.loads(response.result)
    if as_json:
        click.echo(json.dumps(record))
        return
    for name in ("subject_id", "org_id", "role", "status", "serial", "encryption_key"):
        click.echo(f"{name:<15} {record.get(name)}")
