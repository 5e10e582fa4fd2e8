"""A misbehaving third-party contract in real node processes: five nodes over mutual TLS.

The contract (tests/unit/contracts_fixture/misbehaving.py) reaches the nodes the way any
third-party contract does: an installed distribution declares it in the
``medledger.contracts`` entry-point group (here a dist-info directory on the PYTHONPATH of
the nodes and of the CLI), and ``medledger network pin-contract`` commits the configuration
update, signed by the ministry admin, that pins its name, version and code hash. Before
that, endorsers refuse it as not deployed. A function that raises, one that loops past the
step budget and one that returns more than a result may hold are refused by every endorser
with a clear error; nothing is ordered or written, the same gateway then commits a registry
write VALID and reports healthy, and no node logs the calls' arguments.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaincode.registry import ENTRY_POINT_GROUP, ContractRegistry
from chaincode.runtime import STEP_BUDGET_DEFAULT
from cli.tx import Caller
from node.client import NodeClient, NodeRefused
from node.gateway import ENDORSE_DEADLINE_S
from node.supervisor import api_url
from protocol import limits
from tests.integration.cluster import NETWORK_ID, Cluster, medledger
from tests.integration.conftest import running_local_network
from tests.unit.contracts_fixture.misbehaving import Misbehaving

REPO = Path(__file__).resolve().parents[2]
SENTINEL = b"Jane Roe 1970-01-01 misbehaving-sentinel"  # stands for patient data
GATEWAY = "northgate"
REFUSALS = {  # function -> what every endorser says
    "crash": "raised ValueError",
    "spin": f"ran past its budget of {STEP_BUDGET_DEFAULT} steps",
    "flood": f"result over {limits.RESULT_BYTES_MAX} bytes",
}


def _install_contract(site: Path) -> None:
    """What installing a package declaring the contract leaves on sys.path: a dist-info
    directory with the entry point."""
    dist = site / "medledger_misbehaving_fixture-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: medledger-misbehaving-fixture\nVersion: 1.0\n"
    )
    target = f"{Misbehaving.__module__}:{Misbehaving.__qualname__}"
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n{Misbehaving.name} = {target}\n"
    )


@pytest.fixture
def contract_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """The local network running the misbehaving contract; stopped afterwards."""
    _install_contract(tmp_path / "site")
    paths = [str(tmp_path / "site"), str(REPO), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))  # node processes
    with running_local_network(tmp_path / "net") as c:
        yield c


def _caller(cluster: Cluster, node: str) -> Caller:
    """The CLI's caller (northgate's admin) through *node*, whose requests give up soon
    after the gateway's endorsement deadline: an unbounded contract fails in seconds."""
    client = NodeClient(api_url(cluster.entry(node)), cluster.ctx, timeout_s=ENDORSE_DEADLINE_S + 3)
    return Caller(cluster.entry(node), client, NETWORK_ID, *cluster.admin())


def _heights(cluster: Cluster, at_least: int = 0) -> dict[str, int]:
    """Every node's chain height, once each has reached *at_least* (10 s at most)."""
    heights = {}
    deadline = time.monotonic() + 10
    for node in sorted(cluster.nodes):
        while (height := cluster.client(node).chain_info()["height"]) < at_least:
            assert time.monotonic() < deadline, f"{node} stays at height {height}"
            time.sleep(0.05)
        heights[node] = height
    return heights


def test_a_misbehaving_contract_is_refused_and_the_node_keeps_serving(
    contract_cluster: Cluster,
) -> None:
    cluster = contract_cluster
    gateway, endorser = _caller(cluster, GATEWAY), _caller(cluster, "riverside")

    # Installed on every node but not pinned: no endorser runs it.
    with pytest.raises(NodeRefused, match="'misbehaving' is not deployed on this network"):
        gateway.invoke("misbehaving", "put", (b"fine", b"ok"))
    pinned = medledger(
        "network", "pin-contract", "--network", str(cluster.out), "misbehaving", "--json"
    )
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    pin = ContractRegistry().register(Misbehaving)
    assert json.loads(pinned.stdout)["code_hash"] == pin.code_hash.hex()
    again = medledger("network", "pin-contract", "--network", str(cluster.out), "misbehaving")
    assert again.returncode != 0 and "pinned with this code already" in again.stderr
    missing = medledger("network", "pin-contract", "--network", str(cluster.out), "nosuch")
    assert missing.returncode == 2 and "'nosuch' is not installed here" in missing.stderr

    # Pinned: its honest function commits.
    _, done = gateway.invoke("misbehaving", "put", (b"fine", b"ok"))
    assert done["status"] == "VALID", done
    before = _heights(cluster, at_least=done["block"] + 1)

    for function, reason in REFUSALS.items():
        args = (f"leak/{function}".encode(), SENTINEL)
        started = time.monotonic()
        with pytest.raises(NodeRefused) as alone:
            endorser.evaluate("misbehaving", function, args)
        assert (alone.value.status, alone.value.reason) == (
            400,
            f"contract 'misbehaving' {reason}",
        ), function
        with pytest.raises(NodeRefused) as everyone:
            gateway.invoke("misbehaving", function, args)
        assert (everyone.value.status, everyone.value.reason) == (
            409,
            f"the endorsers refused: contract 'misbehaving' {reason}",
        ), function
        assert time.monotonic() - started < 5, f"{function} was slow to refuse"

    cli = medledger(
        "tx", "invoke", "--network", str(cluster.out), "--node", GATEWAY,
        "misbehaving", "crash", "leak/cli", SENTINEL.decode(),
    )  # fmt: skip
    assert cli.returncode == 2, cli.stdout + cli.stderr
    assert "the endorsers refused: contract 'misbehaving' raised ValueError" in cli.stderr
    assert SENTINEL.decode() not in cli.stdout + cli.stderr

    # Nothing was ordered or written, anywhere.
    assert _heights(cluster) == before
    for node in sorted(cluster.nodes):
        client = cluster.client(node)
        assert client.state_info("misbehaving", b"fine") is not None, node
        for function in [*REFUSALS, "cli"]:
            assert client.state_info("misbehaving", f"leak/{function}".encode()) is None, node

    # The same gateway still serves: healthy, and a registry write commits VALID in the
    # very next block.
    health = cluster.client(GATEWAY).health()
    assert health["serving"] and health["leader"], health
    secret_hash = hashlib.sha256(b"one-time secret").hexdigest().encode()
    _, registered = gateway.invoke("registry", "register", (b"dr.after", b"doctor", secret_hash))
    assert (registered["status"], registered["block"]) == ("VALID", before[GATEWAY])
    assert cluster.client(GATEWAY).health()["serving"]

    cluster.stop()
    logged = {p: p.read_bytes() for p in sorted(cluster.out.glob("nodes/*/node.*"))}
    logged = {p: text for p, text in logged.items() if p.suffix in (".log", ".out")}
    assert b"api.endorse_refused" in b"".join(logged.values())  # the refusals were logged
    for path, text in logged.items():
        assert SENTINEL not in text and SENTINEL.hex().encode() not in text, (
            f"payload leaked into {path}"
        )
