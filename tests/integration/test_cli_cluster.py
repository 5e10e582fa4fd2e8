"""The operator's commands end to end: `up --detach`, `raft status`, `submit`, `tx query`,
`tx invoke`, `tx show`, `block show`, `state get`, `chain verify --node`, `down`, run as
real `medledger` processes against a real network.

`up` initialises a missing network, starts five node processes and returns once a leader is
elected; `submit` signs a payload as an org admin and returns the committed block; an
unreadable payload and a signer the network does not know get clear errors; `down` stops
exactly the processes `up` started.
"""

from __future__ import annotations

import hashlib
import json
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from node.supervisor import running_nodes
from tests.integration.cluster import medledger


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "net"
    up = medledger("up", "--network", str(out), "--detach", "--json")
    try:
        assert up.returncode == 0, up.stderr
        yield out
    finally:
        medledger("down", "--network", str(out))


def test_up_status_submit_verify_down(network: Path, tmp_path: Path) -> None:
    assert len(running_nodes(network)) == 5
    status = json.loads(medledger("raft", "status", "--network", str(network), "--json").stdout)
    members = status["members"]
    assert len(members) == 5
    assert sum(m["role"] == "leader" for m in members) == 1
    assert len({m["term"] for m in members}) == 1

    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"an opaque payload")
    done = medledger("submit", "--network", str(network), "--payload-file", str(payload), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["block"] == 1

    missing = medledger(
        "submit", "--network", str(network), "--payload-file", str(tmp_path / "nope")
    )
    assert missing.returncode == 2 and "error:" in missing.stderr

    # A query is simulated by one endorsing peer against its committed LevelDB state and
    # signed by it, and nothing is ordered.
    query = medledger("tx", "query", "--network", str(network), "registry", "revoked", "--json")
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout) == {
        "node": "northgate",
        "status": 200,
        "message": "",
        "result": "[]",
        "endorsed": True,
    }
    unknown = medledger("tx", "query", "--network", str(network), "registry", "show", "dr.x1")
    assert unknown.returncode == 1
    assert "northgate: the contract refused it: no identity dr.x1" in unknown.stderr
    orderer = medledger(
        "tx", "query", "--network", str(network), "--node", "ministry", "registry", "revoked"
    )
    assert orderer.returncode == 2 and "ministry is not an endorser" in orderer.stderr

    # invoke: a quorum endorses, the block commits, and the write is in every peer's state.
    secret_hash = hashlib.sha256(b"secret").hexdigest()
    net = ["--network", str(network)]
    invoke = medledger(
        "tx", "invoke", *net, "registry", "register", "dr.ada", "doctor", secret_hash, "--json"
    )
    assert invoke.returncode == 0, invoke.stderr
    invoked = json.loads(invoke.stdout)
    assert (invoked["status"], invoked["block"], invoked["valid"]) == ("VALID", 2, True)
    assert json.loads(invoked["result"])["subject_id"] == "dr.ada"
    again = medledger("tx", "invoke", *net, "registry", "register", "dr.ada", "nurse", secret_hash)
    assert again.returncode == 2 and "already registered" in again.stderr
    shown = medledger("tx", "show", *net, "--node", "westfield", invoked["tx_id"])
    assert shown.returncode == 0, shown.stderr
    assert "VALID" in shown.stdout and "registry.register (3 args)" in shown.stdout
    assert "dr.ada" not in shown.stdout  # arguments are shown as sizes only
    missing_tx = medledger("tx", "show", *net, "00" * 32)
    assert missing_tx.returncode == 1 and "no transaction" in missing_tx.stderr
    block = medledger("block", "show", *net, "--node", "ministry", "1")
    assert block.returncode == 0, block.stderr
    assert "ENDORSEMENT_POLICY_FAILURE" in block.stdout and "_opaque.submit" in block.stdout
    state = medledger("state", "get", *net, "--node", "stmarys", "registry", "id/dr.ada")
    assert state.returncode == 0, state.stderr
    assert json.loads(state.stdout)["role"] == "doctor" and "block 2, tx 0" in state.stderr
    absent = medledger("state", "get", *net, "registry", "id/dr.nobody")
    assert absent.returncode == 1 and "no key" in absent.stderr

    leader = next(m for m in members if m["role"] == "leader")["node"]
    port = next(
        n["api_port"]
        for n in tomllib.loads((network / "network.toml").read_text())["nodes"]
        if n["id"] == leader
    )
    remote = medledger(
        "chain", "verify", "--network", str(network), "--node", f"https://127.0.0.1:{port}"
    )
    assert remote.returncode == 0, remote.stdout + remote.stderr
    assert "3 block(s) verified" in remote.stdout
    # With the nodes running (each holds its database's lock), every node's chain is read
    # through its API instead, and says so.
    running = medledger("chain", "verify", "--network", str(network), "--json")
    assert running.returncode == 0, running.stdout + running.stderr
    report = json.loads(running.stdout)
    assert report["ok"] and not report["diverged"], report
    assert [n["height"] for n in report["nodes"]] == [3] * 5, report
    assert all(n["read_through"].startswith("https://127.0.0.1:") for n in report["nodes"])
    headers = medledger("chain", "show", "--network", str(network), "--node", "riverside")
    assert headers.returncode == 0, headers.stderr
    assert "riverside: 3 block(s) from 0 (read through https://127.0.0.1:" in headers.stdout

    table = medledger("raft", "status", "--network", str(network))
    assert "leader" in table.stdout and "COMMIT" in table.stdout

    down = medledger("down", "--network", str(network))
    assert down.returncode == 0 and "stopped" in down.stdout
    assert running_nodes(network) == []
    verify = medledger("chain", "verify", "--network", str(network))
    assert verify.returncode == 0, verify.stdout
    assert verify.stdout.count("3 block(s) verified") == 5
    assert "read through" not in verify.stdout  # stopped: straight from the databases


def test_up_refuses_a_network_already_running(network: Path) -> None:
    again = medledger("up", "--network", str(network), "--detach")
    assert again.returncode == 2 and "already running" in again.stderr


def test_up_reports_at_once_why_a_node_could_not_start(tmp_path: Path) -> None:
    """A node that exits on start (here: a genesis block missing a field this version
    needs, as one written by an earlier version would be) fails `up` with its reason in
    seconds, not after the leader wait, and no node is left running."""
    out = tmp_path / "net"
    init = medledger("network", "init", "--out", str(out))
    assert init.returncode == 0, init.stderr
    genesis = msgpack.unpackb((out / "genesis.block").read_bytes())
    # Drop org_config.crl from the genesis configuration, byte-canonically re-packed.
    tx = msgpack.unpackb(genesis[1]["transactions"][0])
    for org in tx[1]["update"]["config"]["orgs"]:
        del org["crl"]
    genesis[1]["transactions"][0] = msgpack.packb(tx)
    (out / "genesis.block").write_bytes(msgpack.packb(genesis))
    started = time.monotonic()
    up = medledger("up", "--network", str(out), "--detach")
    assert up.returncode == 2, up.stdout + up.stderr
    assert time.monotonic() - started < 20
    assert "org_config.crl: missing" in up.stderr
    assert "initialised by an earlier version" in up.stderr
    assert running_nodes(out) == []
