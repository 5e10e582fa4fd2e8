"""Revoking a node's certificate, end to end with the real CLI against five node processes.

`medledger network revoke-node riverside` has riverside's CA issue a revocation list naming
its node certificate, and riverside's admin publish it by a configuration update. Every
node then closes the streams it had open with riverside, refuses its new handshakes in TLS
itself (OpenSSL checks the list), and counts no endorsement riverside signs: transactions
still commit with the other hospitals' endorsements.
"""

from __future__ import annotations

import hashlib
import json

from identity.certs import cert_from_der
from identity.crl import read_crl
from protocol.codec import decode
from protocol.config import NetworkConfig
from tests.integration.cluster import Cluster, medledger, wait_for

REVOKED = "riverside"
OTHERS = ("ministry", "northgate", "stmarys", "westfield")


def test_a_revoked_node_is_cut_off_and_its_endorsements_no_longer_count(
    cluster: Cluster,
) -> None:
    net = ["--network", str(cluster.out)]
    cluster.leader()
    before = json.loads(medledger("network", "show", *net, "--json").stdout)
    assert before["endorsement"] == {"rule": "2f+1", "endorsers": 4, "quorum": 3}
    listed = {o["id"]: o["crl"] for o in before["orgs"]}
    assert {(c["number"], c["revoked"]) for c in listed.values()} == {(1, 0)}, listed
    revoked = medledger("network", "revoke-node", *net, REVOKED, "--json")
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    serial = json.loads(revoked.stdout)["serial"]
    again = medledger("network", "revoke-node", *net, REVOKED)
    assert again.returncode == 2 and "revoked already" in again.stderr
    unknown = medledger("network", "revoke-node", *net, "nosuchnode")
    assert unknown.returncode == 2 and "nosuchnode is not a member" in unknown.stderr

    shown = medledger("network", "show", *net, "--node", "stmarys")
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.strip().startswith(REVOKED))
    assert "CRL #2, 1 revoked" in line, shown.stdout
    # Every other node applied riverside's new list, which names its node certificate.
    for node in OTHERS:
        config = decode(cluster.client(node).config_bytes(), NetworkConfig)
        org = config.org(REVOKED)
        assert org is not None
        assert serial in read_crl(org.crl, cert_from_der(org.ca_cert)).serials, node

    # The streams they had with riverside were closed when the update was applied, and
    # riverside does not get back in: its handshakes fail in TLS, before the application
    # could refuse them (no 'refused' count for riverside's dials).
    wait_for(
        lambda: (
            sum(cluster.metric(n, "p2p_streams_closed_not_accepted") for n in OTHERS) >= 4 or None
        ),
        15,
        lambda: "the streams with riverside were not closed",
    )
    refused_before = {n: cluster.metric(n, "p2p_in_refused_unknown_peer") for n in OTHERS}
    failed_before = cluster.metric(REVOKED, "p2p_out_connect_failed")
    wait_for(
        lambda: cluster.metric(REVOKED, "p2p_out_connect_failed") >= failed_before + 4 or None,
        15,
        lambda: "riverside stopped redialling",
    )
    for node in OTHERS:
        assert REVOKED not in cluster.client(node).raft_status()["reachable"], node
        assert cluster.metric(node, "p2p_in_refused_unknown_peer") == refused_before[node]

    # Transactions still commit, endorsed by the three other hospitals only.
    secret_hash = hashlib.sha256(b"a one-time secret").hexdigest()
    invoked = medledger(
        "tx", "invoke", *net, "--node", "northgate", "--json",
        "registry", "register", "dr.after", "doctor", secret_hash,
    )  # fmt: skip
    assert invoked.returncode == 0, invoked.stdout + invoked.stderr
    done = json.loads(invoked.stdout)
    assert done["status"] == "VALID", done
    shown = cluster.client("stmarys").tx_info(done["tx_id"])
    assert shown is not None
    assert REVOKED not in shown["endorsers"] and len(shown["endorsers"]) >= 3, shown
