"""Changing the Raft membership through configuration updates, with real processes.

Proves: the ministry lays out a sixth node with `network add-node`, starts it, and
`raft add-member` commits a configuration update; the leader adds the node as a learner and
promotes it to voter once it has caught up, and it then orders envelopes like any member.
Updates that do not follow from the current configuration (signed by a hospital admin, a
skipped sequence number, a certificate from another network) are refused with a clear
reason and change nothing. `raft remove-member` takes a member out of Raft and stops it.
`network add-org` adds a new hospital whose node joins as a voter and an endorser.
"""

from __future__ import annotations

import json
import os
import time
import tomllib

import pytest

from identity.certs import cert_to_der
from identity.keystore import read_cert, read_signing_key
from node.bootstrap import load_network
from node.client import NodeRefused, network_ssl_context
from node.membership import member_from_node_dir, signed_update, with_member_added
from node.supervisor import running_nodes, start_node
from protocol.codec import decode, encode, replace
from protocol.config import NetworkConfig
from tests.integration.cluster import Cluster, chain_tx_ids, medledger
from tests.integration.conftest import init_local_network


def current_config(cluster: Cluster) -> NetworkConfig:
    return decode(cluster.client("ministry").config_bytes(), NetworkConfig)


def test_add_a_node_as_learner_then_voter_and_remove_a_member(cluster: Cluster) -> None:
    net = str(cluster.out)
    laid = medledger(
        "network",
        "add-node",
        "--network",
        net,
        "--org",
        "riverside",
        "--node-id",
        "riverside2",
        "--json",
    )
    assert laid.returncode == 0, laid.stderr
    entry = next(e for e in load_network(cluster.out) if e.node_id == "riverside2")
    cluster.nodes["riverside2"] = start_node(cluster.out, entry, detach=True)

    added = medledger("raft", "add-member", "--network", net, "--node", "riverside2", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"node": "riverside2", "sequence": 1, "voter": True}
    config = current_config(cluster)
    assert config.member("riverside2") is not None and config.sequence == 1

    result = cluster.client("riverside2").submit(_envelope(cluster))
    assert result["block"] >= 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = cluster.client("riverside2").raft_status()
        if "riverside2" in status["voters"] and status["height"] == result["block"] + 1:
            break
        time.sleep(0.1)
    assert "riverside2" in status["voters"], status

    # Run westfield as a hospital operator would (not tracked by `up`): the CLI cannot stop
    # it, so once removed it must stop by itself.
    westfield = cluster.nodes["westfield"]
    (cluster.out / "run" / "westfield.pid").unlink()
    removed = medledger("raft", "remove-member", "--network", net, "--node", "westfield")
    assert removed.returncode == 0, removed.stderr
    assert "westfield" not in [e.node_id for e in load_network(cluster.out)]
    assert "westfield" not in [n.entry.node_id for n in running_nodes(cluster.out)]
    assert _exit_status(westfield.pid, timeout_s=40) == 0
    node_dir = cluster.out / "nodes" / "westfield"
    logged = "".join(p.read_text(errors="replace") for p in node_dir.glob("*.log"))
    logged += westfield.log_path.read_text(errors="replace")
    assert "node.removed" in logged
    del cluster.nodes["westfield"]
    leader = cluster.leader()
    status = cluster.client(leader).raft_status()
    assert "westfield" not in status["voters"] + status["learners"]
    assert cluster.client("northgate").submit(_envelope(cluster))["block"] >= 3
    cluster.wait_converged()
    cluster.stop()
    chains = {n: chain_tx_ids(cluster.out / "nodes" / n) for n in cluster.nodes}
    assert len({tuple(h) for h, _ in chains.values()}) == 1


