"""People on the chain, end to end with the real CLI against five node processes.

A hospital admin registers a doctor and gets a one-time secret; the doctor's client makes
its keys, gets a certificate from the hospital CA with the secret and enrols on chain; the
doctor can then transact under their own certificate. A wrong secret is refused by the CA.
Once an admin revokes the doctor, every peer refuses the doctor's proposals and envelopes,
including one endorsed before the revocation.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from identity.certs import cert_to_der
from identity.keystore import read_cert, read_signing_key
from node.client import NodeRefused
from protocol import limits
from protocol.codec import decode, encode
from protocol.transaction import Envelope, Proposal, SignedProposal, Transaction
from tests.integration.cluster import NETWORK_ID, Cluster, medledger


def test_register_enroll_act_revoke(cluster: Cluster) -> None:
    net = ["--network", str(cluster.out)]
    registered = medledger("identity", "register", *net, "dr.ada", "--role", "doctor", "--json")
    assert registered.returncode == 0, registered.stderr
    secret = json.loads(registered.stdout)["secret"]
    assert len(secret) >= 32

    wrong = medledger(
        "identity", "enroll", *net, "dr.ada", "--org", "northgate", "--secret-env", "S",
        env={"S": "not the secret"},
    )  # fmt: skip
    assert wrong.returncode == 2 and "the enrolment secret does not match" in wrong.stderr
    other_org = medledger(
        "identity", "enroll", *net, "dr.ada", "--org", "riverside", "--secret-env", "S",
        env={"S": secret},
    )  # fmt: skip
    assert other_org.returncode == 2 and "another organisation" in other_org.stderr

    enrolled = medledger(
        "identity", "enroll", *net, "dr.ada", "--org", "northgate", "--secret-env", "S",
        "--json", env={"S": secret},
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr
    person = cluster.out / "people" / "dr.ada"
    assert oct((person / "signing.key").stat().st_mode & 0o777) == "0o600"
    shown = json.loads(medledger("identity", "show", *net, "dr.ada", "--json").stdout)
    assert shown["status"] == "enrolled" and shown["role"] == "doctor"
    assert shown["serial"] == json.loads(enrolled.stdout)["serial"]
    assert shown["encryption_key"]
    again = medledger(
        "identity", "enroll", *net, "dr.ada", "--org", "northgate", "--secret-env", "S",
        env={"S": secret},
    )  # fmt: skip
    assert again.returncode == 2 and "not awaiting enrolment" in again.stderr

    # The doctor acts under their own certificate.
    own = medledger(
        "tx", "invoke", *net, "--identity", str(person), "registry", "set_encryption_key", "ab"
    )
    assert own.returncode == 0, own.stderr
    # An envelope the doctor had endorsed before the revocation...
    key = read_signing_key(person / "signing.key")
    cert = cert_to_der(read_cert(person / "cert.pem"))
    proposal = Proposal(
        network_id=NETWORK_ID,
        contract="registry",
        function="set_encryption_key",
        args=(b"cd",),
        creator=cert,
        nonce=os.urandom(limits.NONCE_BYTES),
        timestamp_ms=int(time.time() * 1000),
    )
    signed = SignedProposal(proposal=proposal, signature=key.sign(encode(proposal)))
    tx = decode(cluster.client("northgate").gateway_endorse(encode(signed)), Transaction)
    envelope = encode(Envelope(transaction=tx, signature=key.sign(encode(tx))))

    revoked = medledger("identity", "revoke", *net, "dr.ada", "--json")
    assert revoked.returncode == 0, revoked.stderr
    shown = json.loads(medledger("identity", "show", *net, "dr.ada", "--json").stdout)
    assert shown["status"] == "revoked"
    revoked_in = json.loads(revoked.stdout)["block"]
    for node in sorted(cluster.nodes):
        # ...is refused at every node's door once it has applied the revocation.
        client = cluster.client(node)
        deadline = time.monotonic() + 10
        while client.chain_info()["height"] <= revoked_in:
            assert time.monotonic() < deadline, f"{node} did not apply the revocation"
            time.sleep(0.05)
        with pytest.raises(NodeRefused) as refused_here:
            client.submit(envelope)
        assert (refused_here.value.status, refused_here.value.reason) == (
            400,
            "certificate is revoked",
        )
    refused = medledger(
        "tx", "invoke", *net, "--identity", str(person), "registry", "set_encryption_key", "ef"
    )
    assert refused.returncode == 2
    assert "the endorsers refused: certificate is revoked" in refused.stderr
    for node in sorted(cluster.nodes):
        text = (cluster.out / "nodes" / node / "node.log").read_text()
        assert secret not in text