def _exit_status(pid: int, timeout_s: float) -> int | None:
    """The exit code of our child *pid* once it ends, None if it is still running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.1)
    return None


def _envelope(cluster: Cluster) -> bytes:
    from node.envelopes import opaque_envelope

    key, cert = cluster.admin()
    return encode(
        opaque_envelope(
            b"m",
            network_id="medledger-local",
            key=key,
            cert_der=cert,
            timestamp_ms=int(time.time() * 1000),
        )
    )


def test_updates_that_do_not_follow_are_refused(cluster: Cluster, tmp_path) -> None:
    laid = medledger(
        "network",
        "add-node",
        "--network",
        str(cluster.out),
        "--org",
        "stmarys",
        "--node-id",
        "stmarys2",
    )
    assert laid.returncode == 0, laid.stderr
    current = current_config(cluster)
    member = member_from_node_dir(cluster.out / "nodes" / "stmarys2", current)
    wanted = with_member_added(current, member)
    hospital_key = read_signing_key(cluster.out / "orgs" / "northgate" / "admin" / "admin.key")
    hospital_cert = cert_to_der(
        read_cert(cluster.out / "orgs" / "northgate" / "admin" / "admin.pem")
    )
    ministry_dir = cluster.out / "orgs" / "ministry" / "admin"
    key = read_signing_key(ministry_dir / "admin.key")
    cert = cert_to_der(read_cert(ministry_dir / "admin.pem"))
    other = init_local_network(tmp_path / "other")
    foreign = member_from_node_dir(other.out / "nodes" / "stmarys", other.config)
    cases = {
        "only a ministry admin": signed_update(wanted, hospital_key, hospital_cert),
        "sequence must be 1": signed_update(replace(wanted, sequence=5), key, cert),
        "new member certificate": signed_update(
            with_member_added(current, replace(foreign, node_id="stmarys3")), key, cert
        ),
        "exactly one member": signed_update(
            replace(
                wanted,
                members=(
                    *wanted.members,
                    replace(member, node_id="x", p2p_port=1, api_port=2),
                ),
            ),
            key,
            cert,
        ),
    }
    for words, envelope in cases.items():
        with pytest.raises(NodeRefused) as refused:
            cluster.client("northgate").submit(encode(envelope))
        assert refused.value.status == 400 and words in refused.value.reason, refused.value.reason
    assert current_config(cluster) == current
    assert (
        tomllib.loads((cluster.out / "network.toml").read_text())["nodes"][-1]["id"] == "stmarys2"
    )


def test_the_ministry_adds_a_hospital_that_becomes_a_voter_and_an_endorser(
    cluster: Cluster,
) -> None:
    """`network add-org` commits the new hospital's CA; its node (a CA the running members
    did not know at start) connects over mutual TLS, catches up, becomes a voter and an
    endorser: a gateway now asks five endorsers, and transactions through the new
    hospital's own gateway commit on every peer."""
    net = ["--network", str(cluster.out)]
    added = medledger(
        "network", "add-org", *net, "--org", "eastside", "--name", "Eastside", "--json"
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["sequence"] == 1
    cluster.ctx = network_ssl_context(cluster.out)  # this test's client learns the new CA
    laid = medledger("network", "add-node", *net, "--org", "eastside", "--node-id", "eastside")
    assert laid.returncode == 0, laid.stderr
    entry = next(e for e in load_network(cluster.out) if e.node_id == "eastside")
    cluster.nodes["eastside"] = start_node(cluster.out, entry, detach=True)
    joined = medledger("raft", "add-member", *net, "--node", "eastside", "--json")
    assert joined.returncode == 0, joined.stderr
    assert json.loads(joined.stdout) == {"node": "eastside", "sequence": 2, "voter": True}
    config = current_config(cluster)
    assert [m.node_id for m in config.members if m.endorser] == [
        "northgate", "riverside", "stmarys", "westfield", "eastside",
    ]  # fmt: skip

    # The new hospital's admin registers someone through the new hospital's own gateway.
    invoke = medledger(
        "tx", "invoke", *net, "--org", "eastside", "--node", "eastside",
        "registry", "register", "nurse.eve", "nurse", "ab" * 32, "--json",
    )  # fmt: skip
    assert invoke.returncode == 0, invoke.stderr
    done = json.loads(invoke.stdout)
    assert done["status"] == "VALID"
    info = cluster.client("eastside").tx_info(done["tx_id"])
    assert info is not None and len(info["endorsers"]) == 3  # q stays 3 with 5 endorsers
    for node in sorted(cluster.nodes):
        client = cluster.client(node)
        deadline = time.monotonic() + 15
        while client.chain_info()["height"] <= done["block"]:
            assert time.monotonic() < deadline, f"{node} did not catch up"
            time.sleep(0.05)
        entry_json = client.state_info("registry", b"id/nurse.eve")
        assert entry_json is not None and '"org_id":"eastside"' in entry_json["value"], node
